"""Where a full plan's CPU goes, step by step, for each object of the default HubSpot mapping.

    python benchmarks/plan_steps.py --users 100000

Uses the store ``benchmarks/plan.py`` generates (run that first). For each object: CPU seconds
to read the store (records built), to resolve (the policies, reading excluded), to evaluate and
format the fields, to hash the payloads, and the whole ``changes()`` pass (all of it plus the
diff). One process, nothing written.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import plan_store_config  # noqa: E402  # once the checkout is on the path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args()
    config = plan_store_config(args.users)

    from syncer.config import load_config
    from syncer.engine import Sync
    from syncer.engine.planning import changes, views
    from syncer.state.hashing import payload_hash
    from syncer.store.readers import iter_accounts, iter_users

    cpu = time.process_time
    with Sync(load_config(config)) as sync:
        dest = sync.destination("crm")
        sync.hierarchy  # noqa: B018  # loaded once, before any step is timed
        for obj in dest.mapping.objects:
            reader = iter_users if obj.source == "users" else iter_accounts
            t = cpu()
            n = sum(1 for _ in reader(sync.store))
            read = cpu() - t
            t = cpu()
            resolved = list(views(sync, obj.source))
            resolve = cpu() - t - read
            t = cpu()
            formatted = [obj.format(v) for v in resolved]
            fmt = cpu() - t
            t = cpu()
            for f in formatted:
                payload_hash(f.payload)
            digest = cpu() - t
            del resolved, formatted
            t = cpu()
            for _ in changes(sync, dest, obj):
                pass
            whole = cpu() - t
            print(
                f"{obj.name} ({n:,}): read {read:.2f} s, resolve {resolve:.2f} s, format "
                f"{fmt:.2f} s, hash {digest:.2f} s; whole pass {whole:.2f} s "
                f"({1e6 * whole / n:.0f} µs each)",
                flush=True,
            )


if __name__ == "__main__":
    main()
