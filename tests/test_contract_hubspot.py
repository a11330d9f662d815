"""Contract tests: the HubSpot connector against the documented answers, without the emulator.

hubspot-api-client sends through urllib3, which ``responses`` (a ``requests`` patch) does not
see. So a scripted loopback server replays, in order, the status, headers and body the reference
pages show for each call — no emulator logic, only the recorded answers — and keeps what the
connector sent (docs/api-fidelity.md explains the choice and lists the pages).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr

from syncer.connectors.base import AssociationChange, WriteRecord
from syncer.connectors.hubspot import HubSpotConfig, HubSpotConnector
from syncer.errors import BatchRejected, ConfigError, FatalError, RetriableError
from syncer.fields import FieldSpec

STAMP = "2024-05-01T10:00:00.000Z"


@dataclass
class Scripted:
    """Answers in order: (method, path, status, body, headers); the requests it received."""

    answers: list[tuple[str, str, int, Any, dict[str, str]]] = field(default_factory=list)
    received: list[tuple[str, str, Any]] = field(default_factory=list)
    url: str = ""

    def add(self, method: str, path: str, status: int, body: Any = None, **headers: str) -> None:
        self.answers.append((method, path, status, body, headers))


@pytest.fixture
def script() -> Iterator[Scripted]:
    scripted = Scripted()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            scripted.received.append((self.command, self.path, json.loads(raw) if raw else None))
            method, path, status, body, headers = scripted.answers.pop(0)
            assert (self.command, self.path.split("?")[0]) == (method, path)
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scripted.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield scripted
    server.shutdown()
    server.server_close()
    assert scripted.answers == [], "answers scripted but not asked for"


def _conn(script: Scripted) -> HubSpotConnector:
    return HubSpotConnector(
        HubSpotConfig(access_token=SecretStr("pat"), host=script.url, timeout=5)
    )


def _rec(key: str, values: dict[str, Any], remote_id: str | None = None) -> WriteRecord:
    return WriteRecord(key, values, values, remote_id)


def _object(obj_id: str, key: str, new: bool) -> dict[str, Any]:
    """One result of a batch upsert, as the upsert reference's example shows it."""
    return {
        "id": obj_id,
        "properties": {"syncer_account_id": key, "hs_object_id": obj_id},
        "createdAt": STAMP,
        "updatedAt": STAMP,
        "archived": False,
        "new": new,
        "objectWriteTraceId": key,
    }


UPSERT = "/crm/v3/objects/companies/batch/upsert"


def _batch(results: list[dict[str, Any]], *errors: dict[str, Any]) -> dict[str, Any]:
    """A batch answer as the reference shows it: results, and numErrors/errors if any."""
    body: dict[str, Any] = {"status": "COMPLETE", "results": results}
    if errors:
        body.update(numErrors=len(errors), errors=list(errors))
    return {**body, "startedAt": STAMP, "completedAt": STAMP}


def test_a_batch_upsert_answer_maps_by_trace_id_whatever_its_order(script: Scripted) -> None:
    script.add(
        "POST",
        UPSERT,
        200,
        {
            "status": "COMPLETE",
            "results": [_object("512", "a2", False), _object("511", "a1", True)],
            "startedAt": STAMP,
            "completedAt": STAMP,
        },
    )
    results = _conn(script).write(
        "companies", [_rec("a1", {"name": "A"}), _rec("a2", {"name": "B"})]
    )
    assert sorted((r.key, r.remote_id, r.created) for r in results) == [
        ("a1", "511", True),
        ("a2", "512", False),
    ]
    [(_, _, body)] = script.received
    assert body["inputs"][0] == {
        "idProperty": "syncer_account_id",
        "id": "a1",
        "properties": {"name": "A", "syncer_account_id": "a1"},
        "objectWriteTraceId": "a1",
    }


def test_a_207_rejects_the_input_its_error_names_by_trace_id(script: Scripted) -> None:
    error = {
        "status": "error",
        "category": "VALIDATION_ERROR",
        "message": 'Property values were not valid: "domain"',
        "context": {"objectWriteTraceId": ["a2"], "propertyName": ["domain"]},
        "errors": [],
    }
    script.add("POST", UPSERT, 207, _batch([_object("511", "a1", True)], error))
    results = _conn(script).write(
        "companies", [_rec("a1", {"name": "A"}), _rec("a2", {"name": "B"})]
    )
    assert results[0].ok
    assert (results[1].key, results[1].field) == ("a2", "domain")
    assert "VALIDATION_ERROR" in (results[1].rejected or "")


def test_an_error_naming_no_input_rejects_every_record_without_a_result(script: Scripted) -> None:
    error = {"status": "error", "category": "CONFLICT", "message": "conflict"}
    script.add("POST", UPSERT, 207, _batch([_object("511", "a1", True)], error))
    results = _conn(script).write(
        "companies", [_rec("a1", {"name": "A"}), _rec("a2", {"name": "B"})]
    )
    assert [r.ok for r in results] == [True, False]
    assert "CONFLICT" in (results[1].rejected or "")


def test_a_whole_batch_400_is_bisected(script: Scripted) -> None:
    script.add(
        "POST",
        UPSERT,
        400,
        {
            "status": "error",
            "message": "Property values were not valid",
            "correlationId": "aeb5f871-7f07-4993-9211-075dc63e7cbf",
            "category": "VALIDATION_ERROR",
        },
    )
    with pytest.raises(BatchRejected, match="HTTP 400"):
        _conn(script).write("companies", [_rec("a1", {"name": "A"})])


