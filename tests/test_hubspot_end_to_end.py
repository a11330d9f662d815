"""examples/ → syncer run → the HubSpot emulator, through the real hubspot-api-client."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from processes import free_port
from pydantic import SecretStr
from sqlalchemy import delete, update

from syncer.config import load_config
from syncer.connectors.hubspot import HubSpotConfig, HubSpotConnector
from syncer.db import create_db_engine
from syncer.engine import Sync
from syncer.errors import ConfigError, RetriableError, RetriesExhausted
from syncer.fields import FieldSpec, FieldType
from syncer.retry import RetryPolicy
from syncer.state import RecordState
from syncer.store.database import init_store
from syncer.store.loaders import load_paths
from syncer.store.schema import memberships, users
from syncer.testing.hubspot_emulator import HubSpotEmulator

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden" / "hubspot_plan.json"
TOKEN = "e2e-token"


@pytest.fixture
def hubspot() -> Iterator[HubSpotEmulator]:
    with HubSpotEmulator(access_token=TOKEN, seed=7) as emulator:
        yield emulator


@pytest.fixture
def sync(tmp_path: Path, hubspot: HubSpotEmulator) -> Iterator[Sync]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = init_store(url)
    load_paths(engine, [ROOT / "examples"])
    engine.dispose()
    config = tmp_path / "syncer.yaml"
    config.write_text(
        f"store: {url}\n"
        "destinations:\n"
        "  hubspot:\n"
        "    connector: hubspot\n"
        f"    mapping: {ROOT / 'mappings' / 'hubspot.yaml'}\n"
        "    credentials: {access_token: env:HS_TOKEN}\n"
        f"    settings: {{host: {json.dumps(hubspot.url)}, timeout: 5}}\n",
        encoding="utf-8",
    )
    with Sync(load_config(config), environ={"HS_TOKEN": TOKEN}, retry=RetryPolicy.no_wait(12)) as s:
        yield s


def _by_key(hubspot: HubSpotEmulator, object_type: str, key_field: str) -> dict[str, dict]:
    return {p[key_field]: p for p in hubspot.objects(object_type).values() if p.get(key_field)}


def _upserts(hubspot: HubSpotEmulator) -> list[int]:
    return [e.n_inputs or 0 for e in hubspot.requests(path_contains="/batch/upsert")]


def test_examples_land_field_by_field_and_a_rerun_writes_nothing(
    sync: Sync, hubspot: HubSpotEmulator
) -> None:
    report = sync.run("hubspot")
    assert report.status == "succeeded", report.objects
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    for object_type, key_field in (
        ("companies", "syncer_account_id"),
        ("contacts", "syncer_user_id"),
    ):
        held = _by_key(hubspot, object_type, key_field)
        assert held.keys() == golden[object_type].keys()
        for key, payload in golden[object_type].items():
            for name, value in payload.items():
                # HubSpot holds an empty string where syncer sends no value.
                assert held[key].get(name, "") == (value or ""), f"{object_type} {key} {name}"
    # Every contact is associated with each active account, the primary one labelled.
    contacts = _by_key(hubspot, "contacts", "syncer_user_id")
    companies = {p["syncer_account_id"]: cid for cid, p in hubspot.companies().items()}
    ada = next(cid for cid, p in hubspot.contacts().items() if p.get("syncer_user_id") == "u01")
    assert set(hubspot.associations(ada)) == {companies["ACME"], companies["XYZ"]}
    assert hubspot.primary_company(ada) == companies["ACME"]
    assert contacts["u07"]["syncer_account_count"] == "0"

    hubspot.reset_log()
    again = sync.run("hubspot", full=True)  # every record compared again (--full)
    assert again.status == "succeeded"
    assert hubspot.write_requests() == []
    assert again.totals()["unchanged"] == 25


def test_records_go_in_full_batches(sync: Sync, hubspot: HubSpotEmulator) -> None:
    engine = create_db_engine(str(sync.config.store))
    with engine.begin() as conn:
        conn.execute(
            users.insert(),
            [{"user_id": f"x{i:04d}", "email": f"x{i}@bulk.example"} for i in range(250)],
        )
    engine.dispose()
    sync.run("hubspot")
    sizes = _upserts(hubspot)
    assert sorted(sizes, reverse=True)[:2] == [100, 100]
    assert sum(sizes) == 11 + 14 + 250


def test_a_429_storm_delays_but_loses_nothing(sync: Sync, hubspot: HubSpotEmulator) -> None:
    # Time-scaled: a 200 ms window and no whole-second Retry-After, so each 429 costs the
    # engine the window's interval (what HubSpot's headers advertise), not seconds.
    hubspot.set_rate_limit(max_requests=190, interval_ms=200)
    hubspot.retry_after = False
    hubspot.inject_rate_limited(rate=0.6, path_prefix="/crm/v3/objects", count=12)
    report = sync.run("hubspot")
    assert report.status == "succeeded"
    assert sum(o.retries for o in report.objects) >= 1
    assert len(_by_key(hubspot, "contacts", "syncer_user_id")) == 14
    assert len(_by_key(hubspot, "companies", "syncer_account_id")) == 11


def test_an_invalid_email_rejects_that_contact_only(sync: Sync, hubspot: HubSpotEmulator) -> None:
    engine = create_db_engine(str(sync.config.store))
    with engine.begin() as conn:
        conn.execute(
            update(users).where(users.c.user_id == "u03").values(email="alan@xyz..example")
        )
    engine.dispose()
    report = sync.run("hubspot")
    contacts = next(o for o in report.objects if o.object == "contacts")
    assert report.status == "partial"
    # syncer's email check refuses it before HubSpot sees it: rejected, not refused.
    assert (contacts.sent, contacts.counts.rejected, contacts.refused) == (13, 1, 0)
    [(key, reason)] = contacts.errors
    assert key == "u03"
    assert "alan@xyz..example" in reason
    assert "u03" not in _by_key(hubspot, "contacts", "syncer_user_id")


def test_per_record_errors_in_a_207_reject_those_records_only(
    sync: Sync, hubspot: HubSpotEmulator
) -> None:
    hubspot.inject_partial_failure(
        path_prefix="/crm/v3/objects/contacts/batch/upsert", count=1, input_rate=0.3
    )
    report = sync.run("hubspot")
    contacts = next(o for o in report.objects if o.object == "contacts")
    failed = {key for key, _ in contacts.errors}
    assert contacts.refused == len(failed) >= 1
    assert contacts.counts.rejected == 0
    assert contacts.sent + contacts.refused == 14
    landed = set(_by_key(hubspot, "contacts", "syncer_user_id"))
    assert landed.isdisjoint(failed)
    assert len(landed) == 14 - len(failed)
    # The next run sends exactly the refused ones again.
    hubspot.reset_log()
    again = sync.run("hubspot")
    assert again.status == "succeeded"
    assert sum(_upserts(hubspot)) == len(failed)


def test_a_batch_failed_whole_is_bisected_and_converges(
    sync: Sync, hubspot: HubSpotEmulator
) -> None:
    """HubSpot's other documented answer: one bad input fails the whole request (400, nothing
    applied). The engine bisects; the run converges and a re-run writes nothing."""
    hubspot.batch_errors = "whole_batch"
    hubspot.inject_partial_failure(
        path_prefix="/crm/v3/objects/contacts/batch/upsert", count=2, input_rate=0.1
    )
    report = sync.run("hubspot")
    assert report.status == "succeeded", report.objects
    assert len(hubspot.requests(path_contains="contacts/batch/upsert", status=400)) == 2
    assert len(_by_key(hubspot, "contacts", "syncer_user_id")) == 14
    hubspot.reset_log()
    assert sync.run("hubspot", full=True).totals()["unchanged"] == 25
    assert hubspot.write_requests() == []


@pytest.mark.parametrize("max_batch", [3, 7])
def test_a_crash_after_batch_k_then_rerun_sends_only_the_rest(
    sync: Sync, hubspot: HubSpotEmulator, max_batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from syncer.connectors.hubspot import HubSpotConnector

    caps = dataclasses.replace(HubSpotConnector.capabilities, max_batch=max_batch)
    monkeypatch.setattr(HubSpotConnector, "capabilities", caps)
    # Two object requests are answered, then the destination stops answering.
    hubspot.fail_after(2, path_prefix="/crm/v3/objects/")
    with pytest.raises(RetriesExhausted):
        sync.run("hubspot")
    answered = hubspot.requests(path_contains="/batch/upsert", status=200)
    recorded = RecordState(sync.state).count("hubspot")
    assert recorded == sum(e.n_inputs or 0 for e in answered)
    assert 0 < recorded < 25
    hubspot.clear_faults()
    hubspot.reset_log()
    report = sync.run("hubspot")
    assert report.status == "succeeded"
    sent = [e.n_inputs or 0 for e in hubspot.requests(path_contains="/batch/upsert")]
    assert sum(sent) == 25 - recorded
    # No duplicates: one HubSpot record per product key.
    for object_type, key_field in (
        ("companies", "syncer_account_id"),
        ("contacts", "syncer_user_id"),
    ):
        keys = [p.get(key_field) for p in hubspot.objects(object_type).values()]
        assert len(keys) == len(set(keys))


def test_associations_follow_memberships_and_leave_hand_made_ones(
    sync: Sync, hubspot: HubSpotEmulator
) -> None:
    sync.run("hubspot")
    companies = {p["syncer_account_id"]: cid for cid, p in hubspot.companies().items()}
    ada = next(cid for cid, p in hubspot.contacts().items() if p.get("syncer_user_id") == "u01")
    hubspot.add_association(ada, companies["HOOLI"])  # a salesperson's own link
    engine = create_db_engine(str(sync.config.store))
    with engine.begin() as conn:
        conn.execute(
            delete(memberships).where(
                memberships.c.user_id == "u01", memberships.c.account_id == "XYZ"
            )
        )
        conn.execute(memberships.insert().values(user_id="u01", account_id="GLOBEX", stage="PRO"))
    engine.dispose()
    report = sync.run("hubspot")
    assert report.links is not None
    assert (report.links.created, report.links.removed) == (1, 1)
    assert set(hubspot.associations(ada)) == {
        companies["ACME"],
        companies["GLOBEX"],
        companies["HOOLI"],
    }


def test_a_contact_that_existed_before_syncer_is_adopted_not_duplicated(
    sync: Sync, hubspot: HubSpotEmulator
) -> None:
    existing = hubspot.add_object("contacts", {"email": "ada@acme.example", "firstname": "Ada"})
    sync.run("hubspot")
    assert hubspot.find("contacts", "email", "ada@acme.example") == [existing]
    assert hubspot.contacts()[existing]["syncer_user_id"] == "u01"


def test_contains_token_search_finds_exactly_the_token_holders(
    sync: Sync, hubspot: HubSpotEmulator
) -> None:
    """A marketer's filter, as HubSpot's search runs it (whole words): exact, never account
    ACME-US when asking for ACME."""
    import hubspot.crm.objects as objects_api

    from syncer.tokens import Token, contains_query

    sync.run("hubspot")
    configuration = objects_api.Configuration(host=hubspot.url)
    configuration.access_token = TOKEN
    search = objects_api.SearchApi(objects_api.ApiClient(configuration=configuration))

    def holders(prop: str, token: Token) -> set[str]:
        body = {
            "filterGroups": [
                {
                    "filters": [
                        {
                            "propertyName": prop,
                            "operator": "CONTAINS_TOKEN",
                            "value": contains_query(token, "word"),
                        }
                    ]
                }
            ],
            "properties": ["syncer_user_id"],
            "limit": 100,
        }
        answer = search.do_search("contacts", body)
        return {r.properties["syncer_user_id"] for r in answer.results}

    assert holders("syncer_accounts", Token(("ACME", "CUS"))) == {"u01", "u02"}
    assert holders("syncer_account_ids", Token(("ACME",))) == {"u01", "u02"}
    assert holders("syncer_account_ids", Token(("ACME-US",))) == {"u02", "u12"}


def test_ensure_reports_a_property_of_the_wrong_type(sync: Sync, hubspot: HubSpotEmulator) -> None:
    hubspot.add_property("contacts", "syncer_account_count", type="string", field_type="text")
    with pytest.raises(ConfigError) as caught:
        sync.run("hubspot")
    assert "property 'syncer_account_count' exists with type 'string', syncer writes 'number'" in (
        str(caught.value)
    )
    assert hubspot.requests(path_contains="/batch/upsert") == []


def test_ensure_checks_a_property_made_meanwhile_when_creating_it_answers_409(
    sync: Sync, hubspot: HubSpotEmulator
) -> None:
    connector = sync.connect(sync.destination("hubspot"))
    assert isinstance(connector, HubSpotConnector)
    listed = connector._props.get_all_with_http_info

    def list_then_race(*args: Any, **kwargs: Any) -> Any:
        answer = listed(*args, **kwargs)
        # Another run (or a person) creates two of them right after syncer listed them.
        hubspot.add_property("contacts", "syncer_notes", type="string", field_type="text")
        hubspot.add_property("contacts", "syncer_score", type="string", field_type="text")
        return answer

    connector._props.get_all_with_http_info = list_then_race
    report = connector.ensure(
        "contacts", [FieldSpec("syncer_notes"), FieldSpec("syncer_score", FieldType.NUMBER)]
    )
    assert "syncer_notes" in report.existing
    assert report.problems == [
        "property 'syncer_score' exists with type 'string', syncer writes 'number': change the "
        "mapping's type or rename the field"
    ]
    assert not {"syncer_notes", "syncer_score"} & set(report.created)
    assert "syncer_user_id" in report.created
    connector.close()


def test_lifecyclestage_moves_backwards_on_churn(
    sync: Sync, hubspot: HubSpotEmulator, tmp_path: Path
) -> None:
    """HubSpot ignores a lifecycle stage moving backwards unless it is cleared first (the
    emulator does the same); syncer clears it, so the contact follows the stage policy."""
    mapping = (ROOT / "mappings" / "hubspot.yaml").read_text(encoding="utf-8")
    lifecycle = (
        "      lifecyclestage: {type: enum, options: [lead, customer],\n"
        "                       value: \"'customer' if stage in ('CUS', 'PRO') else 'lead'\"}\n"
    )
    mapping = mapping.replace(
        "      syncer_stage: stage\n", "      syncer_stage: stage\n" + lifecycle
    )
    (tmp_path / "lifecycle.yaml").write_text(mapping, encoding="utf-8")
    config = tmp_path / "syncer.yaml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            str(ROOT / "mappings" / "hubspot.yaml"), str(tmp_path / "lifecycle.yaml")
        ),
        encoding="utf-8",
    )
    with Sync(load_config(config), environ={"HS_TOKEN": TOKEN}, retry=RetryPolicy.no_wait()) as s:
        s.run("hubspot")
        linus = _by_key(hubspot, "contacts", "syncer_user_id")["u05"]
        assert (linus["syncer_stage"], linus["lifecyclestage"]) == ("CUS", "customer")
        engine = create_db_engine(str(s.config.store))
        with engine.begin() as conn:  # Linus's only active account churns
            conn.execute(
                update(memberships)
                .where(memberships.c.user_id == "u05", memberships.c.account_id == "GLOBEX")
                .values(stage="churned")
            )
        engine.dispose()
        report = s.run("hubspot")
    assert report.status == "succeeded"
    linus = _by_key(hubspot, "contacts", "syncer_user_id")["u05"]
    assert (linus["syncer_stage"], linus["lifecyclestage"]) == ("churned", "lead")


def _connector(host: str, token: str) -> HubSpotConnector:
    return HubSpotConnector(HubSpotConfig(access_token=SecretStr(token), host=host, timeout=5))


def test_check_reads_once_with_the_token_and_writes_nothing(hubspot: HubSpotEmulator) -> None:
    connector = _connector(hubspot.url, TOKEN)
    connector.check()
    [request] = hubspot.requests()
    assert (request.method, request.path) == ("GET", "/crm/v3/properties/contacts/groups")


def test_check_with_a_refused_token_says_what_to_fix(hubspot: HubSpotEmulator) -> None:
    connector = _connector(hubspot.url, "revoked-token")
    with pytest.raises(ConfigError) as caught:
        connector.check()
    text = str(caught.value)
    assert "hubspot GET contacts property groups: HTTP 401, authentication failed" in text
    assert "check the access token" in text


def test_check_against_an_unreachable_host_is_a_clean_retriable_error() -> None:
    host = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RetriableError, match="hubspot GET contacts property groups: connection"):
        _connector(host, TOKEN).check()
