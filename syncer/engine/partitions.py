"""Partitions: one object's keys cut into slices that are planned, and in a run written and
recorded, where they run — on a Dask worker (:mod:`syncer.engine.cluster`) or in a Prefect task.

A partition is a :class:`~syncer.db.KeyRange` of a full run (cut where the work is even: an
account costs about its member count, a user about the same as any other) or a slice of an
incremental run's :class:`~syncer.store.keys.KeySet`, in key order. Every stream a pass reads —
the store, the policy marks, the sync state — is read for the partition's keys only, so each key
is planned in exactly one partition, removals included.

Whoever runs a partition opens its own :class:`~syncer.engine.Sync` from the pickled
:class:`PartitionJob` (config, destination, clock, run id): the coordinator hands out keys and
gets counts back, never records. In a run, a partition writes through the one write pipeline
with a limiter of ``1 / rate_share`` of the destination's rate limit, records what the
destination acknowledged, saves its policy marks, and then sends the association differences of
its own records (their targets belong to objects written before, by every partition: see
:func:`check_link_order`). Before every batch (and every retry) it checks that the
coordinator's run still holds the destination's lease (:class:`PartitionLease`), and stops
there if not.

Nothing here imports Dask.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select
from sqlalchemy.engine import Engine, make_url

from syncer.config import SecretLoader, SyncConfig
from syncer.db import KeyRange, split_key_space
from syncer.errors import ConfigError, FatalError, LeaseLostError
from syncer.mapping import ObjectMapping
from syncer.retry import RetryPolicy
from syncer.state.lease import current_lease, sql_now
from syncer.state.schema import sync_locks
from syncer.store.schema import memberships, users

from .incremental import Keys, KeySet, Mode, ReadScope
from .object_run import ObjectRun
from .pipeline import Answer, ApplyStats, Operation
from .planning import plan_object
from .reports import LinkStats, ObjectReport
from .run import LEASE_TTL, RunSession

if TYPE_CHECKING:
    from .sync import Sync

__all__ = [
    "PARTS_PER_THREAD",
    "ApplyAll",
    "ClusterSpec",
    "PartitionJob",
    "PartitionLease",
    "PartitionResult",
    "apply_partition",
    "check_link_order",
    "merge_plans",
    "merge_runs",
    "partition_job",
    "partitions",
    "plan_partition",
    "refuse_local_files",
    "run_partitions",
]

I = TypeVar("I")  # noqa: E741
R = TypeVar("R")

#: A hook that says the coordinator stopped the run (another partition failed).
Stopped = Callable[[], bool]

#: Partitions per worker thread: more than one evens out partitions of uneven cost.
PARTS_PER_THREAD = 2


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
    run_id: str | None = None  # a run's; None for a plan
    lease_ttl: float = LEASE_TTL
    rate_share: int = 1  # partitions writing at once: each paces to this share of the limit
    mode: Mode = "full"
    position: int = 0
    config_hash: str = ""

    def open(self) -> Sync:
        """A :class:`Sync` of this job's config in this process."""
        return self.make(
            self.config,
            environ=self.environ,
            secret_loader=self.secret_loader,
            retry=self.retry,
            now=self.now,
        )


@dataclass(slots=True)
class PartitionResult:
    """What one partition of a run came to: its object's counts, the links it sent, marks."""

    report: ObjectReport
    links: LinkStats | None
    marks_saved: int


