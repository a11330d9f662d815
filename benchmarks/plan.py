"""Plan throughput: resolve → map → format → hash → diff for a synthetic store.

    python benchmarks/plan.py --users 100000 [--runs 3] [--steady] [--cluster local:2 [--compare]]

Generates the store once (cached under benchmarks/.data/), then times ``Sync.plan`` for the
default HubSpot mapping (companies and contacts) in a fresh process per run, reporting wall time,
records/s and peak RSS; the median of ``--runs`` is printed last. ``--steady`` first records the
plan as applied (every record in the sync state), so the runs measure the steady state where
the plan compares hashes and finds nothing to send — the common case on a schedule.
``--cluster local:2`` plans on Dask workers (a LocalCluster started and closed inside each timed
run, as ``syncer plan --cluster local:2`` does); ``--compare`` alternates runs in one process
with runs on the cluster and prints both medians and their ratio, measured under the same load.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(__file__).resolve().parent / ".data"


def _config(db: Path) -> Path:
    path = db.with_suffix(".yaml")
    path.write_text(
        f"store: sqlite:///{db}\n"
        "destinations:\n"
        "  crm:\n"
        "    connector: memory\n"
        f"    mapping: {ROOT / 'mappings' / 'hubspot.yaml'}\n",
        encoding="utf-8",
    )
    return path


def measure(config: Path, cluster: str | None = None) -> dict[str, float]:
    """One plan in this process (or on ``cluster``): seconds, records planned, peak RSS in MB —
    on ``local:N``, this process's plus N times the largest child's (an upper bound of the
    machine's memory the plan held at once)."""
    from syncer.config import load_config
    from syncer.engine import Sync

    started = time.perf_counter()
    with Sync(load_config(config)) as sync:
        report = sync.plan("crm", samples=0, cluster=cluster, full=True)
    elapsed = time.perf_counter() - started
    records = sum(report.totals().values())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    rss_mb = usage.ru_maxrss / 1024
    cpu = usage.ru_utime + usage.ru_stime  # steadier than wall time on a shared machine
    if cluster is not None and cluster.startswith("local:"):
        workers = int(cluster.removeprefix("local:"))
        rss_mb += workers * resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"seconds": elapsed, "cpu": cpu, "records": records, "rss_mb": rss_mb, **report.totals()}


def record_as_applied(config: Path) -> None:
    """Commit the current plan to the sync state as if the destination had acknowledged it."""
    from syncer.config import load_config
    from syncer.engine import Sync
    from syncer.state import Ack, RecordState

    with Sync(load_config(config)) as sync:
        dest = sync.destination("crm")
        records = RecordState(sync.state)
        for obj in dest.mapping.objects:
            batch: list[Ack] = []
            for change in sync.changes(dest, obj):
                if change.action in ("create", "update"):
                    batch.append(Ack(change.key, change.payload, f"r{change.key}", change.digest))
                if len(batch) >= 5000:
                    records.commit_acknowledged("crm", obj.name, batch, "bench")
                    batch = []
            records.commit_acknowledged("crm", obj.name, batch, "bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steady", action="store_true")
    parser.add_argument("--cluster", help="plan on Dask workers: local:N or tcp://HOST:PORT")
    parser.add_argument(
        "--compare", action="store_true", help="alternate runs in one process and on --cluster"
    )
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.cluster)))
        return
    if args.compare and not args.cluster:
        parser.error("--compare needs --cluster")
    from benchmarks.generate import populate

    DATA.mkdir(exist_ok=True)
    db = DATA / f"plan-{args.users}{'-steady' if args.steady else ''}.db"
    if not db.exists():
        t0 = time.perf_counter()
        counts = populate(f"sqlite:///{db}", args.users)
        print(f"generated {counts} in {time.perf_counter() - t0:.0f} s", flush=True)
        if args.steady:
            t0 = time.perf_counter()
            record_as_applied(_config(db))
            print(f"recorded the plan as applied in {time.perf_counter() - t0:.0f} s", flush=True)
    config = _config(db)
    setups = [None, args.cluster] if args.compare else [args.cluster]
    results: dict[str | None, list[dict[str, float]]] = {c: [] for c in setups}
    for i in range(args.runs):
        for cluster in setups:  # alternated: the same load for both
            command = [sys.executable, __file__, "--measure", str(config)]
            out = subprocess.run(
                command + (["--cluster", cluster] if cluster else []),
                check=True,
                capture_output=True,
                text=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results[cluster].append(r)
            print(
                f"run {i + 1} ({cluster or 'one process'}): {r['seconds']:.1f} s "
                f"(CPU {r['cpu']:.1f} s of this process), "
                f"{r['records'] / r['seconds']:,.0f} records/s, "
                f"{args.users / r['seconds']:,.0f} users/s, peak RSS {r['rss_mb']:.0f} MB "
                f"(create {r['create']}, unchanged {r['unchanged']})",
                flush=True,
            )
    medians = {}
    for cluster, runs in results.items():
        med = medians[cluster] = statistics.median(r["seconds"] for r in runs)
        rss = statistics.median(r["rss_mb"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        print(
            f"median of {len(runs)} ({cluster or 'one process'}): {med:.1f} s (CPU {cpu:.1f} s "
            f"of the coordinating process) for {args.users:,} users "
            f"({args.users / med:,.0f} users/s), peak RSS {rss:.0f} MB"
        )
    if args.compare:
        print(f"{args.cluster} / one process: {medians[args.cluster] / medians[None]:.2f}")


if __name__ == "__main__":
    main()
