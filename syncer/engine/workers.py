"""A plan spread over processes: contiguous key ranges, merged back in key order.

:meth:`syncer.engine.Sync.plan` with ``workers > 1`` lands here. Each object's key space is cut
into twice as many shards as processes (where the work is even: an account costs about its
member count, a user about the same as any other), every object's shards go to one pool at
once, and each process builds its own :class:`~syncer.engine.Sync` (engines, mapping, account
forest) once. Counts add up; samples are taken shard by shard in key order, as one process
would pick them.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from multiprocessing import get_context
from typing import TYPE_CHECKING

from syncer.config import SyncConfig
from syncer.db import KeyRange, split_key_space
from syncer.store.schema import memberships, users

from .planning import plan_object
from .reports import ObjectReport, PlanReport

if TYPE_CHECKING:
    from .sync import Destination, Sync

__all__ = ["plan_in_processes"]


def plan_in_processes(
    sync: Sync, dest: Destination, *, samples: int, keys: Sequence[str] | None, workers: int
) -> PlanReport:
    """The plan of ``dest`` computed by ``workers`` processes; the same report as one."""
    report = PlanReport(dest.name, [])
    now = sync.now or datetime.now(UTC)  # one clock for every shard
    with ProcessPoolExecutor(
        workers,
        mp_context=get_context("spawn"),  # no inherited connections or threads
        initializer=_start_worker,
        initargs=(type(sync), sync.config, now, dest.name),
    ) as pool:
        jobs = []
        for obj in dest.mapping.objects:
            column = users.c.user_id if obj.source == "users" else memberships.c.account_id
            shards = split_key_space(sync.store, column, 2 * workers)
            jobs.append([pool.submit(_plan_shard, obj.name, s, samples, keys) for s in shards])
        for obj, futures in zip(dest.mapping.objects, jobs, strict=True):
            rep = ObjectReport(obj.name)
            for future in futures:  # in key order: samples as one process would pick them
                part = future.result()
                rep.counts += part.counts
                for table, n in part.read.items():  # store rows read, summed over shards
                    rep.read[table] = rep.read.get(table, 0) + n
                room = samples - len(rep.samples) if keys is None else len(part.samples)
                rep.samples.extend(part.samples[: max(room, 0)])
            report.objects.append(rep)
    return report


# A plan worker process's own Sync, built once by the pool's initializer: process-local state
# is how a ProcessPoolExecutor task reaches what its process prepared.
_WORKER: dict[str, tuple[Sync, Destination]] = {}


def _start_worker(make: type[Sync], config: SyncConfig, now: datetime, name: str) -> None:
    # ``make`` is the parent's Sync class (pickled by reference): no import of .sync here.
    sync = make(config, now=now)
    _WORKER["plan"] = (sync, sync.destination(name))


def _plan_shard(
    object_name: str, shard: KeyRange, samples: int, keys: Sequence[str] | None
) -> ObjectReport:
    """One worker process's part of the plan: its own engines, the parent's clock."""
    sync, dest = _WORKER["plan"]
    obj = dest.mapping.object(object_name)
    return plan_object(sync, dest, obj, shard=shard, samples=samples, keys=keys)
