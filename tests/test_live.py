"""The live check (issue 17): one small sync, a no-change re-run and a removal against a real
HubSpot test portal and a Salesforce sandbox — the emulators' answers confirmed in one command::

    SYNCER_LIVE_HUBSPOT_TOKEN=... pytest -m live tests/test_live.py

Runs only with the credentials in the environment (see docs/api-fidelity.md, "Live check");
otherwise each test skips with the reason — a skip CI accepts (only PostgreSQL skips fail CI).
Use a test portal and a sandbox: the examples' records (keys u01…, ACME…) are written there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from crm_configs import destination_yaml, examples_store
from sqlalchemy import delete

from syncer.config import load_config
from syncer.db import create_db_engine
from syncer.engine import Sync
from syncer.retry import RetryPolicy
from syncer.store.schema import memberships

pytestmark = pytest.mark.live

HUBSPOT = ("SYNCER_LIVE_HUBSPOT_TOKEN",)
SALESFORCE_PASSWORD = (
    "SYNCER_LIVE_SF_USERNAME",
    "SYNCER_LIVE_SF_PASSWORD",
    "SYNCER_LIVE_SF_SECURITY_TOKEN",
)
SALESFORCE_JWT = (
    "SYNCER_LIVE_SF_USERNAME",
    "SYNCER_LIVE_SF_CONSUMER_KEY",
    "SYNCER_LIVE_SF_JWT_KEY",
)


def _have(names: tuple[str, ...]) -> bool:
    return all(os.environ.get(n) for n in names)


def _destination(name: str) -> tuple[str, dict[str, str], dict[str, object]]:
    """(connector, credentials from env, settings) for ``name`` — or skip with the reason."""
    env = os.environ
    if name == "hubspot":
        if not _have(HUBSPOT):
            pytest.skip("live HubSpot check: set SYNCER_LIVE_HUBSPOT_TOKEN (a test portal)")
        host = (
            {"host": env["SYNCER_LIVE_HUBSPOT_HOST"]} if env.get("SYNCER_LIVE_HUBSPOT_HOST") else {}
        )
        return "hubspot", {"access_token": "env:SYNCER_LIVE_HUBSPOT_TOKEN"}, host
    settings: dict[str, object] = {
        "domain": env.get("SYNCER_LIVE_SF_DOMAIN", "test"),
        "allow_create_fields": True,
    }
    if _have(SALESFORCE_JWT):
        credentials = {
            "username": "env:SYNCER_LIVE_SF_USERNAME",
            "consumer_key": "env:SYNCER_LIVE_SF_CONSUMER_KEY",
            "jwt_key_file": "env:SYNCER_LIVE_SF_JWT_KEY",
        }
    elif _have(SALESFORCE_PASSWORD):
        credentials = {
            "username": "env:SYNCER_LIVE_SF_USERNAME",
            "password": "env:SYNCER_LIVE_SF_PASSWORD",
            "security_token": "env:SYNCER_LIVE_SF_SECURITY_TOKEN",
        }
    else:
        pytest.skip(
            "live Salesforce check: set SYNCER_LIVE_SF_USERNAME with SYNCER_LIVE_SF_PASSWORD and "
            "SYNCER_LIVE_SF_SECURITY_TOKEN, or with SYNCER_LIVE_SF_CONSUMER_KEY and "
            "SYNCER_LIVE_SF_JWT_KEY (a sandbox; SYNCER_LIVE_SF_DOMAIN defaults to 'test')"
        )
    return "salesforce", credentials, settings


@pytest.fixture(params=["hubspot", "salesforce"])
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Sync]]:
    name = str(request.param)
    connector, credentials, settings = _destination(name)
    store = examples_store(tmp_path)
    config = destination_yaml(tmp_path, store, connector, json.dumps(credentials), settings)
    with Sync(load_config(config), environ=dict(os.environ), retry=RetryPolicy()) as sync:
        yield name, sync


def test_a_small_sync_a_no_change_rerun_and_a_removal(live: tuple[str, Sync]) -> None:
    name, sync = live
    first = sync.run(name)
    assert first.status == "succeeded", first.message
    again = sync.run(name)
    assert again.status == "succeeded", again.message
    assert sum(v for k, v in again.totals().items() if k != "unchanged") == 0, again.totals()
    engine = create_db_engine(str(sync.config.store))
    with engine.begin() as conn:
        conn.execute(delete(memberships).where(memberships.c.user_id == "u01"))
    engine.dispose()
    removal = sync.run(name)
    assert removal.status == "succeeded", removal.message
    assert sum(v for k, v in removal.totals().items() if k != "unchanged") >= 1
