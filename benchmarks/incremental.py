"""Incremental runs: what a run costs when little or nothing changed.

    python benchmarks/incremental.py --users 100000 [--runs 3] [--full-runs 1]

Generates the store once (cached under benchmarks/.data/), then, each measurement in a fresh
process (the whole command's cost: imports, engines, the feed), against the in-memory
destination (``connector: memory``, its content kept in a file between the processes; note that
its ``associate`` looks up every record it holds per call, so a full run's associations cost it
time that a real destination would not: ``plan_s`` is the engine's own figure):

* ``full`` — the first run of a copy of the store with no sync state (``--runs`` copies);
* ``none`` — a run with no change in the store;
* ``users1`` — 1% of the users changed (their first name, plain SQL: the companies of the
  HubSpot mapping show their members' emails, not their names), then a run;
* ``users1email`` — 1% of the users changed their email (which their companies show), then a
  run;
* ``accounts1`` — 1% of the accounts changed (their name: shown by their members' contacts),
  then a run.

With ``--plan-cluster local:2``, each phase's plan is also timed on a Dask cluster started
and closed inside the timing (``cluster_plan_s``), before the run; ``command_s`` leaves it out
(``cpu_s`` holds this process's share of it, not the workers').

Each prints wall seconds (plan and run), CPU seconds, peak RSS, the store rows read (``read``:
the tables' rows, the forest's rows among the accounts, the feed's rows apart), the closure (the
users and accounts the run resolves: ``closure_users``, ``closure_accounts``), ``per_key`` (the
tables' rows read per closure key) and the write requests; the medians of ``--runs`` are
printed last. Each change picks other rows than the one before.
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(__file__).resolve().parent / ".data"


def _config(db: Path, *, links: bool = True) -> Path:
    path = db.with_suffix(".yaml")
    mapping = ROOT / "mappings" / "hubspot.yaml"
    if not links:  # the same mapping without the contact → company associations
        text = mapping.read_text(encoding="utf-8")
        mapping = db.with_suffix(".mapping.yaml")
        mapping.write_text(
            "".join(line for line in text.splitlines(True) if "associations:" not in line),
            encoding="utf-8",
        )
    path.write_text(
        f"store: sqlite:///{db}\n"
        "destinations:\n"
        "  crm:\n"
        "    connector: memory\n"
        f"    mapping: {mapping}\n"
        "    removal: clear\n",
        encoding="utf-8",
    )
    return path


def measure(config: Path, cluster: str | None = None) -> dict[str, object]:
    """One plan, then one run, in this process; the memory destination's content is kept in
    a file beside the config between processes (not timed). With ``cluster``, the plan is timed
    once more on it (``cluster_plan_s``: a Dask cluster started and closed inside, as
    ``syncer plan --cluster`` does), before the run."""
    from syncer.config import load_config
    from syncer.engine import Sync
    from syncer.testing.memory import MemoryConnector, MemoryStore

    held = config.with_suffix(".dest.pickle")
    loaded: list[float] = []  # wall seconds loading and saving the destination's content
    spent: list[float] = []  # and CPU seconds

    class Held(MemoryStore):
        """The destination's content, loaded from ``held`` when the connector first looks at
        it (a run that writes nothing never does): its load is not the run's cost."""

        def __getattr__(self, name: str) -> object:
            if name not in ("records", "associations", "next_id"):
                raise AttributeError(name)
            started, cpu = time.perf_counter(), time.process_time()
            content = pickle.loads(held.read_bytes()) if held.exists() else ({}, set(), 1)
            self.records, self.associations, self.next_id = content
            loaded.append(time.perf_counter() - started)
            spent.append(time.process_time() - cpu)
            return getattr(self, name)

    dest = Held.__new__(Held)
    dest.lock = threading.Lock()
    t0 = time.perf_counter()
    with Sync(load_config(config)) as sync:
        plan = sync.plan("crm", samples=0)
        t1 = time.perf_counter()
        on_cluster = None
        if cluster is not None:
            sync.plan("crm", samples=0, cluster=cluster)
            on_cluster = time.perf_counter() - t1
        t1b = time.perf_counter()
        report = sync.run("crm", connector=MemoryConnector(store=dest))
    t2 = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    if loaded:  # the destination was written: keep its content for the next process
        started, cpu = time.perf_counter(), time.process_time()
        held.write_bytes(pickle.dumps((dest.records, dest.associations, dest.next_id)))
        loaded.append(time.perf_counter() - started)
        spent.append(time.process_time() - cpu)
    return {
        "mode": report.mode,
        "plan_s": round(t1 - t0, 3),
        "cluster_plan_s": None if on_cluster is None else round(on_cluster, 3),
        "run_s": round(t2 - t1b - sum(loaded[:1]), 3),
        "harness_s": round(sum(loaded), 3),  # loading and saving the destination's content
        "cpu_s": round(usage.ru_utime + usage.ru_stime - sum(spent[:1]), 3),  # the load
        # With the destination's content once it was loaded (a run that wrote something).
        "rss_mb": round(usage.ru_maxrss / 1024, 1),
        "read": plan.read,
        "sent": report.run_counts()["sent"],
        "requests": report.run_counts()["requests"]
        + (report.links.requests if report.links is not None else 0),
        "status": report.status,
        "links_failed": report.links.failed if report.links is not None else 0,
    }


