"""Plan throughput: resolve → map → format → hash → diff for a synthetic store.

    python benchmarks/plan.py --users 100000 [--runs 3] [--steady] [--cluster local:2 [--compare]]
        [--syncer DIR]

Generates the store once (cached under benchmarks/.data/), then times ``Sync.plan`` for the
default HubSpot mapping (companies and contacts) in a fresh process per run, reporting wall time,
records/s and peak RSS; the median of ``--runs`` is printed last. ``--steady`` first records the
plan as applied (every record in the sync state), so the runs measure the steady state where
the plan compares hashes and finds nothing to send — the common case on a schedule.
``--cluster local:2`` plans on Dask workers (a LocalCluster started and closed inside each timed
run, as ``syncer plan --cluster local:2`` does); ``--compare`` alternates runs in one process
with runs on the cluster and prints both medians and their ratio, measured under the same load.

Peak RSS is what this process and every process it started (the cluster's workers) held at
once: their RSS summed, sampled every 0.2 s (so a peak shorter than that may be missed; pages
shared between processes count in each). ``--syncer DIR`` times the syncer of another checkout
(e.g. main, for a before/after on the same data with the same measure).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def peak_rss(every: float = 0.2) -> Iterator[dict[str, float]]:
    """The peak RSS in MB of this process and its descendants at once (``all``), sampled every
    ``every`` seconds, with this process's own peak (``self``) and each other's (``others``,
    largest first); without psutil (it comes with Dask), this process's ``ru_maxrss`` only."""
    out: dict[str, float] = {}
    try:
        import psutil
    except ImportError:
        yield out
        out["all"] = out["self"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return
    me = psutil.Process()
    peaks: dict[int, int] = {}
    top = [0]
    stop = threading.Event()

    def sample() -> None:
        while True:
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    rss = proc.memory_info().rss
                except psutil.Error:  # ended meanwhile
                    continue
                total += rss
                peaks[proc.pid] = max(peaks.get(proc.pid, 0), rss)
            top[0] = max(top[0], total)
            if stop.wait(every):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield out
    finally:
        stop.set()
        sampler.join()
        mb = 1024 * 1024
        out["all"] = top[0] / mb
        out["self"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        others = sorted((v for pid, v in peaks.items() if pid != me.pid), reverse=True)
        out["others"] = [round(v / mb) for v in others]  # type: ignore[assignment]


def measure(config: Path, cluster: str | None = None) -> dict[str, object]:
    """One plan in this process (or on ``cluster``): seconds, records planned, peak RSS in MB
    of every process that planned, at once (:func:`peak_rss`)."""
    from syncer.config import load_config
    from syncer.engine import Sync

    with peak_rss() as rss:
        started = time.perf_counter()
        with Sync(load_config(config)) as sync:
            report = sync.plan("crm", samples=0, cluster=cluster, full=True)
        elapsed = time.perf_counter() - started
    records = sum(report.totals().values())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime  # steadier than wall time on a shared machine
    return {
        "seconds": elapsed,
        "cpu": cpu,
        "records": records,
        "rss_mb": rss["all"],
        "rss_self_mb": rss["self"],
        "rss_others_mb": rss.get("others", []),
        **report.totals(),
    }


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
    parser.add_argument("--syncer", type=Path, help="time the syncer of this checkout instead")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.syncer:
        sys.path.insert(0, str(args.syncer.resolve()))
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
            command += ["--syncer", str(args.syncer)] if args.syncer else []
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
                f"at once (this process {r['rss_self_mb']:.0f} MB, others "
                f"{r['rss_others_mb'] or 'none'}) (create {r['create']}, "
                f"unchanged {r['unchanged']})",
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
