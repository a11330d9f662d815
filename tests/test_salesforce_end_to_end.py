"""examples/ → syncer run → the Salesforce emulator (HTTPS, self-signed certificate on
loopback) through the real simple-salesforce client."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from processes import free_port
from pydantic import SecretStr
from sqlalchemy import delete, update

from syncer.config import load_config
from syncer.connectors.salesforce import SalesforceConfig, SalesforceConnector
from syncer.db import create_db_engine
from syncer.engine import Sync
from syncer.errors import ConfigError, FatalError, RetriableError
from syncer.retry import RetryPolicy
from syncer.state import RecordState
from syncer.store.database import init_store
from syncer.store.loaders import load_paths
from syncer.store.schema import accounts, memberships, users
from syncer.testing.salesforce_emulator import SalesforceEmulator

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def org() -> Iterator[SalesforceEmulator]:
    with SalesforceEmulator() as emulator:
        emulator.allow_field_creation = True
        yield emulator


def _sync(
    tmp_path: Path, org: SalesforceEmulator, *, removal: str = "none", **settings: Any
) -> Sync:
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
        f"    removal: {removal}\n"
        f"    settings: {json.dumps(options)}\n",
        encoding="utf-8",
    )
    return Sync(
        load_config(config), environ={"SF_SESSION": org.session_id}, retry=RetryPolicy.no_wait()
    )


def _store_with_bulk_users(tmp_path: Path, count: int) -> None:
    """The examples plus ``count`` users of no account (b00000, b00001, ...)."""
    engine = init_store(f"sqlite:///{tmp_path / 'store.db'}")
    load_paths(engine, [ROOT / "examples"])
    with engine.begin() as conn:
        conn.execute(
            users.insert(),
            [{"user_id": f"b{i:05d}", "email": f"b{i}@bulk.example"} for i in range(count)],
        )
    engine.dispose()


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
        assert contacts["u01"]["Syncer_Account_Names__c"] == ";acmezscorp;zxyzzzssoftware;"
        assert contacts["u01"]["Syncer_Primary_Account_Name__c"] == "Acme Corp"
        assert contacts["u07"].get("Syncer_Primary_Account_Name__c") is None
        assert accounts["ACME"]["Syncer_Rollup_Licenses__c"] in (170, "170", 170.0)
        org.reset_log()
        again = sync.run("salesforce", full=True)  # every record compared again (--full)
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


def test_without_the_right_to_grant_field_access_the_run_refuses_and_writes_nothing(
    tmp_path: Path, org: SalesforceEmulator
) -> None:
    """Fields created through the Tooling API are hidden until field-level security grants
    them; an integration user that may not grant it gets a preflight refusal naming what an
    admin must grant — before any record is written."""
    org.manage_permissions = False
    with _sync(tmp_path, org) as sync:
        with pytest.raises(ConfigError) as caught:
            sync.run("salesforce")
        text = str(caught.value)
        assert "permission set Syncer_Integration" in text
        assert "Account.Syncer_Account_Id__c" in text
    assert org.records("Account") == {}
    assert org.records("Contact") == {}


def test_the_bulk_path_above_the_threshold(tmp_path: Path, org: SalesforceEmulator) -> None:
    _store_with_bulk_users(tmp_path, 5000)
    with _sync(tmp_path, org, bulk_threshold=1000) as sync:
        report = sync.run("salesforce")
        assert report.status == "succeeded"
        contacts = _by_key(org, "Contact", "Syncer_User_Id__c")
        assert len(contacts) == 5014
        assert any("/jobs/ingest" in e.path for e in org.requests())
        assert RecordState(sync.state).count("salesforce", "Contact") == 5014
        org.reset_log()
        assert sync.run("salesforce", full=True).totals()["unchanged"] == 5025
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


def _change_store(sync: Sync, **values: Any) -> None:
    engine = create_db_engine(str(sync.config.store))
    with engine.begin() as conn:
        conn.execute(update(users).values(**values))
    engine.dispose()


def test_a_record_deleted_in_salesforce_is_created_again_with_its_whole_payload(
    tmp_path: Path, org: SalesforceEmulator
) -> None:
    org.org.deleted_blocks_upsert = False  # deleted and emptied from the recycle bin
    with _sync(tmp_path, org) as sync:
        sync.run("salesforce")
        ada = _by_key(org, "Contact", "Syncer_User_Id__c")["u01"]
        org.delete("Contact", ada["Id"])
        _change_store(sync, first_name="Changed")  # the upsert carries FirstName only
        report = sync.run("salesforce")
        assert report.status == "succeeded", report.objects
        again = _by_key(org, "Contact", "Syncer_User_Id__c")["u01"]
        assert again["Id"] != ada["Id"]
        assert (again["FirstName"], again["LastName"], again["Email"]) == (
            "Changed",
            ada["LastName"],
            ada["Email"],
        )
        assert again["Syncer_Accounts__c"] == ada["Syncer_Accounts__c"]
        record = RecordState(sync.state).get_many("salesforce", "Contact", {"u01"})["u01"]
        assert record.remote_id == again["Id"]


def test_a_clear_removal_empties_syncer_fields_and_leaves_name_and_last_name(
    tmp_path: Path, org: SalesforceEmulator
) -> None:
    """Salesforce will not set Account.Name or Contact.LastName to null (REQUIRED_FIELD_MISSING):
    a clear leaves them with their last value and empties everything else syncer wrote."""
    with _sync(tmp_path, org, removal="clear") as sync:
        sync.run("salesforce")
        engine = create_db_engine(str(sync.config.store))
        with engine.begin() as conn:  # the product's own job deletes them with plain SQL
            conn.execute(delete(memberships).where(memberships.c.account_id == "HOOLI"))
            conn.execute(delete(accounts).where(accounts.c.account_id == "HOOLI"))
            conn.execute(delete(users).where(users.c.user_id == "u07"))
        engine.dispose()
        org.reset_log()
        report = sync.run("salesforce")
        assert report.status == "succeeded", [o.errors for o in report.objects]
        assert {o.object: o.counts.remove for o in report.objects} == {"Account": 1, "Contact": 1}
        hooli = _by_key(org, "Account", "Syncer_Account_Id__c")["HOOLI"]
        dennis = _by_key(org, "Contact", "Syncer_User_Id__c")["u07"]
    assert hooli["Name"] == "Hooli"
    assert hooli.get("Website") is None
    assert hooli.get("Syncer_Stage__c") is None
    assert hooli.get("Syncer_User_Emails__c") is None
    assert dennis["LastName"] == "Ritchie"
    assert (dennis.get("FirstName"), dennis.get("Email"), dennis.get("Syncer_Stage__c")) == (
        None,
        None,
        None,
    )
    sent = [r for e in _writes(org) if isinstance(e.body, dict) for r in e.body.get("records", [])]
    assert not any("Name" in r or "LastName" in r for r in sent), sent


def test_a_record_in_the_recycle_bin_is_rejected_with_what_to_do(
    tmp_path: Path, org: SalesforceEmulator
) -> None:
    with _sync(tmp_path, org) as sync:
        sync.run("salesforce")
        ada = _by_key(org, "Contact", "Syncer_User_Id__c")["u01"]
        org.delete("Contact", ada["Id"])
        _change_store(sync, first_name="Changed")
        report = sync.run("salesforce")
    contacts = next(o for o in report.objects if o.object == "Contact")
    assert (contacts.sent, contacts.refused) == (13, 1)
    [(key, reason)] = contacts.errors
    assert key == "u01"
    assert "ENTITY_IS_DELETED" in reason
    assert "recycle bin: undelete it" in reason


def test_a_duplicate_external_id_rejects_that_record_alone(
    tmp_path: Path, org: SalesforceEmulator
) -> None:
    with _sync(tmp_path, org) as sync:
        sync.run("salesforce")
        org.insert("Account", Name="Acme (copy)", Syncer_Account_Id__c="ACME")
        engine = create_db_engine(str(sync.config.store))
        with engine.begin() as conn:
            conn.execute(update(accounts).values(domain="new.example"))
        engine.dispose()
        report = sync.run("salesforce")
    account = next(o for o in report.objects if o.object == "Account")
    assert (account.sent, account.refused) == (10, 1)
    [(key, reason)] = account.errors
    assert key == "ACME"
    assert "DUPLICATE_EXTERNAL_ID" in reason


def test_request_limit_exceeded_mid_run_stops_and_the_next_run_resumes(
    tmp_path: Path, org: SalesforceEmulator
) -> None:
    def another_integration_spends_the_rest(obj: str, _stats: Any) -> None:
        if obj == "Account":
            org.api_usage = org.daily_api_limit

    with _sync(tmp_path, org, daily_limit_share=1.0) as sync:
        with pytest.raises(FatalError, match="REQUEST_LIMIT_EXCEEDED"):
            sync.run("salesforce", progress=another_integration_spends_the_rest)
        assert RecordState(sync.state).count("salesforce", "Account") == 11
        assert RecordState(sync.state).count("salesforce", "Contact") == 0
        org.api_usage = 0  # the next day
        org.reset_log()
        assert sync.run("salesforce").status == "succeeded"
        assert sum(e.records for e in org.requests() if "composite/sobjects" in e.path) == 14


@pytest.mark.parametrize("max_batch", [3, 4])
def test_a_crash_after_batch_k_resumes_with_the_rest_and_no_duplicates(
    tmp_path: Path, org: SalesforceEmulator, max_batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from syncer.connectors.salesforce import SalesforceConnector

    caps = dataclasses.replace(SalesforceConnector.capabilities, max_batch=max_batch)
    monkeypatch.setattr(SalesforceConnector, "capabilities", caps)
    batches = 0

    def crash_after_two_contact_batches(obj: str, _stats: Any) -> None:
        nonlocal batches
        if obj == "Contact":
            batches += 1
            if batches == 2:  # called once per committed batch
                raise KeyboardInterrupt  # the process dies right after batch 2 was committed

    with _sync(tmp_path, org) as sync:
        with pytest.raises(KeyboardInterrupt):
            sync.run("salesforce", progress=crash_after_two_contact_batches)
        recorded = RecordState(sync.state).count("salesforce", "Contact")
        assert recorded == 2 * max_batch
        org.reset_log()
        assert sync.run("salesforce").status == "succeeded"
        sent = sum(e.records for e in org.requests() if "composite/sobjects/Contact" in e.path)
        assert sent == 14 - recorded
    keys = [r.get("Syncer_User_Id__c") for r in org.records("Contact").values()]
    assert sorted(keys) == sorted(set(keys))
    assert len(keys) == 14


def test_the_bulk_path_maps_failed_results_back_to_their_records(
    tmp_path: Path, org: SalesforceEmulator
) -> None:
    _store_with_bulk_users(tmp_path, 30)
    # Two Contacts already hold b00017's external id: Salesforce refuses that row of the job.
    org.add_field(
        "Contact.Syncer_User_Id__c", type="Text", length=255, label="User Id", externalId=True,
        unique=True,
    )  # fmt: skip
    for _ in range(2):
        org.insert("Contact", LastName="Copy", Syncer_User_Id__c="b00017")
    with _sync(tmp_path, org, bulk_threshold=20) as sync:
        report = sync.run("salesforce")
    contacts = next(o for o in report.objects if o.object == "Contact")
    bulk_calls = [e for e in org.requests() if "/jobs/ingest" in e.path]
    # Every HTTP call of the job counts (create, upload, close, polls, two result reads).
    assert len(bulk_calls) >= 6
    assert contacts.requests == len(bulk_calls)
    assert (contacts.sent, contacts.refused) == (43, 1)
    [(key, reason)] = contacts.errors
    assert key == "b00017"
    assert "DUPLICATE_EXTERNAL_ID" in reason
    assert len(_by_key(org, "Contact", "Syncer_User_Id__c")) == 14 + 30


def test_an_existing_field_of_the_wrong_type_or_length_is_reported(
    tmp_path: Path, org: SalesforceEmulator
) -> None:
    org.add_field("Contact.Syncer_Accounts__c", type="Text", length=100, label="Accounts")
    org.add_field("Contact.Syncer_Account_Count__c", type="Text", length=10, label="Count")
    with _sync(tmp_path, org) as sync, pytest.raises(ConfigError) as caught:
        sync.run("salesforce")
    text = str(caught.value)
    # The heading says what is wrong: these fields exist, they are not missing.
    assert "missing fields:" not in text
    assert "is missing" not in text
    assert "field problem(s) to fix before syncing" in text
    assert "Contact.Syncer_Accounts__c holds 100 characters, syncer formats up to 255" in text
    assert "Contact.Syncer_Account_Count__c is of type 'string', syncer writes number" in text


def test_a_long_text_companion_holds_the_full_list(tmp_path: Path, org: SalesforceEmulator) -> None:
    mapping = (ROOT / "mappings" / "salesforce.yaml").read_text(encoding="utf-8")
    assert "# Syncer_Accounts_Full__c:" in mapping  # shipped commented out: optional
    mapping = mapping.replace("# Syncer_Accounts_Full__c:", "Syncer_Accounts_Full__c:")
    (tmp_path / "full.yaml").write_text(mapping, encoding="utf-8")
    sync = _sync(tmp_path, org)
    config = tmp_path / "syncer.yaml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            str(ROOT / "mappings" / "salesforce.yaml"), str(tmp_path / "full.yaml")
        ),
        encoding="utf-8",
    )
    engine = create_db_engine(str(sync.config.store))
    with engine.begin() as conn:
        conn.execute(
            accounts.insert(),
            [{"account_id": f"ACCOUNT-{i:03d}", "name": f"Account {i}"} for i in range(40)],
        )
        conn.execute(
            memberships.insert(),
            [
                {"user_id": "u01", "account_id": f"ACCOUNT-{i:03d}", "stage": "MQL"}
                for i in range(40)
            ],
        )
    engine.dispose()
    with Sync(load_config(config), environ={"SF_SESSION": org.session_id}) as full:
        assert full.run("salesforce").status == "succeeded"
    field = org.org.object("Contact").get_field("Syncer_Accounts_Full__c")
    assert field is not None
    assert (field.type, field.length) == ("textarea", 131_072)
    ada = _by_key(org, "Contact", "Syncer_User_Id__c")["u01"]
    assert len(ada["Syncer_Accounts__c"]) <= 255
    assert ada["Syncer_Accounts_Truncated__c"] is True
    assert ada["Syncer_Accounts_Full__c"].count(";") == 42 + 1  # every token, ; on both sides
    assert ada["Syncer_Accounts_Full__c"].startswith(ada["Syncer_Accounts__c"][:-1])


def test_bulk_jobs_take_bulk_batch_records_each(tmp_path: Path, org: SalesforceEmulator) -> None:
    _store_with_bulk_users(tmp_path, 30)
    with _sync(tmp_path, org, bulk_threshold=20, bulk_batch=15) as sync:
        assert sync.run("salesforce").status == "succeeded"
    jobs = [e for e in org.requests(method="POST") if e.path.endswith("/jobs/ingest/")]
    assert len(jobs) == 3  # 44 contacts in jobs of at most 15
    assert len(_by_key(org, "Contact", "Syncer_User_Id__c")) == 44


# --- check() and signing in: clean errors, never a traceback -------------------------------------


def _session_connector(url: str, session_id: str, org: SalesforceEmulator) -> SalesforceConnector:
    settings = {"instance_url": url, "verify": str(org.cert_path), "timeout": 5}
    return SalesforceConnector(SalesforceConfig(session_id=SecretStr(session_id), **settings))


def test_check_reads_the_limits_once_and_writes_nothing(org: SalesforceEmulator) -> None:
    _session_connector(org.url, org.session_id, org).check()
    [request] = org.requests()
    assert (request.method, request.path) == ("GET", "/services/data/v59.0/limits/")


def test_check_with_a_refused_session_says_what_to_fix(org: SalesforceEmulator) -> None:
    with pytest.raises(ConfigError) as caught:
        _session_connector(org.url, "expired-session", org).check()
    text = str(caught.value)
    assert "salesforce GET limits: HTTP 401, authentication failed" in text
    assert "INVALID_SESSION_ID" in text


def test_check_against_an_unreachable_org_is_a_clean_retriable_error(
    org: SalesforceEmulator,
) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    with pytest.raises(RetriableError, match="salesforce GET limits: connection failed"):
        _session_connector(url, org.session_id, org).check()


def test_an_untrusted_certificate_is_a_config_error_naming_what_to_check(
    org: SalesforceEmulator,
) -> None:
    config = SalesforceConfig(
        instance_url=org.url, session_id=SecretStr(org.session_id), verify=True, timeout=5
    )  # the emulator's self-signed certificate is in no system bundle
    with pytest.raises(ConfigError, match=r"TLS connection failed.*certificate bundle"):
        SalesforceConnector(config).check()


SOAP_LOGIN = "https://login.salesforce.com/services/Soap/u/59.0"
TOKEN_URL = "https://login.salesforce.com/services/oauth2/token"
INVALID_LOGIN = (
    '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
    'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:sf="urn:fault.partner.soap.sforce.com" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault>'
    "<faultcode>INVALID_LOGIN</faultcode><faultstring>INVALID_LOGIN: Invalid username, password, "
    "security token; or user locked out.</faultstring><detail><sf:LoginFault "
    'xsi:type="sf:LoginFault"><sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>'
    "<sf:exceptionMessage>Invalid username, password, security token; or user locked out."
    "</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault></soapenv:Body>"
    "</soapenv:Envelope>"
)


def _password_login() -> SalesforceConfig:
    return SalesforceConfig(
        username="sync@example.com", password=SecretStr("pw"), security_token=SecretStr("tok")
    )


def _jwt_login(key_file: Path) -> SalesforceConfig:
    return SalesforceConfig(
        username="sync@example.com", consumer_key="3MVG9-key", jwt_key_file=key_file
    )


@responses.activate
def test_a_refused_password_login_names_the_host_and_what_to_check() -> None:
    responses.add(responses.POST, SOAP_LOGIN, body=INVALID_LOGIN, status=500)
    with pytest.raises(ConfigError) as caught:
        SalesforceConnector(_password_login())
    text = str(caught.value)
    assert "salesforce login at https://login.salesforce.com refused: INVALID_LOGIN" in text
    assert "security_token" in text
    assert "'test' for a sandbox" in text


@responses.activate
def test_a_login_without_network_is_a_clean_retriable_error() -> None:
    responses.add(
        responses.POST, SOAP_LOGIN, body=requests.ConnectionError("Name or service not known")
    )
    with pytest.raises(RetriableError) as caught:
        SalesforceConnector(_password_login())
    text = str(caught.value)
    assert "salesforce login at https://login.salesforce.com: connection failed" in text
    assert "Check the network" in text


@responses.activate
def test_a_login_server_outage_is_retriable() -> None:
    responses.add(responses.POST, SOAP_LOGIN, body="Service Unavailable", status=503)
    with pytest.raises(RetriableError, match="HTTP 503, Salesforce is not answering logins"):
        SalesforceConnector(_password_login())


def private_key_file(folder: Path) -> Path:
    """A fresh RSA private key (PEM) for the JWT bearer login, in ``folder``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = folder / "server.key"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pem


@responses.activate
def test_a_refused_jwt_login_says_to_check_the_connected_app(tmp_path: Path) -> None:
    pem = private_key_file(tmp_path)
    refused = {"error": "invalid_grant", "error_description": "invalid assertion"}
    responses.add(responses.POST, TOKEN_URL, json=refused, status=400)
    with pytest.raises(ConfigError) as caught:
        SalesforceConnector(_jwt_login(pem))
    text = str(caught.value)
    assert "refused: invalid_grant: invalid assertion" in text
    assert "jwt_key_file matches the certificate uploaded to the connected app" in text


def test_a_missing_or_invalid_jwt_key_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"jwt_key_file .*missing\.key cannot be read"):
        SalesforceConnector(_jwt_login(tmp_path / "missing.key"))
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not a usable RSA private key"):
        SalesforceConnector(_jwt_login(garbage))
