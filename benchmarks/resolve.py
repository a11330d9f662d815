"""Resolve throughput: users streamed from the store through the stage and primary policies.

    python benchmarks/resolve.py --users 1000000 [--runs 3] [--steady]

Reuses (or generates) the synthetic store of benchmarks/plan.py, then in a fresh process per run
streams every user with their memberships and marks through the resolver (no mapping, no
formatting), reporting memberships/s, users/s and peak RSS; medians last.

``--steady`` measures a scheduled run's case instead of a first run's: a copy of the store whose
sync state already holds every mark (saved by one untimed resolve), so every user's marks are
read and merged and nothing changes.

Each run also times a fixed pure-Python loop (``calibration``, ms) in the same process just
before it: shared machines differ and drift by 2-3x in single-core speed, and this figure says
how fast the core was when the run was measured.
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(__file__).resolve().parent / ".data"


def calibrate() -> float:
    """Milliseconds for a fixed interpreter workload (best of 3): the core's speed right now."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        table: dict[int, int] = {}
        for i in range(1_000_000):
            table[i & 1023] = i
        best = min(best, time.perf_counter() - started)
    return best * 1000


def measure(url: str) -> dict[str, float]:
    from syncer.db import create_db_engine
    from syncer.policies import PolicySettings
    from syncer.policies.hierarchy import Hierarchy
    from syncer.policies.resolve import Resolver
    from syncer.state import init_state
    from syncer.state.marks import MarkStore
    from syncer.store.keys import RowsRead
    from syncer.store.readers import iter_all_accounts, iter_users

    calibration = calibrate()
    store = create_db_engine(url)
    state = init_state(store)
    started = time.perf_counter()
    hierarchy = Hierarchy.from_accounts(iter_all_accounts(store))
    resolver = Resolver(PolicySettings(), hierarchy)
    users, read = 0, RowsRead()
    stream = iter_users(store, read=read)
    for _view, _changed in resolver.resolve_users(stream, MarkStore(state).iter_marks()):
        users += 1
    elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "users": users,
        "memberships": read.memberships,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "calibration_ms": calibration,
    }


def prime_marks(url: str) -> int:
    """Resolve every user once and save the marks (what a first ``syncer run`` leaves)."""
    from syncer.db import create_db_engine
    from syncer.policies import PolicySettings
    from syncer.policies.hierarchy import Hierarchy
    from syncer.policies.resolve import Resolver
    from syncer.state import init_state
    from syncer.state.marks import MarkStore
    from syncer.store.readers import iter_all_accounts, iter_users

    store = create_db_engine(url)
    marks = MarkStore(init_state(store))
    resolver = Resolver(PolicySettings(), Hierarchy.from_accounts(iter_all_accounts(store)))
    changed = (m for _v, c in resolver.resolve_users(iter_users(store), iter(())) for m in c)
    saved = marks.save(changed, batch_size=5000)
    store.dispose()  # closing checkpoints the WAL into the file before it is renamed
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steady", action="store_true", help="every mark already saved")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    from benchmarks.generate import populate

    DATA.mkdir(exist_ok=True)
    db = DATA / f"plan-{args.users}.db"
    if not db.exists():
        populate(f"sqlite:///{db}", args.users)
    if args.steady:
        primed = DATA / f"plan-{args.users}-marks.db"
        if not primed.exists():
            partial = primed.with_suffix(".partial")
            # SQLite's backup API, not a file copy: it takes what the WAL holds too.
            src, dst = sqlite3.connect(db), sqlite3.connect(partial)
            try:
                src.backup(dst)
            finally:
                src.close()
                dst.close()
            print(f"saved {prime_marks(f'sqlite:///{partial}'):,} marks", flush=True)
            partial.rename(primed)
        db = primed
    results = []
    for i in range(args.runs):
        out = subprocess.run(
            [sys.executable, __file__, "--measure", f"sqlite:///{db}"],
            check=True,
            capture_output=True,
            text=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(r)
        print(
            f"run {i + 1}: {r['seconds']:.1f} s, {r['memberships'] / r['seconds']:,.0f} "
            f"memberships/s, {r['users'] / r['seconds']:,.0f} users/s, "
            f"peak RSS {r['rss_mb']:.0f} MB (calibration {r['calibration_ms']:.0f} ms)",
            flush=True,
        )
    med = statistics.median(r["seconds"] for r in results)
    r0 = results[0]
    print(
        f"median of {len(results)}: {med:.1f} s; {r0['memberships'] / med:,.0f} memberships/s, "
        f"{r0['users'] / med:,.0f} users/s, peak RSS "
        f"{statistics.median(r['rss_mb'] for r in results):.0f} MB; calibration "
        f"{statistics.median(r['calibration_ms'] for r in results):.0f} ms"
    )


if __name__ == "__main__":
    main()
