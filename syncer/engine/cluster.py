"""Plans and runs spread over Dask distributed: the coordinator hands out partitions, workers
plan and write them (:mod:`syncer.engine.partitions`).

``--cluster local:N`` starts a ``distributed.LocalCluster`` of N worker processes of one thread
each for the plan or run, and closes it (waiting for its processes) after;
``--cluster tcp://HOST:PORT`` uses a running ``dask scheduler`` and its ``dask worker``\\ s,
which must have syncer (and the connectors the config names) installed, and reach the store,
the state database and the destination themselves.

The coordinator (this process) decides what the run reads (full, or incremental from the
change feed), holds the destination's lease with its heartbeat, runs ``ensure``, and then, object
by object in write order, submits the object's partitions and waits for all of them before the
next object starts: companies are all written before any contact links to one. Each worker
builds its :class:`~syncer.engine.Sync` once per plan or run (a worker plugin holds it, and
closes it when the coordinator unregisters the plugin at the end). Workers send counts back,
never records. When a partition fails, the coordinator sets the run's stop event, which every
other partition checks before its next batch; it waits for all of them to end, and only then
records the run (``failed``) and releases the lease: no partition writes without it. The feed
position is recorded by the coordinator when every partition of every object completed, as in
one process (:meth:`RunSession.finish`).

This is the one module of syncer that imports Dask; it is imported only when a plan or run
names a cluster (``pip install 'syncer[dask]'``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, TypeVar

from distributed import Client, Event, LocalCluster, as_completed, get_worker, wait
from distributed.diagnostics.plugin import WorkerPlugin

from syncer.errors import ConfigError

from .coordinator import (
    PLAN_PARTS_PER_THREAD,
    ClusterSpec,
    merge_plans,
    partition_job,
    partitions,
    run_partitions,
)
from .incremental import Keys, ReadScope
from .partitions import PartitionJob, PartitionResult, apply_partition, plan_partition
from .reports import ObjectReport

if TYPE_CHECKING:
    from .run import RunSession
    from .sync import Destination, Sync

__all__ = ["DaskPool", "plan_on_cluster", "run_on_cluster"]

log = logging.getLogger("syncer.engine")

T = TypeVar("T")

#: Seconds a worker waits between two looks at the run's stop event (one scheduler round trip).
_STOP_EVERY = 1.0
_CONNECT_TIMEOUT = "10s"


class DaskPool:
    """A Dask client for one plan or run, started at first use: a ``LocalCluster`` of its own
    for ``local:N`` (closed, its processes waited for, on :meth:`close`), or a connection to a
    running scheduler."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self._cluster: LocalCluster | None = None
        self._client: Client | None = None
        self._starting: Future[None] | None = None

    def start(self) -> None:
        """Start a ``local:N`` cluster in the background (its processes import syncer and Dask
        for a few seconds), so that the caller cuts partitions meanwhile; :attr:`client` waits
        for it. A running cluster is connected to at first use."""
        if self.spec.remote or self._client is not None or self._starting is not None:
            return
        starting: Future[None] = Future()

        def start() -> None:
            try:
                self._start_local()
            except BaseException as exc:  # raised where the client is asked for
                starting.set_exception(exc)
            else:
                starting.set_result(None)

        threading.Thread(target=start, name="syncer-dask-start", daemon=True).start()
        self._starting = starting

    def __enter__(self) -> DaskPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def client(self) -> Client:
        if self._client is None:
            if self._starting is not None:
                self._starting.result()
            elif self.spec.address is not None:
                try:
                    self._client = Client(self.spec.address, timeout=_CONNECT_TIMEOUT)
                except OSError as exc:
                    raise ConfigError(
                        f"--cluster {self.spec.text}: no dask scheduler answers there ({exc}); "
                        "start one (`dask scheduler`, then `dask worker ADDRESS` on each "
                        "machine) or use --cluster local:N"
                    ) from None
            else:
                self._start_local()
        assert self._client is not None
        return self._client

    def _start_local(self) -> None:
        self._cluster = LocalCluster(
            n_workers=self.spec.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,  # no web dashboard: a run, not a session
            # ...and its HTTP endpoints on a free loopback port, not 8787: two runs on one
            # machine do not compete for it.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            # A partition's failure is the run's error, reported once by syncer.
            silence_logs=logging.CRITICAL,
            # Each worker's Dask config: no statistical profile (a sample of the stacks every
            # 10 ms, kept for a dashboard that is not started), memory the plan needs more.
            # (a dotted key: Nanny merges this over the whole config one level deep only)
            config={"distributed.worker.profile.enabled": False},
        )
        self._client = Client(self._cluster)

    def threads(self) -> int:
        """Worker threads in the cluster now: partitions that run at once (``local:N``: N,
        known before its workers are up)."""
        if not self.spec.remote:
            return self.spec.workers
        count = sum(self.client.nthreads().values())
        if count < 1:
            raise ConfigError(
                f"--cluster {self.spec.text}: the scheduler has no workers; start some "
                f"(`dask worker {self.spec.address}`) and run again"
            )
        return count

    def close(self) -> None:
        """Close the client and, for ``local:N``, the cluster (idempotent)."""
        starting, self._starting = self._starting, None
        if starting is not None:
            with suppress(Exception):  # raised where the client was asked for, if it was
                starting.result()  # a cluster still starting is closed once it is up
        client, self._client = self._client, None
        cluster, self._cluster = self._cluster, None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()

    @contextmanager
    def syncs(self, job: PartitionJob) -> Iterator[str]:
        """Each worker's :class:`Sync` for ``job`` (built, with its forest, as the plugin is
        registered), closed at the end; yields the plugin's name, which the tasks look it up
        by."""
        name = f"syncer-{uuid.uuid4().hex}"
        self.client.register_plugin(_WorkerSync(job), name=name)
        try:
            yield name
        finally:
            self.client.unregister_worker_plugin(name)


