"""Partitions: one object's keys cut into slices that are planned, and in a run written and
recorded, where they run — on a Dask worker (:mod:`syncer.engine.cluster`) or in a Prefect task.

A partition is a :class:`~syncer.db.KeyRange` of a full run or a slice of an incremental run's
:class:`~syncer.store.keys.KeySet`, in key order, cut where the work is even (an account costs
about its member count, a user about the same as any other). Every stream a pass reads —
the store, the policy marks, the sync state — is read for the partition's keys only, so each key
is planned in exactly one partition, removals included. :mod:`syncer.engine.coordinator` cuts
them and hands them out.

Whoever runs a partition opens its own :class:`~syncer.engine.Sync` from the pickled
:class:`PartitionJob` (config, destination, clock, run id, and in an incremental run the part of
the account forest the coordinator read): the coordinator hands out keys and
gets counts back, never records. In a run, a partition writes through the one write pipeline
with a limiter of ``1 / rate_share`` of the destination's rate limit, records what the
destination acknowledged, saves its policy marks, and then sends the association differences of
its own records (their targets belong to objects written before, by every partition: see
:func:`~syncer.engine.coordinator.check_link_order`). Before every batch (and every retry) it
checks that the coordinator's run still holds the destination's lease
(:class:`PartitionLease`), and stops there if not.

Nothing here imports Dask.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from syncer.config import SecretLoader, SyncConfig
from syncer.db import KeyRange
from syncer.errors import FatalError, LeaseLostError
from syncer.policies.hierarchy import Hierarchy
from syncer.retry import RetryPolicy
from syncer.state.lease import current_lease, sql_now
from syncer.state.schema import sync_locks

from .incremental import Keys, KeySet, Mode, ReadScope
from .object_run import ObjectRun
from .pipeline import Answer, ApplyStats, I, Operation, R
from .planning import plan_object
from .reports import LinkStats, ObjectReport
from .run import LEASE_TTL, RunSession

if TYPE_CHECKING:
    from .sync import Sync

__all__ = [
    "PartitionJob",
    "PartitionLease",
    "PartitionResult",
    "apply_partition",
    "plan_partition",
]


#: A hook that says the coordinator stopped the run (another partition failed).
Stopped = Callable[[], bool]


@dataclass(frozen=True, slots=True)
class PartitionJob:
    """Everything a worker needs to plan or write partitions of one plan or run, pickled to it.

    ``make`` is the coordinator's :class:`Sync` class (pickled by reference); credentials are
    resolved where the partition runs, from ``environ`` (the coordinator's explicit mapping, if
    it was given one), that process's environment, or ``secret_loader``."""

    make: type[Sync]
    config: SyncConfig
    destination: str
    now: datetime  # one clock for every partition
    retry: RetryPolicy
    environ: Mapping[str, str] | None = None
    secret_loader: SecretLoader | None = None
    #: An incremental run's part of the account forest, read once by the coordinator after it
    #: took the feed position (each worker would otherwise read the whole forest: at 1M users,
    #: 2 s of every worker's start). None: each worker reads the whole forest (a full run).
    hierarchy: Hierarchy | None = None
    run_id: str | None = None  # a run's; None for a plan
    lease_ttl: float = LEASE_TTL
    rate_share: int = 1  # partitions writing at once: each paces to this share of the limit
    mode: Mode = "full"
    position: int = 0
    config_hash: str = ""
    member_updates: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    user_updates: frozenset[str] = frozenset()

    @classmethod
    def of(cls, sync: Sync, destination: str, scope: ReadScope, **fields: Any) -> PartitionJob:
        """The job of partitions of ``sync``'s ``destination`` read in ``scope``: an incremental
        scope's part of the forest (``sync.hierarchy``, set by its read) goes along."""
        return cls(
            type(sync),
            sync.config,
            destination,
            sync.now or datetime.now(UTC),
            sync.retry,
            environ=sync.environ,
            secret_loader=sync.secret_loader,
            hierarchy=sync.hierarchy if scope.incremental else None,
            mode=scope.mode,
            position=scope.position,
            config_hash=scope.config_hash,
            member_updates=scope.member_updates,
            user_updates=scope.user_updates,
            **fields,
        )

    def scope(self, keys: Keys, source: str) -> ReadScope:
        """The scope of one partition: ``keys`` of the ``source`` view, nothing of the other."""
        base = KeySet() if isinstance(keys, KeySet) else KeyRange()
        users, accounts = (keys, base) if source == "users" else (base, keys)
        return ReadScope(
            self.mode,
            self.position,
            self.config_hash,
            users,
            accounts,
            member_updates=self.member_updates,
            user_updates=self.user_updates,
        )

    def open(self) -> Sync:
        """A :class:`Sync` of this job's config in this process."""
        sync = self.make(
            self.config,
            environ=self.environ,
            secret_loader=self.secret_loader,
            retry=self.retry,
            now=self.now,
        )
        sync.use_hierarchy(self.hierarchy)
        return sync


