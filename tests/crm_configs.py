"""syncer.yaml files for runs against the emulators, shared by the preflight, result-contract,
incremental and cluster tests: the examples/ store (plus bulk users), a HubSpot or a Salesforce
destination; and a store brought up from an older schema version (the upgrade tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from syncer.errors import ConfigError
from syncer.store.database import init_store, open_store
from syncer.store.loaders import load_paths
from syncer.store.schema import STORE_SCHEMA_VERSION, store_version, users

if TYPE_CHECKING:
    from syncer.testing.hubspot_emulator import HubSpotEmulator

ROOT = Path(__file__).resolve().parents[1]


def examples_store(tmp_path: Path, *, extra_users: int = 0, load: bool = True) -> str:
    """A SQLite store of examples/ (``load=False``: empty) plus ``extra_users`` users."""
    return load_examples(f"sqlite:///{tmp_path / 'store.db'}", extra_users=extra_users, load=load)


def load_examples(url: str, *, extra_users: int = 0, load: bool = True) -> str:
    """The store at ``url`` (SQLite or PostgreSQL) with examples/ loaded (``load=False``:
    empty) plus ``extra_users`` users; returns ``url``."""
    engine = init_store(url)
    if load:
        load_paths(engine, [ROOT / "examples"])
    if extra_users:
        rows = [{"user_id": f"b{i:04d}", "email": f"b{i}@bulk.example"} for i in range(extra_users)]
        with engine.begin() as conn:
            conn.execute(users.insert(), rows)
    engine.dispose()
    return url


def upgraded(url: str, found: int) -> Engine:
    """The store at ``url``, left at schema version ``found``: refused with the command that
    upgrades it, upgraded by ``syncer init``'s ``init_store``, and opened at this version."""
    refusal = rf"schema version {found}; .*run `syncer init --store .*` to"
    with pytest.raises(ConfigError, match=refusal):
        open_store(url)
    init_store(url).dispose()
    engine = open_store(url)
    with engine.connect() as conn:
        assert conn.execute(select(store_version.c.version)).scalar() == STORE_SCHEMA_VERSION
    return engine


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


def hubspot_config(
    path: Path, store: str, state: str, emulator: HubSpotEmulator, extra: str = ""
) -> Path:
    """``path``: one ``hubspot`` destination on the emulator, with its own state database, the
    shipped mapping and ``removal: clear``; ``extra``: more YAML lines for the destination."""
    path.write_text(
        f"store: {json.dumps(store)}\n"
        f"state: {json.dumps(state)}\n"
        "destinations:\n"
        "  hubspot:\n"
        "    connector: hubspot\n"
        f"    mapping: {ROOT / 'mappings' / 'hubspot.yaml'}\n"
        "    removal: clear\n"
        "    credentials: {access_token: env:HS_TOKEN}\n"
        f"    settings: {{host: {json.dumps(emulator.url)}, timeout: 5}}\n" + extra,
        encoding="utf-8",
    )
    return path
