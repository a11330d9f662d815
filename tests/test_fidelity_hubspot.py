"""HubSpot as documented, not as our emulator used to be lenient (issue 17, items 1, 2, 6).

Each test here failed on the code before the fix; the docstring names the documented behaviour
and docs/api-fidelity.md the source page.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from pydantic import SecretStr

from syncer.connectors.base import AssociationChange, WriteRecord
from syncer.connectors.hubspot import HubSpotConfig, HubSpotConnector
from syncer.errors import FatalError
from syncer.testing.hubspot_emulator import HubSpotEmulator

TOKEN = "fidelity-token"


@pytest.fixture
def hubspot() -> Iterator[HubSpotEmulator]:
    with HubSpotEmulator(access_token=TOKEN, seed=3) as emulator:
        emulator.add_property("contacts", "syncer_user_id", unique=True)
        emulator.add_property("companies", "syncer_account_id", unique=True)
        yield emulator


@pytest.fixture
def conn(hubspot: HubSpotEmulator) -> Iterator[HubSpotConnector]:
    connector = HubSpotConnector(
        HubSpotConfig(access_token=SecretStr(TOKEN), host=hubspot.url, timeout=5)
    )
    yield connector
    connector.close()


def _upsert(hubspot: HubSpotEmulator, inputs: list[dict]) -> requests.Response:
    return requests.post(
        f"{hubspot.url}/crm/v3/objects/contacts/batch/upsert",
        json={"inputs": inputs},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )


def _input(key: str, email: str, trace: bool) -> dict:
    item = {"idProperty": "syncer_user_id", "id": key, "properties": {"email": email}}
    return {**item, "objectWriteTraceId": key} if trace else item


def test_without_trace_ids_one_bad_input_fails_the_whole_batch(hubspot: HubSpotEmulator) -> None:
    """Error-handling reference: multi-status (207) is enabled only by a unique
    objectWriteTraceId on every input; without it one bad input fails the request."""
    answer = _upsert(hubspot, [_input("u1", "a@example.com", False), _input("u2", "bad", False)])
    assert answer.status_code == 400
    assert hubspot.contacts() == {}  # nothing applied


def test_with_unique_trace_ids_a_bad_input_is_a_207_naming_its_trace_id(
    hubspot: HubSpotEmulator,
) -> None:
    answer = _upsert(hubspot, [_input("u1", "a@example.com", True), _input("u2", "bad", True)])
    assert answer.status_code == 207
    body = answer.json()
    assert [e["context"]["objectWriteTraceId"] for e in body["errors"]] == [["u2"]]
    assert [r["objectWriteTraceId"] for r in body["results"]] == ["u1"]


def test_the_lenient_switch_keeps_the_old_multi_status_for_tests_that_want_it(
    hubspot: HubSpotEmulator,
) -> None:
    hubspot.multi_status_without_trace_id = True
    answer = _upsert(hubspot, [_input("u1", "a@example.com", False), _input("u2", "bad", False)])
    assert answer.status_code == 207


def test_the_connector_sends_each_record_key_as_its_trace_id_and_gets_partial_results(
    hubspot: HubSpotEmulator, conn: HubSpotConnector
) -> None:
    batch = [
        WriteRecord("u1", {"email": "a@example.com"}, {"email": "a@example.com"}),
        WriteRecord("u2", {"email": "not-an-email"}, {"email": "not-an-email"}),
    ]
    results = {r.key: r for r in conn.write("contacts", batch)}
    assert results["u1"].ok
    assert results["u1"].remote_id
    assert not results["u2"].ok
    assert "not-an-email" in (results["u2"].rejected or "")
    sent = hubspot.requests(path_contains="/batch/upsert")[-1].body["inputs"]
    assert [i["objectWriteTraceId"] for i in sent] == ["u1", "u2"]


def test_a_record_missing_from_the_answer_gets_no_result_never_success(
    hubspot: HubSpotEmulator, conn: HubSpotConnector
) -> None:
    """An answer that neither returns nor names a record: no result for it (the pipeline records
    it as failed, "no result from the destination", and sends it again) — never success."""
    hubspot.inject_status(
        200,
        path_prefix="/crm/v3/objects/contacts/batch/upsert",
        count=1,
        body={"status": "COMPLETE", "results": [], "startedAt": "x", "completedAt": "x"},
    )
    batch = [WriteRecord("u1", {"email": "a@example.com"}, {"email": "a@example.com"})]
    assert list(conn.write("contacts", batch)) == []


def test_an_association_to_a_company_that_does_not_exist_is_rejected(
    hubspot: HubSpotEmulator, conn: HubSpotConnector
) -> None:
    """Associations v4 batch create: an error for a pair must never be ledgered as made."""
    contact = hubspot.add_object("contacts", {"email": "a@example.com"})
    company = hubspot.add_object("companies", {"name": "Real"})
    changes = [
        AssociationChange("contacts", "u1", contact, "companies", "a1", company, "member"),
        AssociationChange("contacts", "u1", contact, "companies", "a2", "999999", "member"),
    ]
    results = {r.change.to_remote_id: r for r in conn.associate(changes)}
    assert results[company].ok
    assert not results["999999"].ok
    assert hubspot.associations(contact) == {company: {279}}


def test_a_daily_limit_429_stops_the_run_even_with_budget_headers_left(
    hubspot: HubSpotEmulator, conn: HubSpotConnector
) -> None:
    """A 429 whose body says policyName DAILY is the day's budget: stop, never retry."""
    hubspot.inject_rate_limited(policy="DAILY", path_prefix="/crm/v3/objects", count=1)
    batch = [WriteRecord("u1", {"email": "a@example.com"}, {"email": "a@example.com"})]
    with pytest.raises(FatalError, match="daily"):
        conn.write("contacts", batch)


def test_oauth_app_answers_carry_no_daily_headers_and_a_daily_429_still_stops(
    hubspot: HubSpotEmulator, conn: HubSpotConnector
) -> None:
    """Changelog: OAuth-authenticated calls carry no X-HubSpot-RateLimit-Daily* headers."""
    hubspot.oauth_app = True
    answer = requests.get(
        f"{hubspot.url}/crm/v3/properties/contacts/groups",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )
    assert "X-HubSpot-RateLimit-Max" in answer.headers
    assert "X-HubSpot-RateLimit-Daily" not in answer.headers
    assert "X-HubSpot-RateLimit-Daily-Remaining" not in answer.headers
    hubspot.inject_rate_limited(policy="DAILY", path_prefix="/crm/v3/objects", count=1)
    batch = [WriteRecord("u1", {"email": "a@example.com"}, {"email": "a@example.com"})]
    with pytest.raises(FatalError, match="daily"):
        conn.write("contacts", batch)