@dataclass(slots=True)
class PartitionResult:
    """What one partition of a run came to: its object's counts, the links it sent, marks."""

    report: ObjectReport
    links: LinkStats | None
    marks_saved: int


# --- the worker's side ----------------------------------------------------------------------------


def plan_partition(
    sync: Sync, job: PartitionJob, object_name: str, keys: Keys, *, samples: int,
    explain: Sequence[str] | None,
) -> ObjectReport:  # fmt: skip
    """One partition's plan: counts, samples and rows read, written nowhere."""
    dest = sync.destination(job.destination)
    obj = dest.mapping.object(object_name)
    remake = job.scope(keys, obj.source).remake(write=False)
    return plan_object(sync, dest, obj, shard=keys, samples=samples, keys=explain, remake=remake)


def apply_partition(
    sync: Sync, job: PartitionJob, object_name: str, keys: Keys, *, stopped: Stopped | None = None
) -> PartitionResult:
    """One partition of a run: planned, sent, recorded, then its links sent (module docstring).
    Raises :class:`LeaseLostError` before a batch if the run no longer holds the lease."""
    if job.run_id is None:
        raise ValueError("a partition of a run needs the run's id")
    dest = sync.destination(job.destination)
    obj = dest.mapping.object(object_name)
    lease = PartitionLease(sync.state, dest.name, job.run_id, job.lease_ttl, stopped)
    lease.renew()  # before anything is read: a run stopped meanwhile starts nothing here
    scope = job.scope(keys, obj.source)
    session = _PartitionSession(
        sync, dest, sync.connect(dest), lease, job.run_id, owns_connector=True, scope=scope,
        rate_share=job.rate_share,
    )  # fmt: skip
    rep = ObjectReport(obj.name)
    try:
        ObjectRun(session, obj, rep, None).run()
        links = session.send_links() if obj.name in session.links else None
    finally:
        marks = session.marks.flush()
        session.connector.close()
    return PartitionResult(rep, links, marks)


@dataclass(eq=False, slots=True)
class PartitionLease:
    """The coordinator's lease on the destination, as a partition sees it: checked (it must be
    held by this run and not expired, on the database's clock), never renewed nor released
    here — the coordinator's heartbeat renews it. A coordinator that stopped the run (another
    partition failed) is seen through ``stopped``."""

    heartbeat_running = True  # the coordinator's heartbeat keeps the lease alive
    _EVERY = 1.0  # seconds between checks at the pipeline's own checkpoints

    engine: Engine
    destination: str
    holder: str
    ttl_seconds: float
    stopped: Stopped | None = None
    _checked: float = field(default=float("-inf"), init=False, repr=False)  # time.monotonic()

    def check(self) -> None:
        """Raise :class:`LeaseLostError` unless this run holds the lease now; a
        :class:`FatalError` if the coordinator stopped the run."""
        if self.stopped is not None and self.stopped():
            raise FatalError(
                f"run {self.holder} of {self.destination!r} was stopped by its coordinator "
                "(another partition failed); this partition sent nothing more"
            )
        t = sync_locks.c
        with self.engine.connect() as conn:
            held = conn.execute(
                select(t.holder).where(
                    t.destination == self.destination,
                    t.holder == self.holder,
                    t.expires_at > sql_now(conn),
                )
            ).first()
        self._checked = time.monotonic()
        if held is None:
            now = current_lease(self.engine, self.destination)
            raise LeaseLostError(
                self.destination,
                self.holder,
                now.holder if now is not None and now.holder != self.holder else None,
                now.expires_at if now is not None else None,
            )

    def renew(self) -> None:
        self.check()

    def renew_if_due(self) -> bool:
        if time.monotonic() - self._checked >= self._EVERY:
            self.check()
            return True
        return False

    def release(self) -> None:
        """The coordinator releases the lease when the run ends."""


class _PartitionSession(RunSession):
    """A run session of one partition: every destination call checks the lease first."""

    lease: PartitionLease

    def write(
        self,
        op: Operation[I, R],
        items: Any,
        *,
        on_results: Callable[[Sequence[R]], None],
        concurrency: int = 1,
        progress: Callable[[ApplyStats], None] | None = None,
    ) -> ApplyStats:
        call = op.call

        def checked(batch: Sequence[I]) -> Answer[R]:
            self.lease.check()  # before each batch and each retry: a lost lease sends nothing
            return call(batch)

        guarded = dataclasses.replace(op, call=checked)
        return super().write(
            guarded, items, on_results=on_results, concurrency=concurrency, progress=progress
        )
