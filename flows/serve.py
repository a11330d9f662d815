"""The Prefect deployments of ``syncer.yaml``: one per destination that has a ``schedule``.

    python -m flows.serve --config examples/syncer.yaml              # serve them, one process
    python -m flows.serve --config examples/syncer.yaml --pool syncer  # register them with a
                                                                      # work pool's workers

Each destination with a ``schedule`` (cron and time zone) in the config becomes a deployment
``syncer-sync/sync-<destination>`` with a concurrency limit of 1, so a slow run never overlaps
the next one. Only the destinations of the config get one: a HubSpot-only config makes no
Salesforce deployment. Without ``--pool`` this process runs them (no workers needed); with it
they are registered with the work pool, whose process workers run the flow from this checkout
(its path must be the same on every worker machine) and read the config at its absolute path.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

try:
    from prefect import serve
    from prefect.schedules import Cron
except ModuleNotFoundError as missing:  # the core install has no Prefect: say which extra
    raise SystemExit(
        f"flows.serve needs Prefect ({missing.name} is not installed): "
        "pip install 'syncer[prefect]'"
    ) from None

from flows.sync import sync
from syncer.config import SyncConfig, load_config
from syncer.errors import SyncerError


def deployments(config_path: Path, config: SyncConfig | None = None) -> list[Any]:
    """The deployments of the config: one per destination with a schedule, none for others."""
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


def register(config_path: Path, pool: str) -> list[str]:
    """Register the config's deployments with work pool ``pool``; returns their names."""
    names = []
    for deployment in deployments(config_path):
        deployment.apply(work_pool_name=pool)
        names.append(f"{deployment.flow_name}/{deployment.name}")
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("syncer.yaml"))
    parser.add_argument(
        "--pool",
        metavar="NAME",
        help="register the deployments with this work pool instead of serving them",
    )
    args = parser.parse_args(argv)
    if not args.config.is_file():
        raise SystemExit(
            f"error: no configuration file at {args.config}. Pass --config FILE; "
            "examples/syncer.yaml is a commented example"
        )
    try:
        found = deployments(args.config)
    except SyncerError as exc:  # a bad config: the message says what and where, no traceback
        raise SystemExit(f"error: {exc}") from None
    if not found:
        raise SystemExit(
            f"no destination in {args.config} has a schedule; add "
            "`schedule: {cron: '15 * * * *', timezone: UTC}` to the ones to run"
        )
    if args.pool:
        for name in register(args.config, args.pool):
            print(f"deployment {name} registered with work pool {args.pool}")
        return
    serve(*found)


if __name__ == "__main__":
    main()
