"""Preflight: a run that cannot succeed writes nothing — not to the CRM, not to the state.

Before any destination write (``ensure`` creates CRM fields), :meth:`Sync.start_run` checks the
config and mapping, the credentials (present, then accepted by one cheap authenticated read:
``connector.check()``), the account hierarchy and that the state can be written. A run stopped
there is recorded as ``failed`` and leaves no records and no marks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from crm_configs import destination_yaml, examples_store
from sqlalchemy import func, select

from syncer.config import load_config
from syncer.engine import Sync
from syncer.errors import ConfigError
from syncer.retry import RetryPolicy
from syncer.state import RecordState, RunLog, current_lease, init_state
from syncer.state.schema import policy_marks
from syncer.testing.hubspot_emulator import HubSpotEmulator
from syncer.testing.memory import MemoryConfig, MemoryConnector

ROOT = Path(__file__).resolve().parents[1]


def _nothing_written(sync: Sync, destination: str) -> None:
    assert RecordState(sync.state).count(destination) == 0
    with sync.state.connect() as conn:
        assert conn.execute(select(func.count()).select_from(policy_marks)).scalar_one() == 0
    [run] = RunLog(sync.state).last_runs(destination, limit=5)
    assert run.status == "failed"
    assert current_lease(sync.state, destination) is None


def test_refused_credentials_stop_the_run_before_any_write(
    memory_sync: Callable[..., Sync],
) -> None:
    connector = MemoryConnector(MemoryConfig(refuse_credentials=True))
    with memory_sync() as sync:
        with pytest.raises(ConfigError, match="refused the credentials"):
            sync.run("crm", connector=connector)
        _nothing_written(sync, "crm")
    assert connector.checks == 1
    assert (connector.ensured, connector.calls) == ([], [])  # no ensure, no write


def test_missing_credentials_stop_the_run_before_the_run_starts(tmp_path: Path) -> None:
    store = examples_store(tmp_path, load=False)
    credentials = "{access_token: env:NOT_SET_ANYWHERE}"
    config = destination_yaml(tmp_path, store, "hubspot", credentials, {})
    with Sync(load_config(config), environ={}) as sync:
        with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE"):
            sync.run("hubspot")
        assert RunLog(sync.state).last_runs("hubspot", limit=5) == []


def test_a_wrong_hubspot_token_is_a_config_error_and_nothing_is_written(tmp_path: Path) -> None:
    store = examples_store(tmp_path)
    with HubSpotEmulator(access_token="the-right-token") as hubspot:
        settings = {"host": hubspot.url, "timeout": 5}
        credentials = "{access_token: env:HS_TOKEN}"
        config = destination_yaml(tmp_path, store, "hubspot", credentials, settings)
        environ = {"HS_TOKEN": "a-wrong-token"}
        retry = RetryPolicy.no_wait()
        with Sync(load_config(config), environ=environ, retry=retry) as sync:
            with pytest.raises(ConfigError):
                sync.run("hubspot")
            _nothing_written(sync, "hubspot")
        assert hubspot.write_requests() == []  # no property, group or record written


def test_a_state_that_cannot_be_written_stops_the_run_before_any_write(tmp_path: Path) -> None:
    url = examples_store(tmp_path)
    state = tmp_path / "state.db"
    init_state(f"sqlite:///{state}").dispose()
    config = tmp_path / "syncer.yaml"
    config.write_text(
        f"store: {url}\n"
        f"state: 'sqlite:///file:{state}?mode=ro&uri=true'\n"
        "destinations:\n"
        "  crm:\n"
        "    connector: memory\n"
        f"    mapping: {ROOT / 'mappings' / 'hubspot.yaml'}\n",
        encoding="utf-8",
    )
    connector = MemoryConnector()
    with Sync(load_config(config)) as sync, pytest.raises(ConfigError, match="cannot be written"):
        sync.run("crm", connector=connector)
    assert connector.checks == 0
    assert (connector.ensured, connector.calls) == ([], [])
