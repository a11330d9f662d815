"""A sync run on a Dask cluster: a child flow of ``syncer-sync`` on prefect-dask's
``DaskTaskRunner`` (the ``[dask]`` extra).

The flow holds the run's lease and runs ``ensure``; each key-range partition of each object is
one task on a Dask worker (:func:`syncer.engine.apply_partition`: its own Sync and connector),
all of an object's partitions before the next object's, the way ``syncer run --cluster`` runs
them (:func:`syncer.engine.run_partitions`). A retried partition re-plans its keys against the
sync state, so it sends only what was not acknowledged.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow, get_run_logger, task

from flows.sync import (
    _TASK_OPTIONS,
    LEASE_SECONDS,
    engine_logs_in_run_logs,
    load_secret,
    publish_run,
)
from syncer.config import load_config
from syncer.engine import (
    ClusterSpec,
    PartitionJob,
    PartitionResult,
    Sync,
    apply_partition,
    partition_job,
    run_partitions,
)
from syncer.errors import ConfigError

__all__ = ["apply_partition_task", "cluster_threads", "dask_task_runner", "sync_partitions"]


@task(name="apply partition", task_run_name="apply {object_name} {keys}", **_TASK_OPTIONS)
def apply_partition_task(job: PartitionJob, object_name: str, keys: Any) -> PartitionResult:
    """One partition of a run, on a Dask worker: its own Sync and connector (a retry re-plans
    the partition against the sync state, so it sends only what was not acknowledged)."""
    with job.open() as engine:
        return apply_partition(engine, job, object_name, keys)


@flow(name="syncer-sync-partitions", log_prints=False)
def sync_partitions(config: str, destination: str, full: bool, cluster: str) -> dict[str, Any]:
    """A run of ``destination`` with its partitions as tasks on the Dask cluster ``cluster``
    (the task runner :func:`dask_task_runner` made): ``sync``'s child flow."""
    logger = get_run_logger()
    threads = cluster_threads(ClusterSpec.parse(cluster))
    with (
        engine_logs_in_run_logs(),
        Sync(load_config(config), secret_loader=load_secret) as engine,
        engine.start_run(destination, lease_ttl=LEASE_SECONDS, full=full) as session,
    ):
        session.ensure()
        job = partition_job(session, rate_share=threads)

        def apply_all(object_name: str, parts: Any) -> list[PartitionResult]:
            futures = [apply_partition_task.submit(job, object_name, keys) for keys in parts]
            for future in futures:  # every partition ends before the run (and its lease) does
                future.wait()
            return [future.result() for future in futures]

        run_partitions(session, threads, apply_all)
    report = session.report
    publish_run(report)
    logger.info("run %s of %s on %s: %s", report.run_id, destination, cluster, report.status)
    return {"destination": destination, "status": report.status, **report.run_counts()}


def dask_task_runner(spec: ClusterSpec) -> Any:
    """prefect-dask's ``DaskTaskRunner`` for ``spec``: a LocalCluster of one-thread worker
    processes for ``local:N``, the running scheduler's address for ``tcp://``."""
    try:
        from prefect_dask import DaskTaskRunner
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"a flow on a cluster needs prefect-dask, which is not installed ({exc.name}); "
            "install the extra that brings it: pip install 'syncer[dask]'"
        ) from None
    if spec.address is not None:
        return DaskTaskRunner(address=spec.address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": spec.workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
            "scheduler_kwargs": {"dashboard_address": "127.0.0.1:0"},
            "silence_logs": logging.ERROR,
        },
    )


def cluster_threads(spec: ClusterSpec) -> int:
    """Worker threads of ``spec``'s cluster: partitions that write at once (and so the share
    of the rate limit each takes)."""
    if spec.address is None:
        return spec.workers
    from distributed import Client

    with Client(spec.address, timeout="10s") as client:
        return max(sum(client.nthreads().values()), 1)
