"""Contract tests: the Salesforce connector against the documented answers, without the emulator.

simple-salesforce sends through ``requests``, so ``responses`` answers every call with the body
the reference pages show (docs/api-fidelity.md lists the page of each). What is asserted is what
the connector records from it: per-record results, errors, the calls it makes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import responses
from pydantic import SecretStr
from responses import matchers
from test_salesforce_end_to_end import private_key_file

from syncer.connectors.base import WriteRecord
from syncer.connectors.salesforce import SalesforceConfig, SalesforceConnector
from syncer.errors import ConfigError, FatalError, RetriableError
from syncer.fields import FieldSpec

INSTANCE = "https://example.my.salesforce.com"
DATA = f"{INSTANCE}/services/data/v59.0/"
JOBS = f"{DATA}jobs/ingest/"
SOAP_LOGIN = "https://test.salesforce.com/services/Soap/u/59.0"
TOKEN_URL = "https://test.salesforce.com/services/oauth2/token"
LIMIT_HEADER = {"Sforce-Limit-Info": "api-usage=25/15000"}
INVALID_SESSION = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def _session(**settings: Any) -> SalesforceConnector:
    config = SalesforceConfig(
        instance_url=INSTANCE, session_id=SecretStr("00Dsession"), timeout=5, **settings
    )
    return SalesforceConnector(config)


def _rec(key: str, values: dict[str, Any]) -> WriteRecord:
    return WriteRecord(key, values, values)


@responses.activate
def test_collections_upsert_maps_the_documented_success_and_error_items() -> None:
    """sObject Collections upsert: 200 with one positional item per record."""
    responses.patch(
        f"{DATA}composite/sobjects/Account/Syncer_Account_Id__c",
        json=[
            {"id": "001xx000003DIpcAAG", "success": True, "errors": [], "created": False},
            {"id": "001xx000003DIpdAAG", "success": True, "errors": [], "created": True},
            {
                "success": False,
                "errors": [
                    {
                        "statusCode": "STRING_TOO_LONG",
                        "message": "Account Name: data value too large",
                        "fields": ["Name"],
                    }
                ],
            },
        ],
        headers=LIMIT_HEADER,
    )
    results = _session().write(
        "Account", [_rec("a1", {"Name": "A"}), _rec("a2", {"Name": "B"}), _rec("a3", {"Name": "C"})]
    )
    assert [(r.key, r.remote_id, r.created) for r in results[:2]] == [
        ("a1", "001xx000003DIpcAAG", False),
        ("a2", "001xx000003DIpdAAG", True),
    ]
    assert results[2].key == "a3"
    assert results[2].field == "Name"
    assert "STRING_TOO_LONG" in (results[2].rejected or "")
    sent = json.loads(responses.calls[0].request.body or b"{}")
    assert sent["allOrNone"] is False
    assert sent["records"][0] == {
        "attributes": {"type": "Account"},
        "Name": "A",
        "Syncer_Account_Id__c": "a1",
    }


@responses.activate
def test_a_collections_answer_that_cannot_be_matched_rejects_every_record() -> None:
    responses.patch(
        f"{DATA}composite/sobjects/Account/Syncer_Account_Id__c",
        json=[{"id": "001xx000003DIpcAAG", "success": True, "errors": [], "created": True}],
    )
    results = _session().write("Account", [_rec("a1", {"Name": "A"}), _rec("a2", {"Name": "B"})])
    assert [r.ok for r in results] == [False, False]


@responses.activate
def test_request_limit_exceeded_stops_the_run_and_is_not_retried() -> None:
    responses.patch(
        f"{DATA}composite/sobjects/Account/Syncer_Account_Id__c",
        status=403,
        json=[{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
    )
    with pytest.raises(FatalError, match="daily API request limit is spent"):
        _session().write("Account", [_rec("a1", {"Name": "A"})])
    assert len(responses.calls) == 1


@responses.activate
def test_an_expired_bare_session_is_a_config_error() -> None:
    responses.patch(
        f"{DATA}composite/sobjects/Account/Syncer_Account_Id__c", status=401, json=INVALID_SESSION
    )
    with pytest.raises(ConfigError, match="cannot sign in again"):
        _session().write("Account", [_rec("a1", {"Name": "A"})])


def _soap_login_body(session: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
        'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns="urn:partner.soap.sforce.com"><soapenv:Body><loginResponse><result>'
        "<passwordExpired>false</passwordExpired><sandbox>true</sandbox>"
        f"<serverUrl>{INSTANCE}/services/Soap/u/59.0/00Dxx0000001gPL</serverUrl>"
        f"<sessionId>{session}</sessionId><userId>005xx000001Sv6AAAS</userId>"
        "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
    )


@responses.activate
def test_a_password_login_signs_in_once_more_after_invalid_session_id() -> None:
    responses.post(SOAP_LOGIN, body=_soap_login_body("00Dfirst"))
    responses.post(SOAP_LOGIN, body=_soap_login_body("00Dsecond"))
    url = f"{DATA}composite/sobjects/Account/Syncer_Account_Id__c"
    responses.patch(url, status=401, json=INVALID_SESSION)
    responses.patch(url, json=[{"id": "001A", "success": True, "errors": [], "created": True}])
    conn = SalesforceConnector(
        SalesforceConfig(
            username="u@example.com", password=SecretStr("p"), domain="test", timeout=5
        )
    )
    [result] = conn.write("Account", [_rec("a1", {"Name": "A"})])
    assert result.ok
    patches = [c for c in responses.calls if c.request.method == "PATCH"]
    assert [c.request.headers["Authorization"] for c in patches] == [
        "Bearer 00Dfirst",
        "Bearer 00Dsecond",
    ]


@responses.activate
def test_a_jwt_login_signs_in_once_more_after_invalid_session_id(tmp_path: Path) -> None:
    pem = private_key_file(tmp_path)
    for token in ("00Dfirst", "00Dsecond"):
        responses.post(
            TOKEN_URL,
            json={
                "access_token": token,
                "scope": "api",
                "instance_url": INSTANCE,
                "id": "https://test.salesforce.com/id/00Dxx0000001gPL/005xx000001Sv6AAAS",
                "token_type": "Bearer",
            },
        )
    responses.get(f"{DATA}sobjects/Account/describe/", json={"name": "Account", "fields": []})
    conn = SalesforceConnector(
        SalesforceConfig(
            username="u@example.com", consumer_key="3MVG9", jwt_key_file=pem, domain="test"
        )
    )
    conn.ensure("Account", [])  # one describe with the first session
    responses.replace(responses.GET, f"{DATA}sobjects/Account/describe/", status=401, json=[])
    responses.add(responses.GET, f"{DATA}sobjects/Account/describe/", json={"fields": []})
    conn.ensure("Account", [])
    logins = [c for c in responses.calls if c.request.url == TOKEN_URL]
    assert len(logins) == 2


def _describe(*names: str) -> dict[str, Any]:
    fields = [
        {"name": "Id", "type": "id", "length": 18},
        {"name": "Name", "type": "string", "length": 255},
    ]
    fields += [
        {"name": n, "type": "string", "length": 255, "externalId": True, "unique": True}
        for n in names
    ]
    return {"name": "Account", "fields": fields}


@responses.activate
def test_ensure_creates_the_field_grants_it_and_verifies_by_describe() -> None:
    describe = f"{DATA}sobjects/Account/describe/"
    responses.get(describe, json=_describe())
    responses.post(
        f"{DATA}tooling/sobjects/CustomField/",
        status=201,
        json={"id": "00Nxx0000001", "success": True, "errors": [], "warnings": [], "infos": []},
    )
    responses.get(f"{DATA}chatter/users/me", json={"id": "005xx000001Sv6AAAS", "type": "User"})
    responses.get(f"{DATA}query/", json={"totalSize": 0, "done": True, "records": []})
    created = {"id": "0PSxx0000001", "success": True, "errors": []}
    responses.post(f"{DATA}sobjects/PermissionSet/", status=201, json=created)
    responses.post(f"{DATA}sobjects/FieldPermissions/", status=201, json=created)
    responses.post(f"{DATA}sobjects/PermissionSetAssignment/", status=201, json=created)
    responses.replace(responses.GET, describe, json=_describe())
    responses.add(responses.GET, describe, json=_describe("Syncer_Account_Id__c"))
    report = _session(allow_create_fields=True).ensure("Account", [])
    assert report.problems == []
    assert report.created == ["Syncer_Account_Id__c"]
    grant = next(c for c in responses.calls if "FieldPermissions" in c.request.url)
    assert json.loads(grant.request.body or b"{}") == {
        "ParentId": "0PSxx0000001",
        "SobjectType": "Account",
        "Field": "Account.Syncer_Account_Id__c",
        "PermissionsRead": True,
        "PermissionsEdit": True,
    }
    assign = next(c for c in responses.calls if "PermissionSetAssignment" in c.request.url)
    assert json.loads(assign.request.body or b"{}") == {
        "AssigneeId": "005xx000001Sv6AAAS",
        "PermissionSetId": "0PSxx0000001",
    }


@responses.activate
def test_ensure_without_the_right_to_grant_names_the_permission_set_and_fields() -> None:
    responses.get(f"{DATA}sobjects/Account/describe/", json=_describe())
    responses.post(
        f"{DATA}tooling/sobjects/CustomField/",
        status=201,
        json={"id": "00Nxx0000001", "success": True, "errors": []},
    )
    responses.get(f"{DATA}chatter/users/me", json={"id": "005xx000001Sv6AAAS"})
    responses.get(f"{DATA}query/", json={"totalSize": 0, "done": True, "records": []})
    responses.post(
        f"{DATA}sobjects/PermissionSet/",
        status=403,
        json=[
            {
                "message": "insufficient access rights on cross-reference id",
                "errorCode": "INSUFFICIENT_ACCESS_OR_READONLY",
            }
        ],
    )
    report = _session(allow_create_fields=True).ensure("Account", [FieldSpec("Syncer_Plan__c")])
    [problem] = report.problems
    assert "INSUFFICIENT_ACCESS_OR_READONLY" in problem
    assert "permission set Syncer_Integration" in problem
    assert "Account.Syncer_Account_Id__c, Account.Syncer_Plan__c" in problem


def _job(state: str) -> dict[str, Any]:
    return {
        "id": "7505fEXAMPLE4C2AAM",
        "operation": "upsert",
        "object": "Account",
        "createdById": "005xx000001Sv6AAAS",
        "state": state,
        "externalIdFieldName": "Syncer_Account_Id__c",
        "concurrencyMode": "Parallel",
        "contentType": "CSV",
        "apiVersion": 59.0,
        "lineEnding": "LF",
        "columnDelimiter": "COMMA",
    }


def _open_upload_close() -> str:
    """Create job → upload CSV → UploadComplete, as the ingest pages answer them; the job URL."""
    job = f"{JOBS}7505fEXAMPLE4C2AAM/"
    responses.post(JOBS, json=_job("Open"))
    responses.put(f"{job}batches/", status=201)
    responses.patch(
        job,
        json=_job("UploadComplete"),
        match=[matchers.json_params_matcher({"state": "UploadComplete"})],
    )
    return job


@responses.activate
def test_a_bulk_job_runs_its_documented_lifecycle_and_results_match_by_key() -> None:
    job = _open_upload_close()
    responses.get(job, json=_job("InProgress"))
    responses.get(job, json=_job("JobComplete"))
    responses.get(  # results in another order than the upload
        f"{job}successfulResults/",
        body='"sf__Id","sf__Created",Name,Syncer_Account_Id__c\n'
        '"001xx0000002","false","B","a2"\n"001xx0000001","true","A","a1"\n',
    )
    responses.get(
        f"{job}failedResults/",
        body='"sf__Id","sf__Error",Name,Syncer_Account_Id__c\n'
        '"","STRING_TOO_LONG:Account Name: data value too large:Name --","C","a3"\n',
    )
    conn = _session(bulk_poll_seconds=0.01)
    result = conn.write_bulk(
        "Account", [_rec("a1", {"Name": "A"}), _rec("a2", {"Name": "B"}), _rec("a3", {"Name": "C"})]
    )
    assert [(r.key, r.remote_id, r.ok) for r in result.results] == [
        ("a1", "001xx0000001", True),
        ("a2", "001xx0000002", True),
        ("a3", None, False),
    ]
    assert result.requests == 7
    upload = next(c for c in responses.calls if c.request.method == "PUT")
    assert upload.request.body == b"Name,Syncer_Account_Id__c\nA,a1\nB,a2\nC,a3\n"


@responses.activate
def test_a_bulk_job_still_running_is_aborted_on_close() -> None:
    job = _open_upload_close()
    responses.get(job, json=_job("InProgress"))
    responses.patch(
        job, json=_job("Aborted"), match=[matchers.json_params_matcher({"state": "Aborted"})]
    )
    conn = _session(bulk_poll_seconds=0.01, bulk_wait_seconds=0.03)
    with pytest.raises(RetriableError, match="polls the same job"):
        conn.write_bulk("Account", [_rec("a1", {"Name": "A"})])
    conn.close()
    assert [c.request.method for c in responses.calls].count("POST") == 1
    assert json.loads(responses.calls[-1].request.body or b"{}") == {"state": "Aborted"}


@responses.activate
def test_check_reads_the_limits_and_reports_the_daily_budget() -> None:
    responses.get(
        f"{DATA}limits/",
        json={"DailyApiRequests": {"Max": 15000, "Remaining": 14975}},
        headers=LIMIT_HEADER,
    )
    seen: list[Any] = []
    conn = _session()
    conn.set_rate_observer(seen.append)
    conn.check()
    assert [(i.daily_limit, i.daily_remaining) for i in seen] == [(15000, 14975)]