# --- the coordinator's side: where partitions run, cutting and merging --------------------------


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    """Where partitions run: ``local:N`` (a Dask ``LocalCluster`` of N one-thread worker
    processes, started for the plan or run and closed after) or ``tcp://HOST:PORT`` (a running
    ``dask scheduler`` and its workers)."""

    text: str
    workers: int = 0  # local worker processes; 0 for a running cluster
    address: str | None = None

    @property
    def remote(self) -> bool:
        return self.address is not None

    @classmethod
    def parse(cls, text: str) -> ClusterSpec:
        """The cluster ``text`` names; :class:`ConfigError` saying what is accepted if none."""
        value = text.strip()
        if value.startswith("local:"):
            count = value.removeprefix("local:")
            if count.isdigit() and int(count) >= 1:
                return cls(value, workers=int(count))
        elif value.startswith("tcp://"):
            host, _, port = value.removeprefix("tcp://").rpartition(":")
            if host and port.isdigit():
                return cls(value, address=value)
        raise ConfigError(
            f"cluster {text!r} is neither local:N (N worker processes on this machine, N >= 1) "
            "nor tcp://HOST:PORT (a running dask scheduler, e.g. tcp://10.0.0.5:8786)"
        )


def refuse_local_files(spec: ClusterSpec, store_url: str, state_url: str) -> None:
    """A running cluster's workers may be on other machines: a SQLite store or state (a file on
    this one) is refused before anything is written. ``local:N`` shares the file."""
    if not spec.remote:
        return
    for role, url in (("store", store_url), ("state", state_url)):
        if make_url(url).get_backend_name() == "sqlite":
            raise ConfigError(
                f"--cluster {spec.text}: the {role} database is SQLite ({url}), a file on this "
                "machine that workers on other machines cannot share; point `store:` and "
                "`state:` in syncer.yaml at PostgreSQL, or use --cluster local:N"
            )