def test_a_secondly_429_is_retried_after_retry_after_and_a_daily_one_stops(
    script: Scripted,
) -> None:
    body = {
        "status": "error",
        "message": "You have reached your secondly limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": "c033cdaa-2c40-4a64-ae48-b4cec88dad24",
        "policyName": "SECONDLY",
    }
    script.add("POST", UPSERT, 429, body, **{"Retry-After": "2"})
    with pytest.raises(RetriableError) as caught:
        _conn(script).write("companies", [_rec("a1", {"name": "A"})])
    assert caught.value.retry_after == 2.0
    daily = {**body, "message": "You have reached your daily limit.", "policyName": "DAILY"}
    script.add("POST", UPSERT, 429, daily)
    with pytest.raises(FatalError, match="daily request budget is spent"):
        _conn(script).write("companies", [_rec("a1", {"name": "A"})])


def test_association_results_and_errors_map_to_pairs(script: Scripted) -> None:
    script.add(
        "POST",
        "/crm/v4/associations/contacts/companies/batch/create",
        207,
        {
            "status": "COMPLETE",
            "results": [
                {
                    "fromObjectTypeId": "0-1",
                    "fromObjectId": 101,
                    "toObjectTypeId": "0-2",
                    "toObjectId": 201,
                    "labels": [],
                }
            ],
            "numErrors": 1,
            "errors": [
                {
                    "status": "error",
                    "category": "VALIDATION_ERROR",
                    "message": "No company with id 999",
                    "context": {"ids": ["999"]},
                }
            ],
            "startedAt": STAMP,
            "completedAt": STAMP,
        },
    )
    changes = [
        AssociationChange("contacts", "u1", "101", "companies", "a1", "201"),
        AssociationChange("contacts", "u1", "101", "companies", "a2", "999"),
    ]
    results = _conn(script).associate(changes)
    assert [r.ok for r in results] == [True, False]
    assert "No company with id 999" in (results[1].rejected or "")


def test_an_association_archive_answers_204_and_every_pair_is_gone(script: Scripted) -> None:
    script.add("POST", "/crm/v4/associations/contacts/companies/batch/archive", 204)
    change = AssociationChange("contacts", "u1", "101", "companies", "a1", "201", remove=True)
    [result] = _conn(script).associate([change])
    assert result.ok
    assert script.received[0][2] == {"inputs": [{"from": {"id": "101"}, "to": [{"id": "201"}]}]}


def test_contacts_new_to_syncer_are_looked_up_by_email_first(script: Scripted) -> None:
    script.add(
        "POST",
        "/crm/v3/objects/contacts/batch/read",
        207,
        {
            "status": "COMPLETE",
            "results": [],
            "numErrors": 1,
            "errors": [
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": "Could not get some CONTACT objects, they may be deleted or not "
                    "exist. Check that ids are valid.",
                    "context": {"ids": ["ada@example.com"]},
                }
            ],
            "startedAt": STAMP,
            "completedAt": STAMP,
        },
    )
    contact = {**_object("301", "u1", True), "properties": {"syncer_user_id": "u1"}}
    script.add(
        "POST",
        "/crm/v3/objects/contacts/batch/upsert",
        200,
        {"status": "COMPLETE", "results": [contact], "startedAt": STAMP, "completedAt": STAMP},
    )
    record = WriteRecord(
        "u1", {"email": "ada@example.com"}, {"email": "ada@example.com"}, None,
        {"email": "ada@example.com"},
    )  # fmt: skip
    [result] = _conn(script).write("contacts", [record])
    assert (result.remote_id, result.created) == ("301", True)


def test_ensure_creates_group_and_property_and_checks_one_made_meanwhile(script: Scripted) -> None:
    script.add("GET", "/crm/v3/properties/companies/groups", 200, {"results": []})
    script.add(
        "POST",
        "/crm/v3/properties/companies/groups",
        201,
        {"name": "syncer", "label": "syncer", "displayOrder": -1, "archived": False},
    )
    script.add("GET", "/crm/v3/properties/companies", 200, {"results": []})
    script.add("POST", "/crm/v3/properties/companies", 201, {"name": "syncer_plan"})
    conflict = {
        "status": "error",
        "message": "Property named 'syncer_account_id' already exists.",
        "correlationId": "8b3c1c4e",
        "category": "OBJECT_ALREADY_EXISTS",
    }
    script.add("POST", "/crm/v3/properties/companies", 409, conflict)
    script.add(
        "GET",
        "/crm/v3/properties/companies/syncer_account_id",
        200,
        {"name": "syncer_account_id", "type": "string", "hasUniqueValue": True},
    )
    report = _conn(script).ensure("companies", [FieldSpec("syncer_plan")])
    assert report.created == ["syncer_plan"]
    assert report.existing == ["syncer_account_id"]
    assert report.problems == []


def test_check_with_a_refused_token_is_a_config_error(script: Scripted) -> None:
    script.add(
        "GET",
        "/crm/v3/properties/contacts/groups",
        401,
        {
            "status": "error",
            "message": "Authentication credentials not found.",
            "correlationId": "4a0bd3a1",
            "category": "INVALID_AUTHENTICATION",
        },
    )
    with pytest.raises(ConfigError, match="HTTP 401"):
        _conn(script).check()
