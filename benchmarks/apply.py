"""Apply against the HubSpot emulator: requests per run and throughput under a rate limit.

    python benchmarks/apply.py --users 10000 [--limit 100/1s]

Three runs on one synthetic store: the first (everything new), a rerun with no change, and a
rerun after 1% of memberships changed. For each: write requests, upsert requests and records per
upsert request. The emulator enforces ``--limit`` (HubSpot's 100 requests / 10 s, time-scaled
tenfold by default to 100 / 1 s); the first run's sustained request rate during apply is
reported as a share of that ceiling, with the 429s seen and whether every record landed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.generate import mutate, populate  # noqa: E402
from syncer.cli.emulate_cmds import parse_rate  # noqa: E402
from syncer.config import load_config  # noqa: E402
from syncer.engine import Sync  # noqa: E402
from syncer.testing.hubspot_emulator import HubSpotEmulator  # noqa: E402

TOKEN = "bench-token"


def _config(tmp: Path, url: str, host: str) -> Path:
    path = tmp / "syncer.yaml"
    path.write_text(
        f"store: {url}\n"
        "destinations:\n"
        "  hubspot:\n"
        "    connector: hubspot\n"
        f"    mapping: {ROOT / 'mappings' / 'hubspot.yaml'}\n"
        "    credentials: {access_token: env:BENCH_TOKEN}\n"
        f"    settings: {{host: {json.dumps(host)}}}\n",
        encoding="utf-8",
    )
    return path


def _run(config: Path, hubspot: HubSpotEmulator, label: str) -> dict[str, float]:
    hubspot.reset_log()
    started = time.perf_counter()
    with Sync(load_config(config), environ={"BENCH_TOKEN": TOKEN}) as sync:
        report = sync.run("hubspot")
    elapsed = time.perf_counter() - started
    writes = hubspot.write_requests()
    upserts = [e for e in writes if "/batch/upsert" in e.path and e.status in (200, 207)]
    records = sum(e.n_inputs or 0 for e in upserts)
    limited = len(hubspot.requests(status=429))
    out = {
        "seconds": elapsed,
        "write_requests": len(writes),
        "upsert_requests": len(upserts),
        "records": records,
        "per_upsert": records / len(upserts) if upserts else 0.0,
        "429s": limited,
        "status": report.status,
    }
    print(
        f"{label:22s} {elapsed:6.1f} s  write requests {len(writes):4d}  upserts "
        f"{len(upserts):4d}  records {records:6d}  records/upsert {out['per_upsert']:6.1f}  "
        f"429s {limited}  {report.status}",
        flush=True,
    )
    if upserts:
        # Sustained rate: every request (reads, writes, associations) from the first upsert on.
        t0 = min(e.time for e in upserts)
        window = [e for e in hubspot.requests() if e.time >= t0]
        span = max(e.time for e in window) - t0
        out["rate"] = (len(window) - 1) / span if span > 0 else 0.0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--limit", default="100/1s", help="REQUESTS/INTERVAL (default 100/1s)")
    args = parser.parse_args()
    max_requests, interval_ms = parse_rate(args.limit)
    ceiling = max_requests / (interval_ms / 1000)
    with (
        tempfile.TemporaryDirectory() as tmp_name,
        HubSpotEmulator(
            access_token=TOKEN, rate_limit_max=max_requests, rate_limit_interval_ms=interval_ms
        ) as hubspot,
    ):
        tmp = Path(tmp_name)
        url = f"sqlite:///{tmp / 'store.db'}"
        counts = populate(url, args.users)
        config = _config(tmp, url, hubspot.url)
        print(f"store: {counts}; limit {args.limit} (ceiling {ceiling:.0f} requests/s)")
        first = _run(config, hubspot, "first run")
        _run(config, hubspot, "rerun, no change")
        changed = mutate(url, 0.01)
        _run(config, hubspot, f"rerun, {changed} changed")
        contacts = sum(1 for p in hubspot.contacts().values() if p.get("syncer_user_id"))
        companies = sum(1 for p in hubspot.companies().values() if p.get("syncer_account_id"))
        lost = counts["users"] - contacts + counts["accounts"] - companies
        print(
            f"first run sustained {first.get('rate', 0):.1f} requests/s = "
            f"{first.get('rate', 0) / ceiling:.0%} of the ceiling; records lost: {lost}"
        )


if __name__ == "__main__":
    main()
