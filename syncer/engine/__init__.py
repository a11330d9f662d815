"""The engine: store → resolve → map → format → plan → apply → record, one job per module.

* :mod:`~syncer.engine.sync` — :class:`Sync` (one ``syncer.yaml``: store, state, destinations,
  plan, run and its preflight);
* :mod:`~syncer.engine.planning` — read, resolve, format and diff one object in one pass;
* :mod:`~syncer.engine.coordinator` — a plan or run cut into key-range partitions, handed out
  and merged; :mod:`~syncer.engine.partitions` — a partition planned and written where it runs;
  :mod:`~syncer.engine.cluster` — on Dask distributed (the ``[dask]`` extra, imported only by a
  plan or run on a cluster);
* :mod:`~syncer.engine.run` — :class:`RunSession`, a run step by step, recording what the
  destination acknowledged;
* :mod:`~syncer.engine.pipeline` — the one write loop every destination write goes through;
  :mod:`~syncer.engine.operations` — the writes a connector offers, as operations of that loop;
* :mod:`~syncer.engine.associations` — association differences planned in the records' pass;
* :mod:`~syncer.engine.reports` — what a plan or a run came to.

See ``docs/architecture.md`` for the layers and the write pipeline on one page.
"""

from syncer.engine.coordinator import ClusterSpec, partition_job, run_partitions
from syncer.engine.partitions import PartitionJob, PartitionResult, apply_partition
from syncer.engine.pipeline import NO_RESULT, ApplyStats
from syncer.engine.reports import (
    LinkStats,
    ObjectReport,
    PlanReport,
    RunReport,
    StageMove,
    stage_field,
)
from syncer.engine.run import LEASE_TTL, Progress, RunSession
from syncer.engine.sync import Destination, Sync

__all__ = [
    "LEASE_TTL",
    "NO_RESULT",
    "ApplyStats",
    "ClusterSpec",
    "Destination",
    "LinkStats",
    "ObjectReport",
    "PartitionJob",
    "PartitionResult",
    "PlanReport",
    "Progress",
    "RunReport",
    "RunSession",
    "StageMove",
    "Sync",
    "apply_partition",
    "partition_job",
    "run_partitions",
    "stage_field",
]