def change(db: Path, table: str, key: str, column: str, *, share: float, tag: str) -> int:
    """Change ``share`` of the rows of ``table`` (plain SQL, as the product would)."""
    import sqlite3

    conn = sqlite3.connect(db)
    keys = [r[0] for r in conn.execute(f"SELECT {key} FROM {table}")]
    picked = random.Random(tag).sample(keys, max(1, int(len(keys) * share)))
    suffix = "@changed.example" if column == "email" else ""  # a valid address
    conn.executemany(
        f"UPDATE {table} SET {column} = ? WHERE {key} = ?",
        [(f"{tag}-{k}{suffix}".lower(), k) for k in picked],
    )
    conn.commit()
    conn.close()
    return len(picked)


TIMED = ("plan_s", "cluster_plan_s")

#: The change phases: the table, key and column each changes in 1% of its rows.
CHANGES = {
    "users1": ("users", "user_id", "first_name"),
    "accounts1": ("accounts", "account_id", "name"),
    "users1email": ("users", "user_id", "email"),
}


def _run(config: Path, cluster: str | None = None) -> dict[str, Any]:
    wall = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--measure", str(config)]
        + (["--plan-cluster", cluster] if cluster else []),
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    # The command's own cost: neither the harness nor the extra plan on a cluster.
    wall = time.perf_counter() - wall - float(result["harness_s"])
    wall -= float(result["cluster_plan_s"] or 0)
    result["command_s"] = round(wall, 3)
    read = result["read"]
    keys = read.get("closure_users", 0) + read.get("closure_accounts", 0)
    rows = read["users"] + read["accounts"] + read["memberships"]
    result["per_key"] = round(rows / keys, 2) if keys else None
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--full-runs", type=int, help="first full runs to time (default: --runs; they are long)"
    )
    parser.add_argument(
        "--no-links",
        action="store_true",
        help="a mapping without associations (the memory destination's associate is slow at 1M)",
    )
    parser.add_argument(
        "--skip-full", action="store_true", help="go on from the last invocation's full run"
    )
    parser.add_argument(
        "--phases",
        default="none,users1,accounts1,users1email",
        help="the phases after the full runs, in order (default: all of them)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="picks other rows and values: needed to go on from a work store whose phases "
        "already ran (--skip-full), where the same seed writes the values it wrote before",
    )
    parser.add_argument(
        "--plan-cluster",
        help="also time each phase's plan on this cluster (local:N or tcp://HOST:PORT)",
    )
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.plan_cluster)))
        return
    chosen = args.phases.split(",")
    unknown = set(chosen) - {"none", *CHANGES}
    if unknown:
        parser.error(f"unknown phases {sorted(unknown)}: choose from none, {', '.join(CHANGES)}")
    from benchmarks.generate import populate

    DATA.mkdir(exist_ok=True)
    pristine = DATA / f"incremental-{args.users}.db"
    if not pristine.exists():
        t0 = time.perf_counter()
        counts = populate(f"sqlite:///{pristine}", args.users)
        print(f"generated {counts} in {time.perf_counter() - t0:.0f} s", flush=True)
    from syncer.store.database import init_store

    init_store(f"sqlite:///{pristine}").dispose()  # a store cached by an older syncer: upgraded
    work = DATA / f"incremental-{args.users}-work.db"
    phases: dict[str, list[dict[str, Any]]] = {}
    for _ in range(0 if args.skip_full else args.full_runs or args.runs):
        shutil.copyfile(pristine, work)
        work.with_suffix(".dest.pickle").unlink(missing_ok=True)
        phases.setdefault("full", []).append(_run(_config(work, links=not args.no_links)))
        print("full", phases["full"][-1], flush=True)
    config = _config(work, links=not args.no_links)
    for _ in range(args.runs if "none" in chosen else 0):
        phases.setdefault("none", []).append(_run(config, args.plan_cluster))
        print("none", phases["none"][-1], flush=True)
    for name in (p for p in chosen if p != "none"):
        table, key, column = CHANGES[name]
        for i in range(args.runs):
            tag = f"{name}{i}" if not args.seed else f"{name}{args.seed}-{i}"
            n = change(work, table, key, column, share=0.01, tag=tag)
            result = _run(config, args.plan_cluster)
            result["changed"] = n
            phases.setdefault(name, []).append(result)
            print(name, result, flush=True)
    print("medians:")
    for name, results in phases.items():
        med = {
            k: statistics.median(float(r[k]) for r in results)
            for k in (*TIMED, "run_s", "command_s", "cpu_s", "rss_mb", "requests")
            if results[0].get(k) is not None
        }
        ratios = [float(r["per_key"]) for r in results if r.get("per_key") is not None]
        if ratios:
            med["per_key"] = statistics.median(ratios)
        reads = {t: statistics.median(r["read"][t] for r in results) for t in results[0]["read"]}
        print(name, json.dumps({**med, "read": reads}), flush=True)


if __name__ == "__main__":
    main()
