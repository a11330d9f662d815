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
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from functools import partial
from itertools import chain, islice
from typing import TYPE_CHECKING, Any, TypeVar

from syncer.connectors.base import AssociationResult, Connector, WriteRecord, WriteResult
from syncer.errors import ConfigError, Problem
from syncer.mapping import ObjectMapping
from syncer.model import Mark
from syncer.plan import Change
from syncer.ratelimit import RateLimiter
from syncer.retry import call_with_retry
from syncer.state import (
    Ack,
    AssociationLedger,
    FailureLog,
    Lease,
    RecordState,
    Rejection,
    RunLog,
)
from syncer.state.marks import MarkStore

from .associations import LinkPlanner, link_changes
from .operations import association_op, record_op
from .pipeline import ApplyStats, Operation, apply
from .planning import changes
from .reports import LinkStats, ObjectReport, RunReport, stage_field

if TYPE_CHECKING:
    from .sync import Destination, Sync

__all__ = ["LEASE_TTL", "Progress", "RunSession"]

log = logging.getLogger("syncer.engine")

I = TypeVar("I")  # noqa: E741
R = TypeVar("R")

#: How long a run's lease on its destination lasts without renewal, in seconds. A heartbeat thread
#: renews it several times within that for as long as the run's process lives (through any pause
#: between steps), so a run whose process died blocks its destination for at most this long.
LEASE_TTL = 45.0
_MARK_FLUSH = 5000
#: Formatter rejections and removals that send nothing, recorded this many at a time.
_LOCAL_FLUSH = 1000

#: A progress callback: the object's name and the pipeline's counts so far.
Progress = Callable[[str, ApplyStats], None]


