"""The coordinator's side of a plan or run on a cluster: where partitions run (``--cluster``),
each object's keys cut into partitions, the loop that hands them out object by object in write
order, and their reports merged into one (:mod:`syncer.engine.partitions` is the side that runs
them). Nothing here imports Dask: :mod:`syncer.engine.cluster` and the Prefect flow each give
:func:`run_partitions` their own way of running a list of partitions.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from syncer.db import KeyRange, split_key_space, split_keys
from syncer.errors import ConfigError
from syncer.mapping import ObjectMapping
from syncer.store.schema import memberships, users

from .incremental import Keys, KeySet
from .partitions import PartitionJob, PartitionResult
from .reports import LinkStats, ObjectReport

if TYPE_CHECKING:
    from .run import RunSession
    from .sync import Sync

__all__ = [
    "ACCOUNT_COST",
    "PARTS_PER_THREAD",
    "PLAN_PARTS_PER_THREAD",
    "ApplyAll",
    "ClusterSpec",
    "check_link_order",
    "merge_plans",
    "merge_runs",
    "partition_job",
    "partitions",
    "refuse_local_files",
    "run_partitions",
]

#: Partitions per worker thread in a run: more than one evens out partitions of uneven cost. A
#: run is paced by the destination, and each partition opens a connector and ends on a part
#: batch: a few.
PARTS_PER_THREAD = 2

#: Partitions per worker thread in a plan, which only computes. The cuts are even by estimate
#: only (:data:`ACCOUNT_COST`), and a plan ends with its last partition: smaller ones shorten
#: the tail where one worker is done and the other still plans, for a few queries more each.
PLAN_PARTS_PER_THREAD = 8

#: What planning an account costs beside its members', in members: measured on the HubSpot
#: mapping (a partition's time against its accounts and memberships), rounded.
ACCOUNT_COST = 4


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
        if obj.source == "users":
            size = -(-len(keys) // count)  # ceiling: at most ``count`` slices
            return [KeySet(keys.keys[i : i + size]) for i in range(0, len(keys), size)]
        # Accounts cost their members: the biggest accounts have the lowest keys in many stores
        # (the oldest), so slices of equal length would leave one worker most of the work.
        cuts = split_keys(
            sync.store, memberships.c.account_id, keys.keys, count, per_key=ACCOUNT_COST
        )
        bounds = [0, *cuts, len(keys)]
        return [KeySet(keys.keys[a:b]) for a, b in itertools.pairwise(bounds)]
    if keys != KeyRange():
        return [keys]
    if obj.source == "users":  # a user costs about as much as any other
        return split_key_space(sync.store, users.c.user_id, count)
    # An account costs its members (power-law sizes) and a little of its own.
    return split_key_space(sync.store, memberships.c.account_id, count, per_key=ACCOUNT_COST)


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
    assert session.scope is not None
    return PartitionJob.of(
        session.sync,
        session.dest.name,
        session.scope,
        run_id=session.run_id,
        lease_ttl=session.lease.ttl_seconds,
        rate_share=rate_share,
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
