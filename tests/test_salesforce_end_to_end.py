"""examples/ → syncer run → the Salesforce emulator (HTTPS, self-signed certificate on
loopback) through the real simple-salesforce client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from syncer.config import load_config
from syncer.db import create_db_engine
from syncer.engine import Sync
from syncer.errors import ConfigError, FatalError
from syncer.retry import RetryPolicy
from syncer.state import RecordState
from syncer.store.database import init_store
from syncer.store.loaders import load_paths
from syncer.store.schema import memberships, users
from syncer.testing.salesforce_emulator import SalesforceEmulator

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def org() -> Iterator[SalesforceEmulator]:
    with SalesforceEmulator() as emulator:
        emulator.allow_field_creation = True
        yield emulator


def _sync(tmp_path: Path, org: SalesforceEmulator, **settings: Any) -> Sync:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    if not (tmp_path / "store.db").exists():
        engine = init_store(url)
        load_paths(engine, [ROOT / "examples"])
        engine.dispose()
    options = {
        "instance_url": org.url,
        "verify": str(org.cert_path),
        "allow_create_fields": True,
        "bulk_poll_seconds": 0.05,
        **settings,
    }
    config = tmp_path / "syncer.yaml"
    config.write_text(
        f"store: {url}\n"
        "destinations:\n"
        "  salesforce:\n"
        "    connector: salesforce\n"
        f"    mapping: {ROOT / 'mappings' / 'salesforce.yaml'}\n"
        "    credentials: {session_id: env:SF_SESSION}\n"
        f"    settings: {json.dumps(options)}\n",
        encoding="utf-8",
    )
    return Sync(
        load_config(config), environ={"SF_SESSION": org.session_id}, retry=RetryPolicy.no_wait()
    )


def _by_key(org: SalesforceEmulator, type_name: str, key: str) -> dict[str, dict[str, Any]]:
    return {r[key]: r for r in org.records(type_name).values() if r.get(key)}


def _writes(org: SalesforceEmulator) -> list[Any]:
    return [e for e in org.requests() if e.method in ("PATCH", "POST", "PUT", "DELETE")]


def test_examples_land_and_a_rerun_writes_nothing(tmp_path: Path, org: SalesforceEmulator) -> None:
    with _sync(tmp_path, org) as sync:
        report = sync.run("salesforce")
        assert report.status == "succeeded", [o.errors for o in report.objects]
        accounts = _by_key(org, "Account", "Syncer_Account_Id__c")
        contacts = _by_key(org, "Contact", "Syncer_User_Id__c")
        assert len(accounts) == 11
        assert len(contacts) == 14
        # One AccountId per contact: the primary account, set by external-id reference.
        assert contacts["u02"]["AccountId"] == accounts["ACME-US"]["Id"]
        assert contacts["u07"].get("AccountId") is None  # no account at all
        assert contacts["u01"]["Syncer_Stage__c"] == "CUS"
        assert contacts["u01"]["Syncer_Accounts__c"] == ";acmexcus;zxyzzxmql;"
        assert accounts["ACME"]["Syncer_Rollup_Licenses__c"] in (170, "170", 170.0)
        org.reset_log()
        again = sync.run("salesforce")
        assert again.totals()["unchanged"] == 25
        assert _writes(org) == []


def test_token_fields_fit_255_characters_and_count_the_rest(
    tmp_path: Path, org: SalesforceEmulator
) -> None:
    engine = init_store(f"sqlite:///{tmp_path / 'store.db'}")
    load_paths(engine, [ROOT / "examples"])
    with engine.begin() as conn:
        conn.execute(
            memberships.insert(),
            [
                {"user_id": "u01", "account_id": a, "stage": "MQL"}
                for a in ("ACME-EU", "ACME-US", "ACME-EU-RD", "GLOBEX", "HOOLI", "UMBRELLA")
            ],
        )
        conn.execute(
            users.insert(),
            [{"user_id": f"x{i:03d}", "email": f"x{i}@acme.example"} for i in range(60)],
        )
        conn.execute(
            memberships.insert(),
            [{"user_id": f"x{i:03d}", "account_id": "ACME", "stage": "MAL"} for i in range(60)],
        )
    engine.dispose()
    with _sync(tmp_path, org) as sync:
        sync.run("salesforce")
    acme = _by_key(org, "Account", "Syncer_Account_Id__c")["ACME"]
    assert len(acme["Syncer_User_Emails__c"]) <= 255
    assert acme["Syncer_User_Emails_Truncated__c"] in (True, "true")
    assert int(float(acme["Syncer_User_Emails_Count__c"])) == 62
    # Whole tokens only, best stages first: the CUS users are kept, MAL ones dropped.
    assert acme["Syncer_User_Emails__c"].startswith(";adazaacmezdezxample;")
    assert acme["Syncer_User_Emails__c"].endswith(";")


def test_a_duplicate_or_invalid_record_is_rejected_alone(
    tmp_path: Path, org: SalesforceEmulator
) -> None:
    sync = _sync(tmp_path, org)
    engine = create_db_engine(str(sync.config.store))
    with engine.begin() as conn:
        conn.execute(update(users).where(users.c.user_id == "u03").values(last_name="L" * 300))
    engine.dispose()
    with sync:
        report = sync.run("salesforce")
    contacts = next(o for o in report.objects if o.object == "Contact")
    assert report.status == "partial"
    assert contacts.sent == 13
    [(key, reason)] = contacts.errors
    assert key == "u03"
    assert "LastName" in reason or "80" in reason


def test_the_daily_budget_share_stops_the_run(tmp_path: Path, org: SalesforceEmulator) -> None:
    org.api_usage = 14_000  # of 15,000: over the 90% share
    with _sync(tmp_path, org) as sync, pytest.raises(FatalError, match="daily API requests"):
        sync.run("salesforce")


def test_missing_fields_are_listed_for_an_admin_when_creation_is_off(
    tmp_path: Path, org: SalesforceEmulator
) -> None:
    with _sync(tmp_path, org, allow_create_fields=False) as sync:
        with pytest.raises(ConfigError) as caught:
            sync.run("salesforce")
        text = str(caught.value)
        assert "add Account.Syncer_Account_Id__c: Text(255), External ID, Unique" in text
        assert "Contact.Syncer_Accounts__c" in text


def test_the_bulk_path_above_the_threshold(tmp_path: Path, org: SalesforceEmulator) -> None:
    engine = init_store(f"sqlite:///{tmp_path / 'store.db'}")
    load_paths(engine, [ROOT / "examples"])
    with engine.begin() as conn:
        conn.execute(
            users.insert(),
            [{"user_id": f"b{i:05d}", "email": f"b{i}@bulk.example"} for i in range(5000)],
        )
    engine.dispose()
    with _sync(tmp_path, org, bulk_threshold=1000) as sync:
        report = sync.run("salesforce")
        assert report.status == "succeeded"
        contacts = _by_key(org, "Contact", "Syncer_User_Id__c")
        assert len(contacts) == 5014
        assert any("/jobs/ingest" in e.path for e in org.requests())
        assert RecordState(sync.state).count("salesforce", "Contact") == 5014
        org.reset_log()
        assert sync.run("salesforce").totals()["unchanged"] == 5025
        assert _writes(org) == []


def test_a_crash_mid_run_resumes_without_duplicates(
    tmp_path: Path, org: SalesforceEmulator
) -> None:
    from syncer.errors import RetriesExhausted

    # Accounts go through; every Contact upsert fails until the "outage" ends.
    org.inject("server_error", path="composite/sobjects/Contact", status=503)
    with _sync(tmp_path, org) as sync:
        with pytest.raises(RetriesExhausted):
            sync.run("salesforce")
        assert RecordState(sync.state).count("salesforce", "Account") == 11
        assert RecordState(sync.state).count("salesforce", "Contact") == 0
        org.clear_faults()
        org.reset_log()
        report = sync.run("salesforce")
        assert report.status == "succeeded"
        sent = sum(e.records for e in org.requests() if "composite/sobjects" in e.path)
        assert sent == 14  # only the contacts
    for type_name, key in (("Account", "Syncer_Account_Id__c"), ("Contact", "Syncer_User_Id__c")):
        keys = [r.get(key) for r in org.records(type_name).values()]
        assert len(keys) == len(set(keys))


def test_a_locked_row_is_retried(tmp_path: Path, org: SalesforceEmulator) -> None:
    org.inject("lock_row", times=1, path="composite/sobjects/Account")
    with _sync(tmp_path, org) as sync:
        report = sync.run("salesforce")
    assert report.status == "succeeded"
    assert sum(o.retries for o in report.objects) >= 1
    assert len(_by_key(org, "Account", "Syncer_Account_Id__c")) == 11
