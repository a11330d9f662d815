"""Load throughput: ``syncer load`` of synthetic CSV files into a fresh store.

    python benchmarks/load.py --users 100000 [--runs 3] [--store-url URL]

Writes accounts/users/memberships CSVs once (benchmarks/.data/), then runs ``syncer load`` in a
fresh process per run against an empty store, reporting wall time and the process's peak RSS;
the median of ``--runs`` is printed last. ``--store-url`` (e.g. a PostgreSQL database) replaces
the default fresh SQLite file; its tables are dropped and recreated before each run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(__file__).resolve().parent / ".data"

_CHILD = """
import resource, sys, time
from pathlib import Path
from syncer.store.database import init_store
from syncer.store.loaders import load_paths
engine = init_store(sys.argv[1])
t = time.perf_counter()
report = load_paths(engine, [Path(sys.argv[2])])
elapsed = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(elapsed, rss, report.total("inserted"))
"""


def _reset(url: str) -> None:
    from syncer.db import create_db_engine
    from syncer.store.schema import metadata

    engine = create_db_engine(url)
    metadata.drop_all(engine)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--store-url")
    args = parser.parse_args()
    from benchmarks.generate import write_csv

    csv_dir = DATA / f"csv-{args.users}"
    if not csv_dir.exists():
        write_csv(csv_dir, args.users)
    results = []
    for i in range(args.runs):
        if args.store_url:
            url = args.store_url
            _reset(url)
        else:
            db = DATA / "load.db"
            for p in DATA.glob("load.db*"):
                p.unlink()
            url = f"sqlite:///{db}"
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, url, str(csv_dir)],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        seconds, rss, inserted = out.stdout.split()
        results.append((float(seconds), float(rss)))
        print(
            f"run {i + 1}: {float(seconds):.1f} s, {int(inserted):,} records inserted, "
            f"peak RSS {float(rss):.0f} MB",
            flush=True,
        )
    med = statistics.median(r[0] for r in results)
    rss = statistics.median(r[1] for r in results)
    print(f"median of {len(results)}: {med:.1f} s, peak RSS {rss:.0f} MB ({args.users:,} users)")


if __name__ == "__main__":
    main()