class _WorkerSync(WorkerPlugin):
    """A worker's :class:`Sync` of one plan or run."""

    def __init__(self, job: PartitionJob) -> None:
        self.job = job
        self._sync: Sync | None = None

    def setup(self, worker: Any) -> None:
        self._lock = threading.Lock()  # a worker of several threads runs partitions at once
        # Registered while the coordinator still cuts partitions: the worker builds its Sync
        # and reads the forest meanwhile (at 1M users ~2.5 s, which the first partition would
        # otherwise spend before its first record).
        self._warming = threading.Thread(target=self._warm, name="syncer-warm", daemon=True)
        self._warming.start()

    def _warm(self) -> None:
        # Under the lock: a partition that starts meanwhile waits for the forest instead of
        # reading it a second time. A failure here is met again, and reported, by the first
        # partition that asks.
        with self._lock, suppress(Exception):
            self._sync = sync = self._sync or self.job.open()
            sync.destination(self.job.destination)  # the connector and mapping imported
            sync.hierarchy  # noqa: B018  # read once, here rather than in a partition

    def sync(self) -> Sync:
        with self._lock:
            if self._sync is None:
                self._sync = self.job.open()
            return self._sync

    def teardown(self, worker: Any) -> None:
        self._warming.join()  # not closed under a forest still being read
        if self._sync is not None:
            self._sync.close()


def _plugin(name: str) -> _WorkerSync:
    plugin = get_worker().plugins[name]
    assert isinstance(plugin, _WorkerSync)
    return plugin


# --- plan ---------------------------------------------------------------------------------------


def plan_on_cluster(
    pool: DaskPool,
    sync: Sync,
    dest: Destination,
    scope: ReadScope,
    *,
    samples: int,
    keys: Sequence[str] | None,
) -> list[ObjectReport]:
    """Each object's plan, partition by partition on the cluster; the same reports as one
    process (:meth:`Sync.plan`)."""
    pool.start()  # a local cluster starts while the partitions are cut here
    count = PLAN_PARTS_PER_THREAD * pool.threads()
    objects = dest.mapping.objects
    job = PartitionJob.of(sync, dest.name, scope)
    with ThreadPoolExecutor(1, thread_name_prefix="syncer-cuts") as cutter:
        # Cut here, object by object, while the workers warm up (their Sync and the forest,
        # once the plugin is registered); each object's partitions go out as soon as it is cut.
        cuts = [cutter.submit(partitions, sync, o, scope.keys_for(o), count) for o in objects]
        with pool.syncs(job) as name:
            jobs = [
                [
                    pool.client.submit(_plan_task, name, o.name, part, samples, keys, pure=False)
                    for part in cut.result()
                ]
                for o, cut in zip(objects, cuts, strict=True)
            ]
            return [
                merge_plans(
                    o.name, _gather(pool, futures), samples=samples, explain=keys is not None
                )
                for o, futures in zip(objects, jobs, strict=True)
            ]


def _plan_task(
    plugin: str, object_name: str, keys: Keys, samples: int, explain: Sequence[str] | None
) -> ObjectReport:
    worker = _plugin(plugin)
    return plan_partition(
        worker.sync(), worker.job, object_name, keys, samples=samples, explain=explain
    )


# --- run ----------------------------------------------------------------------------------------


def run_on_cluster(pool: DaskPool, session: RunSession) -> None:
    """Apply every object of ``session``'s mapping, then its links, partition by partition on
    the cluster (module docstring; :func:`~syncer.engine.coordinator.run_partitions`)."""
    threads = pool.threads()
    job = partition_job(session, rate_share=threads)
    stop = Event(f"syncer-stop-{session.run_id}", client=pool.client)
    with pool.syncs(job) as name:

        def apply_all(object_name: str, parts: Sequence[Keys]) -> list[PartitionResult]:
            futures = [
                pool.client.submit(_apply_task, name, object_name, part, stop.name, pure=False)
                for part in parts
            ]
            results: list[PartitionResult] = _gather(pool, futures, stop)
            return results

        run_partitions(session, threads, apply_all)


def _apply_task(plugin: str, object_name: str, keys: Keys, stop_name: str) -> PartitionResult:
    worker = _plugin(plugin)
    stop = Event(stop_name)
    last = [float("-inf"), False]

    def stopped() -> bool:
        # One scheduler round trip a second at most: the lease check runs before every batch.
        if time.monotonic() - last[0] >= _STOP_EVERY:
            last[:] = [time.monotonic(), stop.is_set()]
        return bool(last[1])

    return apply_partition(worker.sync(), worker.job, object_name, keys, stopped=stopped)


def _gather(pool: DaskPool, futures: Sequence[Any], stop: Event | None = None) -> list[Any]:
    """The futures' results in their order. When one fails (or this process is interrupted),
    the others are told to stop (``stop``: each looks before its next batch) and waited for —
    a partition still writing must end before the run ends and its lease goes — then the
    first failure is raised."""
    index = {f.key: i for i, f in enumerate(futures)}
    results: dict[int, Any] = {}
    error: BaseException | None = None
    try:
        for future in as_completed(futures):
            try:
                results[index[future.key]] = future.result()
            except Exception as exc:  # a partition's failure, raised as it was on the worker
                if error is None:
                    error = exc
                    if stop is not None:
                        stop.set()
                    else:  # a plan writes nothing: no need to let the others finish
                        pool.client.cancel(list(futures))
                        break
    except BaseException:
        if stop is not None:
            stop.set()
            wait(list(futures))
        raise
    if error is not None:
        raise error
    return [results[i] for i in range(len(futures))]
