"""syncer.yaml files for runs against the emulators, shared by the preflight and result-contract
tests: the examples/ store (plus bulk users), a HubSpot or a Salesforce destination."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from syncer.store.database import init_store
from syncer.store.loaders import load_paths
from syncer.store.schema import users

ROOT = Path(__file__).resolve().parents[1]


def examples_store(tmp_path: Path, *, extra_users: int = 0, load: bool = True) -> str:
    """A SQLite store of examples/ (``load=False``: empty) plus ``extra_users`` users."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = init_store(url)
    if load:
        load_paths(engine, [ROOT / "examples"])
    if extra_users:
        rows = [{"user_id": f"b{i:04d}", "email": f"b{i}@bulk.example"} for i in range(extra_users)]
        with engine.begin() as conn:
            conn.execute(users.insert(), rows)
    engine.dispose()
    return url


def destination_yaml(
    tmp_path: Path, store: str, connector: str, credentials: str, settings: dict[str, Any]
) -> Path:
    """``tmp_path / "syncer.yaml"`` with one destination named as its connector, on the
    connector's shipped mapping; ``credentials`` is the YAML flow mapping of its credentials."""
    config = tmp_path / "syncer.yaml"
    config.write_text(
        f"store: {store}\n"
        "destinations:\n"
        f"  {connector}:\n"
        f"    connector: {connector}\n"
        f"    mapping: {ROOT / 'mappings' / f'{connector}.yaml'}\n"
        f"    credentials: {credentials}\n"
        + (f"    settings: {json.dumps(settings)}\n" if settings else ""),
        encoding="utf-8",
    )
    return config
