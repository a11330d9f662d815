"""One run of one destination, step by step: ``ensure``, ``apply_object`` per object,
``associate``, ``finish``. :meth:`syncer.engine.Sync.start_run` makes a :class:`RunSession`
(after its preflight); the CLI calls the steps in a row, the Prefect flow as separate tasks.

Every write of a step — upsert batches, bulk jobs, archives, association changes — goes through
:meth:`RunSession.write`, the one door to the write pipeline (:mod:`syncer.engine.pipeline`):
the destination's rate limiter, the run's retry policy (bounded by the lease) and the lease's
renewal are the same for all of them, and each answered batch is recorded here, in the sync
state, only for what the destination acknowledged. Policy marks the pass changed are saved at
those same record points (and when the object is done), never from inside the read stream.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from syncer.connectors.base import AssociationResult, Connector
from syncer.errors import ConfigError, Problem
from syncer.model import Mark
from syncer.ratelimit import RateLimiter
from syncer.retry import call_with_retry
from syncer.state import (
    AssociationLedger,
    RecordState,
    RunLog,
)
from syncer.state.marks import MarkStore

from .associations import LinkPlanner, link_changes
from .incremental import ReadScope, record_position, tally
from .object_run import ObjectRun
from .operations import association_op
from .pipeline import ApplyStats, I, Operation, R, apply
from .reports import LinkStats, ObjectReport, RunReport

if TYPE_CHECKING:
    from .sync import Destination, Sync

__all__ = ["LEASE_TTL", "Progress", "RunLease", "RunSession"]

log = logging.getLogger("syncer.engine")


#: How long a run's lease on its destination lasts without renewal, in seconds. A heartbeat thread
#: renews it several times within that for as long as the run's process lives (through any pause
#: between steps), so a run whose process died blocks its destination for at most this long.
LEASE_TTL = 45.0
_MARK_FLUSH = 5000

#: A progress callback: the object's name and the pipeline's counts so far.
Progress = Callable[[str, ApplyStats], None]


class RunLease(Protocol):
    """What a run asks of its destination's lease: :class:`syncer.state.Lease` where the run
    holds it, or a partition's check of the coordinator's lease on a Dask worker."""

    ttl_seconds: float

    @property
    def heartbeat_running(self) -> bool: ...

    def renew(self) -> None: ...

    def renew_if_due(self) -> bool: ...

    def release(self) -> None: ...


class RunSession:
    """One run of one destination, step by step; made by :meth:`Sync.start_run`."""

    def __init__(
        self,
        sync: Sync,
        dest: Destination,
        connector: Connector[Any],
        lease: RunLease,
        run_id: str,
        *,
        owns_connector: bool,
        scope: ReadScope | None = None,
        rate_share: int = 1,
    ) -> None:
        self.sync = sync
        self.dest = dest
        self.connector = connector
        self.lease = lease
        # Without a heartbeat, one call's retries must end well inside the lease: it is renewed
        # only between batches, so a call retrying for longer could let another run take the
        # destination while this one still writes. A call that gives up is retried by the next
        # run (its batch was never acknowledged). The heartbeat renews it during the call.
        deadline = lease.ttl_seconds / 2
        if not lease.heartbeat_running and (
            sync.retry.deadline is None or sync.retry.deadline > deadline
        ):
            self.retry = dataclasses.replace(sync.retry, deadline=deadline)
        else:
            self.retry = sync.retry
        self.report = RunReport(dest.name, [], run_id=run_id)
        #: What the run reads (see :mod:`syncer.engine.incremental`); ``None``: everything.
        self.scope = scope
        self._done: set[str] = set()  # objects applied to the end, and "" once associated
        # ``rate_share``: processes writing this run's partitions at once, sharing one limit.
        self.limiter = RateLimiter(connector.capabilities.rate_limit, share=rate_share)
        connector.set_rate_observer(self.limiter.observe)
        self.marks = _MarkBuffer(MarkStore(sync.state))
        #: The association differences each object's pass planned, for :meth:`associate`.
        self.links: dict[str, LinkPlanner] = {}
        self._owns_connector = owns_connector
        self._runs = RunLog(sync.state)
        self._started = datetime.now(UTC)

    def __enter__(self) -> RunSession:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, _tb: object
    ) -> None:
        self.finish(exc)

    @property
    def run_id(self) -> str:
        return self.report.run_id

    def write(
        self,
        op: Operation[I, R],
        items: Iterable[I],
        *,
        on_results: Callable[[Sequence[R]], None],
        concurrency: int = 1,
        progress: Callable[[ApplyStats], None] | None = None,
    ) -> ApplyStats:
        """Send ``items`` through the write pipeline with this run's limiter, retry policy
        and lease renewal; ``on_results`` records each answered batch."""
        return apply(
            op,
            items,
            on_results=on_results,
            limiter=self.limiter,
            retry=self.retry,
            concurrency=concurrency,
            progress=progress,
            heartbeat=self.lease.renew_if_due,
        )

    def ensure(self) -> None:
        """Create the custom fields the mapping needs; every field problem (missing, or of the
        wrong type or length) reported at once."""
        self.lease.renew()
        problems: list[Problem] = []
        for obj in self.dest.mapping.objects:
            # Idempotent, so a transient failure (a 429 during setup) just runs it again.
            result = call_with_retry(
                partial(self.connector.ensure, obj.name, obj.destination_fields()),
                policy=self.retry,
                what=f"{self.connector.name} ensure {obj.name}",
                limiter=self.limiter,
            )
            for text in result.problems:
                problems.append(Problem(f"{self.dest.name} {obj.name}: {text}"))
            if result.created:
                log.info("%s %s: created fields %s", self.dest.name, obj.name, result.created)
        if problems:
            # Not only missing fields: an existing one may be of the wrong type or too short.
            summary = (
                f"destination {self.dest.name!r}: {len(problems)} field problem(s) to fix "
                "before syncing (missing fields, or fields of the wrong type or length)"
            )
            raise ConfigError(problems, summary=summary)

    def apply_object(self, object_name: str, *, progress: Progress | None = None) -> ObjectReport:
        """Plan and apply one object of the mapping (and plan its associations)."""
        obj = next((o for o in self.dest.mapping.objects if o.name == object_name), None)
        if obj is None:
            raise ConfigError(f"the mapping of {self.dest.name!r} has no object {object_name!r}")
        # A scheduler may have waited before this step (a task retry): renew before writing, so
        # a lease another run took meanwhile stops the step before its first batch.
        self.lease.renew()
        rep = ObjectReport(obj.name)
        self.report.objects.append(rep)
        ObjectRun(self, obj, rep, progress).run()
        self.report.marks_saved = self.marks.flush()
        return self.object_done(rep)

    def object_done(self, rep: ObjectReport, *, marks_saved: int = 0) -> ObjectReport:
        """Record that ``rep``'s object was applied to the end: by :meth:`apply_object`, or
        partition by partition on Dask workers (:mod:`syncer.engine.cluster`), whose merged
        report is added here with the policy marks they saved."""
        if not any(r is rep for r in self.report.objects):
            self.report.objects.append(rep)
        self.report.marks_saved += marks_saved
        self._done.add(rep.object)
        if self.scope is not None:
            tally(self.report, self.scope)
        planned = ", ".join(f"{k} {v}" for k, v in rep.counts.as_dict().items() if v)
        log.info(
            "%s %s: %s; sent %d, rejected by syncer %d, refused by the destination %d, "
            "%d write %s, %d %s",
            self.dest.name,
            rep.object,
            planned or "no records planned",
            rep.sent,
            rep.counts.rejected,
            rep.refused,
            rep.requests,
            "request" if rep.requests == 1 else "requests",
            rep.retries,
            "retry" if rep.retries == 1 else "retries",
        )
        self._runs.update_counts(self.run_id, self.report.run_counts())
        return rep

    def associate(self) -> LinkStats | None:
        """Send the association changes the objects' passes planned (connectors that have
        associations, mappings that ask): after the records, so both ends have remote ids."""
        if not any(o.associations for o in self.dest.mapping.objects):
            self._done.add("")
            return None
        self.lease.renew()
        return self.links_done(self.send_links())

    def links_done(self, stats: LinkStats) -> LinkStats:
        """Record what the association step came to (sent here, or by the partitions)."""
        self.report.links = stats
        self._runs.update_counts(self.run_id, self.report.run_counts())
        self._done.add("")
        return stats

    def send_links(self) -> LinkStats:
        """Send the association differences the passes of this session planned."""
        stats = LinkStats()
        ledger = AssociationLedger(self.sync.state)
        records = RecordState(self.sync.state)
        op = association_op(self.connector)

        def on_results(results: Sequence[AssociationResult]) -> None:
            ok = [r.change for r in results if r.ok]
            created = [c for c in ok if not c.remove]
            removed = [c for c in ok if c.remove]
            ledger.record_created(self.dest.name, created, self.run_id)
            ledger.record_removed(self.dest.name, removed)
            stats.created += len(created)
            stats.removed += len(removed)
            stats.failed += len(results) - len(ok)

        for name, planner in self.links.items():
            todo = link_changes(self.dest.name, name, planner.todo, records, stats)
            stats.requests += self.write(op, todo, on_results=on_results).requests
        return stats

    def finish(self, exc: BaseException | None = None) -> RunReport:
        """Record how the run ended, release the lease and the connector (idempotent)."""
        report = self.report
        if report.status != "running":
            return report
        if exc is not None:
            report.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            report.message = str(exc) or type(exc).__name__
        else:
            report.status = "partial" if report.undelivered() else "succeeded"
        report.elapsed = (datetime.now(UTC) - self._started).total_seconds()
        try:
            self.marks.flush()
            self._runs.finish_run(report.run_id, report.status, report.run_counts(), report.message)
            if self._completed():
                assert self.scope is not None
                record_position(self.sync, self.dest, self.scope, report.run_id)
        finally:
            self.lease.release()
            if self._owns_connector:
                self.connector.close()
        return report

    def _completed(self) -> bool:
        """Whether the run went through every step, so that everything its scope read is now
        acknowledged by the destination or waits on the dead-letter list (refused records are
        read again next run): only then does the destination's feed position move. A run with
        failed association changes keeps the old position (nothing else records them), so the
        next run plans those users again."""
        if self.scope is None or self.report.status not in ("succeeded", "partial"):
            return False
        if self.report.links is not None and self.report.links.failed:
            return False
        steps = {o.name for o in self.dest.mapping.objects} | {""}
        return steps <= self._done


class _MarkBuffer:
    """Changed policy marks of a real run: collected as the pass reads, saved at the run's
    record points (:meth:`flush_if_full`) and when an object or the run ends."""

    def __init__(self, store: MarkStore) -> None:
        self.store = store
        self.buffer: list[Mark] = []
        self.saved = 0

    def add(self, marks: list[Mark]) -> None:
        self.buffer.extend(marks)

    def flush_if_full(self) -> None:
        if len(self.buffer) >= _MARK_FLUSH:
            self.flush()

    def flush(self) -> int:
        if self.buffer:
            self.saved += self.store.save(self.buffer)
            self.buffer = []
        return self.saved
