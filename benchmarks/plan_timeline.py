"""Where the wall time of a full plan on a cluster goes: when the workers start planning, how
long each partition takes (the first one carries what a worker did not do before it), and how
unevenly the workers end.

    python benchmarks/plan_timeline.py --users 1000000 [--cluster local:2] [--partitions]
    PYTHONPATH=DIR python benchmarks/plan_timeline.py --users 1000000 --syncer DIR

Uses the store ``benchmarks/plan.py`` generates (run that first). One plan, as ``syncer plan
--cluster`` makes it, with Dask's task stream recorded from the moment the job's plugin is
registered; times are seconds since this process started the plan. ``--syncer DIR`` times
another checkout (``PYTHONPATH=DIR`` too, so that the workers import it). The coordinating process's
CPU is printed too (it competes with the workers for the same cores).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import plan_store_config  # noqa: E402  # once the checkout is on the path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--cluster", default="local:2")
    parser.add_argument("--partitions", action="store_true", help="print every partition")
    parser.add_argument("--syncer", type=Path, help="time the syncer of this checkout instead")
    args = parser.parse_args()
    if args.syncer:
        sys.path.insert(0, str(args.syncer.resolve()))
    config = plan_store_config(args.users)

    from distributed import get_task_stream

    from syncer.config import load_config
    from syncer.engine import Sync
    from syncer.engine.cluster import DaskPool

    tasks: list[dict[str, Any]] = []
    registered = syncs = DaskPool.syncs

    @contextmanager
    def recorded(pool: DaskPool, job: Any) -> Iterator[str]:
        with get_task_stream(pool.client) as stream, registered(pool, job) as name:
            marks["registered"] = time.perf_counter() - start
            yield name
        tasks.extend(stream.data)

    marks: dict[str, float] = {}
    DaskPool.syncs = recorded  # type: ignore[method-assign,assignment]
    try:
        with Sync(load_config(config)) as sync:
            start = time.perf_counter()
            t0 = time.time()  # the task stream's clock
            sync.plan("crm", samples=0, cluster=args.cluster, full=True)
            wall = time.perf_counter() - start
    finally:
        DaskPool.syncs = syncs  # type: ignore[method-assign]
    usage = resource.getrusage(resource.RUSAGE_SELF)

    by_worker: dict[str, list[tuple[float, float, str]]] = {}
    for task in tasks:
        for span in task["startstops"]:
            if span["action"] == "compute":
                by_worker.setdefault(task["worker"], []).append(
                    (span["start"] - t0, span["stop"] - t0, task["key"])
                )
    print(
        f"plan of {args.users:,} users on {args.cluster}: {wall:.1f} s wall; job registered at "
        f"{marks['registered']:.2f} s; coordinating process CPU "
        f"{usage.ru_utime + usage.ru_stime:.1f} s (imports included)"
    )
    ends = []
    for worker, spans in sorted(by_worker.items()):
        spans.sort()
        durations = [b - a for a, b, _ in spans]
        ends.append(spans[-1][1])
        print(
            f"  {worker}: first partition {spans[0][0]:.2f}-{spans[0][1]:.2f} s "
            f"({durations[0]:.2f} s; the others' median {statistics.median(durations[1:]):.2f} s), "
            f"last ends {spans[-1][1]:.2f} s, busy {sum(durations):.1f} s in {len(spans)}"
        )
        if args.partitions:
            for a, b, key in spans:
                print(f"    {a:7.2f} {b:7.2f} {b - a:5.2f}  {key}")
    print(f"  the workers end {max(ends) - min(ends):.2f} s apart")


if __name__ == "__main__":
    main()