class RunSession:
    """One run of one destination, step by step; made by :meth:`Sync.start_run`."""

    def __init__(
        self,
        sync: Sync,
        dest: Destination,
        connector: Connector[Any],
        lease: Lease,
        run_id: str,
        *,
        owns_connector: bool,
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
        self.limiter = RateLimiter(connector.capabilities.rate_limit)
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
        _ObjectRun(self, obj, rep, progress).run()
        self.report.marks_saved = self.marks.flush()
        log.info(
            "%s %s: %s; sent %d, rejected by syncer %d, refused by the destination %d, "
            "%d requests, %d retries",
            self.dest.name,
            obj.name,
            ", ".join(f"{k} {v}" for k, v in rep.counts.as_dict().items() if v),
            rep.sent,
            rep.counts.rejected,
            rep.refused,
            rep.requests,
            rep.retries,
        )
        self._runs.update_counts(self.run_id, self.report.run_counts())
        return rep

    def associate(self) -> LinkStats | None:
        """Send the association changes the objects' passes planned (connectors that have
        associations, mappings that ask): after the records, so both ends have remote ids."""
        if not any(o.associations for o in self.dest.mapping.objects):
            return None
        self.lease.renew()
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
        self.report.links = stats
        self._runs.update_counts(self.run_id, self.report.run_counts())
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
        finally:
            self.lease.release()
            if self._owns_connector:
                self.connector.close()
        return report


class _ObjectRun:
    """Plan → apply → record for one object of a run."""

    def __init__(
        self, session: RunSession, obj: ObjectMapping, rep: ObjectReport, progress: Progress | None
    ) -> None:
        self.session = session
        self.obj = obj
        self.rep = rep
        self.progress = progress
        state = session.sync.state
        self.records = RecordState(state)
        self.failures = FailureLog(state)
        self.max_attempts = session.sync.config.policies.max_attempts
        self.dest = session.dest.name
        self.stage_field = stage_field(obj)
        self.pending: dict[str, Change] = {}
        self.archives: list[WriteRecord] = []
        self.gone: list[str] = []
        self.rejected: list[Rejection] = []
        self._base = (0, 0)  # requests and retries of the earlier operations of this object

    def run(self) -> None:
        session, conn = self.session, self.session.connector
        planner = None
        if self.obj.associations:
            planner = LinkPlanner(self.dest, self.obj, AssociationLedger(session.sync.state))
        session.links.pop(self.obj.name, None)  # a retried step plans its links again
        # Closed however the apply ends: a plan left suspended (a crash, a refused batch) would
        # keep its store connection, and on PostgreSQL its open transaction, alive as long as
        # the traceback that references it.
        source = self.to_send(planner.see if planner is not None else None)
        try:
            records: Iterator[WriteRecord] = source
            kind: Any = "write"
            threshold = conn.bulk_threshold
            if threshold is not None:
                # Look ahead: more changed records than the threshold take the bulk path.
                head = list(islice(records, threshold + 1))
                kind = "bulk" if len(head) > threshold else "write"
                records = chain(head, records)
            concurrency = session.dest.config.concurrency or conn.capabilities.concurrency
            if kind == "bulk":
                concurrency = 1  # a bulk job is already the destination's parallelism
            self.send(record_op(conn, self.obj.name, kind), records, concurrency)
            if self.archives:
                self.send(record_op(conn, self.obj.name, "archive"), self.archives, 1)
        finally:
            try:
                self.flush_local()
            finally:
                source.close()
        if planner is not None:
            planner.flush()
            session.links[self.obj.name] = planner

    def send(
        self,
        op: Operation[WriteRecord, WriteResult],
        records: Iterable[WriteRecord],
        concurrency: int,
    ) -> None:
        self._base = (self.rep.requests, self.rep.retries)
        stats = self.session.write(
            op,
            records,
            on_results=self.on_results,
            concurrency=concurrency,
            progress=self.report_progress,
        )
        self.rep.requests = self._base[0] + stats.requests
        self.rep.retries = self._base[1] + stats.retries

    def to_send(self, on_view: Callable[[Any], None] | None) -> Generator[WriteRecord, None, None]:
        session, rep = self.session, self.rep
        removal = session.dest.config.removal
        stream = changes(
            session.sync, session.dest, self.obj, on_marks=session.marks.add, on_view=on_view
        )
        for change in stream:
            rep.counts.add(change.action)
            if change.action == "rejected":
                rep.note_error(change.key, change.reason or "rejected")
                self.rejected.append(Rejection(change.key, change.reason or "", change.field, None))
            elif change.action == "remove" and (
                not change.sends or (removal == "archive" and change.remote_id is None)
            ):
                self.gone.append(change.key)  # nothing to send (or no id to archive by)
            elif change.sends:
                self.pending[change.key] = change
                record = WriteRecord(
                    change.key, change.changes, change.payload, change.remote_id, change.hints
                )
                if change.action == "remove" and removal == "archive":
                    self.archives.append(record)  # after the upserts, through their own call
                    continue
                if len(rep.samples) < 5:
                    rep.samples.append(change)
                yield record
            if len(self.rejected) + len(self.gone) >= _LOCAL_FLUSH:
                self.flush_local()
                session.lease.renew_if_due()

    def flush_local(self) -> None:
        """Record formatter rejections and removals that send nothing (and the marks)."""
        if self.rejected:
            self.rep.set_aside += len(
                self.failures.record_rejections(
                    self.dest, self.obj.name, self.rejected, self.session.run_id, self.max_attempts
                )
            )
            self.rejected.clear()
        if self.gone:
            self.records.mark_removed(self.dest, self.obj.name, self.gone, self.session.run_id)
            self.gone.clear()
        self.session.marks.flush_if_full()

    def on_results(self, results: Sequence[WriteResult]) -> None:
        """One answered batch: commit what was accepted, log what was refused (or unanswered)."""
        rep, run_id = self.rep, self.session.run_id
        acks: list[Ack] = []
        refused: list[Rejection] = []
        for result in results:
            change = self.pending.pop(result.key)
            if result.ok:
                self.tally_stage(change)
                removed = change.action == "remove"
                acks.append(
                    Ack(result.key, change.payload, result.remote_id, change.digest, removed)
                )
            else:
                reason = result.rejected or "rejected"
                refused.append(Rejection(result.key, reason, result.field, change.digest))
                rep.note_error(result.key, reason)
        self.records.commit_acknowledged(self.dest, self.obj.name, acks, run_id)
        if acks:
            self.failures.clear(self.dest, self.obj.name, [a.key for a in acks])
        if refused:
            rep.set_aside += len(
                self.failures.record_rejections(
                    self.dest, self.obj.name, refused, run_id, self.max_attempts
                )
            )
        rep.sent += len(acks)
        rep.refused += len(refused)
        self.session.marks.flush_if_full()

    def tally_stage(self, change: Change) -> None:
        """Count an acknowledged create or update whose stage moved."""
        name = self.stage_field
        if name is None or change.action not in ("create", "update"):
            return
        before = change.before.get(name) if change.before is not None else None
        after = change.payload.get(name)
        if before != after:
            self.rep.stage_moves[(before, after)] += 1

    def report_progress(self, stats: ApplyStats) -> None:
        self.rep.requests = self._base[0] + stats.requests
        self.rep.retries = self._base[1] + stats.retries
        if self.progress is not None:
            self.progress(self.obj.name, stats)


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
