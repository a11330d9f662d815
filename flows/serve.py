"""Serve the sync flow on the schedules of ``syncer.yaml``: one long-lived process, no workers.

    python -m flows.serve --config syncer.yaml

Each destination with a ``schedule`` (cron and time zone) becomes a deployment
``syncer-sync/sync-<destination>`` with a concurrency limit of 1, so a slow run never overlaps
the next one. For many machines use work pools and ``prefect deploy`` (prefect.yaml) instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from prefect import serve
from prefect.schedules import Cron

from flows.sync import sync
from syncer.config import SyncConfig, load_config


def deployments(config_path: Path, config: SyncConfig | None = None) -> list[Any]:
    """The deployments to serve: one per scheduled destination of the config file."""
    config = config or load_config(config_path)
    out = []
    for name, dest in config.destinations.items():
        if dest.schedule is None:
            continue
        out.append(
            sync.to_deployment(
                name=f"sync-{name}",
                parameters={"config": str(config_path.resolve()), "destination": name},
                schedule=Cron(dest.schedule.cron, timezone=dest.schedule.timezone),
                concurrency_limit=1,
                tags=["syncer", name],
            )
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("syncer.yaml"))
    args = parser.parse_args(argv)
    found = deployments(args.config)
    if not found:
        raise SystemExit(
            f"no destination in {args.config} has a schedule; add `schedule: {{cron: ...}}`"
        )
    serve(*found)


if __name__ == "__main__":
    main()