def partitions(sync: Sync, obj: ObjectMapping, keys: Keys, count: int) -> Sequence[Keys]:
    """``obj``'s keys cut into at most ``count`` partitions of about equal work, in key order:
    key ranges of a full run, slices of an incremental run's key set (none when it is empty)."""
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    if isinstance(keys, KeySet):
        if not keys:
            return []
        size = -(-len(keys) // count)  # ceiling: at most ``count`` slices
        return [KeySet(keys.keys[i : i + size]) for i in range(0, len(keys), size)]
    if keys != KeyRange():
        return [keys]
    column = users.c.user_id if obj.source == "users" else memberships.c.account_id
    return list(split_key_space(sync.store, column, count))


def check_link_order(objects: Sequence[ObjectMapping]) -> None:
    """Partitions send their records' links at once, so every association's target object must
    be written (by all its partitions) before its source object: refuse a mapping where not."""
    for i, obj in enumerate(objects):
        earlier = {o.name for o in objects[:i]}
        for assoc in obj.associations:
            if assoc.to_object not in earlier:
                raise ConfigError(
                    f"object {obj.name!r} links to {assoc.to_object!r}, which is written after "
                    "it: a run on a cluster sends each partition's links with its records, so "
                    "the linked object must come first; run this destination without --cluster"
                )


def merge_plans(
    name: str, parts: Sequence[ObjectReport], *, samples: int, explain: bool
) -> ObjectReport:
    """One object's plan from its partitions' (in key order): counts and rows read add up;
    samples are the first ones in key order, as one process would pick them."""
    rep = ObjectReport(name)
    for part in parts:
        rep.counts += part.counts
        for table, n in part.read.items():
            rep.read[table] = rep.read.get(table, 0) + n
        room = len(part.samples) if explain else samples - len(rep.samples)
        rep.samples.extend(part.samples[: max(room, 0)])
    return rep


def merge_runs(
    name: str, parts: Sequence[PartitionResult]
) -> tuple[ObjectReport, LinkStats | None, int]:
    """One object's run report from its partitions', their links and marks saved."""
    rep = merge_plans(name, [p.report for p in parts], samples=5, explain=False)
    links: LinkStats | None = None
    for p in parts:
        part = p.report
        rep.sent += part.sent
        rep.refused += part.refused
        rep.set_aside += part.set_aside
        rep.requests += part.requests
        rep.retries += part.retries
        rep.stage_moves.update(part.stage_moves)
        for key, reason in part.errors:
            rep.note_error(key, reason)
        if p.links is not None:
            links = _add_links(links, p.links)
    return rep, links, sum(p.marks_saved for p in parts)


def partition_job(session: RunSession, rate_share: int) -> PartitionJob:
    """The job of ``session``'s partitions, ``rate_share`` of them writing at once."""
    sync, scope = session.sync, session.scope
    assert scope is not None
    return PartitionJob(
        type(sync),
        sync.config,
        session.dest.name,
        sync.now or datetime.now(UTC),
        sync.retry,
        environ=sync.environ,
        secret_loader=sync.secret_loader,
        run_id=session.run_id,
        lease_ttl=session.lease.ttl_seconds,
        rate_share=rate_share,
        mode=scope.mode,
        position=scope.position,
        config_hash=scope.config_hash,
    )


#: Runs one object's partitions somewhere (Dask futures, Prefect tasks) and returns their
#: results in order once every one of them ended; raises the first failure.
ApplyAll = Callable[[str, Sequence[Keys]], list[PartitionResult]]


def run_partitions(session: RunSession, threads: int, apply_all: ApplyAll) -> None:
    """The coordinator's loop of a run on a cluster of ``threads`` worker threads: object by
    object in write order, its partitions applied by ``apply_all`` (all of them before the next
    object starts), their merged report recorded on ``session``; then the links they sent."""
    sync, dest, scope = session.sync, session.dest, session.scope
    assert scope is not None
    check_link_order(dest.mapping.objects)
    links: LinkStats | None = None
    for obj in dest.mapping.objects:
        session.lease.renew()
        parts = partitions(sync, obj, scope.keys_for(obj), PARTS_PER_THREAD * threads)
        results = apply_all(obj.name, parts) if parts else []
        rep, part_links, marks = merge_runs(obj.name, results)
        session.object_done(rep, marks_saved=marks)
        if part_links is not None:
            links = _add_links(links, part_links)
    if links is not None:
        session.links_done(links)
    else:
        session.associate()  # no partition planned links: nothing to send, or no associations


def _add_links(total: LinkStats | None, more: LinkStats) -> LinkStats:
    if total is None:
        return more
    return LinkStats(
        *(getattr(total, f.name) + getattr(more, f.name) for f in dataclasses.fields(LinkStats))
    )


# --- the worker's side ----------------------------------------------------------------------------


def plan_partition(
    sync: Sync, job: PartitionJob, object_name: str, keys: Keys, *, samples: int,
    explain: Sequence[str] | None,
) -> ObjectReport:  # fmt: skip
    """One partition's plan: counts, samples and rows read, written nowhere."""
    dest = sync.destination(job.destination)
    obj = dest.mapping.object(object_name)
    return plan_object(sync, dest, obj, shard=keys, samples=samples, keys=explain)


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
    base = KeySet() if isinstance(keys, KeySet) else KeyRange()
    users_keys, accounts_keys = (keys, base) if obj.source == "users" else (base, keys)
    scope = ReadScope(job.mode, job.position, job.config_hash, users_keys, accounts_keys)
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


class PartitionLease:
    """The coordinator's lease on the destination, as a partition sees it: checked (it must be
    held by this run and not expired, on the database's clock), never renewed nor released
    here — the coordinator's heartbeat renews it. A coordinator that stopped the run (another
    partition failed) is seen through ``stopped``."""

    heartbeat_running = True  # the coordinator's heartbeat keeps the lease alive
    _EVERY = 1.0  # seconds between checks at the pipeline's own checkpoints

    def __init__(
        self,
        engine: Engine,
        destination: str,
        holder: str,
        ttl_seconds: float,
        stopped: Stopped | None = None,
    ) -> None:
        self.engine = engine
        self.destination = destination
        self.holder = holder
        self.ttl_seconds = ttl_seconds
        self.stopped = stopped
        self._checked = float("-inf")

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
