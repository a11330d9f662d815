"""Fixtures: a Pipedrive emulator per test, and a :class:`syncer.engine.Sync` of syncer's example
dataset into it through the default mapping (``mappings/pipedrive.yaml``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

# pytest puts this directory on sys.path (no __init__.py): the emulator module sits here.
from pipedrive_emulator import PipedriveEmulator

from syncer.config import load_config
from syncer.engine import Sync
from syncer.retry import RetryPolicy
from syncer.store.database import init_store
from syncer.store.loaders import load_paths

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "pd-test-token"


@pytest.fixture
def pipedrive() -> Iterator[PipedriveEmulator]:
    with PipedriveEmulator(api_token=TOKEN) as emulator:
        yield emulator


def write_config(directory: Path, url: str, extra: str = "") -> Path:
    """A syncer.yaml for destination ``pipedrive`` at ``url``, over a SQLite store loaded with
    the example dataset (examples/) in ``directory``."""
    store = f"sqlite:///{directory / 'store.db'}"
    engine = init_store(store)
    load_paths(engine, [ROOT / "examples"])
    engine.dispose()
    path = directory / "syncer.yaml"
    path.write_text(
        f"store: {store}\n"
        "destinations:\n"
        "  pipedrive:\n"
        "    connector: pipedrive\n"
        f"    mapping: {ROOT / 'mappings' / 'pipedrive.yaml'}\n"
        "    credentials: {api_token: env:PD_TOKEN}\n"
        f"    settings: {{base_url: {json.dumps(url)}, timeout: 5}}\n" + extra,
        encoding="utf-8",
    )
    return path


@pytest.fixture
def sync(tmp_path: Path, pipedrive: PipedriveEmulator) -> Iterator[Sync]:
    config = load_config(write_config(tmp_path, pipedrive.url))
    with Sync(config, environ={"PD_TOKEN": TOKEN}, retry=RetryPolicy.no_wait(12)) as s:
        yield s
