"""The connector against the emulator, call by call: what a sync run does not show on its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import TOKEN
from pipedrive_emulator import PipedriveEmulator
from pydantic import SecretStr, ValidationError
from syncer_pipedrive import PipedriveConfig, PipedriveConnector

from syncer.connectors.base import RateLimitInfo, WriteRecord
from syncer.errors import ConfigError, FatalError, RetriableError
from syncer.fields import FieldSpec, FieldType

FIELDS = [FieldSpec("syncer_note"), FieldSpec("syncer_count", FieldType.NUMBER)]


def _connector(pipedrive: PipedriveEmulator, **credential: str) -> PipedriveConnector:
    secrets = {k: SecretStr(v) for k, v in (credential or {"api_token": TOKEN}).items()}
    return PipedriveConnector(PipedriveConfig(base_url=pipedrive.url, **secrets))


@pytest.fixture
def connector(pipedrive: PipedriveEmulator) -> Iterator[PipedriveConnector]:
    connector = _connector(pipedrive)
    connector.ensure("persons", FIELDS)
    yield connector
    connector.close()


def _record(key: str, **values: str | None) -> WriteRecord:
    return WriteRecord(key, values, values)


def test_check_reads_one_user_and_turns_a_refused_token_into_a_config_error(
    pipedrive: PipedriveEmulator,
) -> None:
    _connector(pipedrive).check()
    assert [e.path for e in pipedrive.requests()] == ["/v1/users/me"]
    with pytest.raises(ConfigError, match=r"HTTP 401.*unauthorized access"):
        _connector(pipedrive, api_token="wrong").check()


def test_an_oauth_access_token_goes_as_bearer(pipedrive: PipedriveEmulator) -> None:
    _connector(pipedrive, access_token=TOKEN).check()
    with pytest.raises(ValidationError, match="exactly one"):
        PipedriveConfig(base_url=pipedrive.url)


def test_ensure_creates_hash_keyed_fields_once_and_reports_wrong_types(
    pipedrive: PipedriveEmulator,
) -> None:
    connector = _connector(pipedrive)
    first = connector.ensure("persons", FIELDS)
    assert sorted(first.created) == ["syncer_count", "syncer_note", "syncer_user_id"]
    assert pipedrive.field_code("persons", "syncer_count") != "syncer_count"
    assert connector.ensure("persons", FIELDS).created == []
    pipedrive.add_field("persons", "syncer_when", "double")
    pipedrive.add_field("persons", "syncer_twice")
    pipedrive.add_field("persons", "syncer_twice")
    report = connector.ensure(
        "persons", [FieldSpec("syncer_when", FieldType.DATE), FieldSpec("syncer_twice")]
    )
    assert report.problems == [
        "field 'syncer_when' is 'double', not 'date'",
        "several fields are named 'syncer_twice': keep one",
    ]


def test_numbers_go_as_numbers_and_none_clears(
    connector: PipedriveConnector, pipedrive: PipedriveEmulator
) -> None:
    [ok] = connector.write("persons", [_record("u1", name="A", syncer_count="42")])
    [again] = connector.write(
        "persons",
        [WriteRecord("u1", {"syncer_count": None}, {}, remote_id=ok.remote_id)],
    )
    assert again.remote_id == ok.remote_id
    assert ok.created
    assert not again.created
    code = pipedrive.field_code("persons", "syncer_count")
    assert pipedrive.by_field("persons", "syncer_user_id")["u1"]["custom_fields"][code] is None


def test_a_record_made_before_syncer_is_found_by_its_key_not_duplicated(
    connector: PipedriveConnector, pipedrive: PipedriveEmulator
) -> None:
    key_code = pipedrive.field_code("persons", "syncer_user_id")
    note_code = pipedrive.field_code("persons", "syncer_note")
    existing = pipedrive.add_record("persons", {"name": "X", "custom_fields": {key_code: "u9"}})
    # Another person holds "u9" in a different field: the search finds both, only one is u9.
    pipedrive.add_record("persons", {"name": "Y", "custom_fields": {note_code: "U9"}})
    [result] = connector.write("persons", [_record("u9", name="Nine")])
    assert (result.remote_id, result.created) == (str(existing), False)
    assert pipedrive.records["persons"][existing]["name"] == "Nine"


def test_the_key_in_another_field_does_not_match(
    connector: PipedriveConnector, pipedrive: PipedriveEmulator
) -> None:
    note_code = pipedrive.field_code("persons", "syncer_note")
    other = pipedrive.add_record("persons", {"name": "Y", "custom_fields": {note_code: "u8"}})
    [result] = connector.write("persons", [_record("u8", name="Eight")])
    assert result.created
    assert result.remote_id != str(other)


def test_a_remote_id_deleted_in_pipedrive_is_found_or_created_again(
    connector: PipedriveConnector, pipedrive: PipedriveEmulator
) -> None:
    [first] = connector.write("persons", [_record("u2", name="Two")])
    pipedrive.records["persons"][int(first.remote_id or 0)]["is_deleted"] = True
    stale = WriteRecord("u2", {"name": "Two"}, {"name": "Two"}, remote_id=first.remote_id)
    [second] = connector.write("persons", [stale])
    assert second.ok
    assert second.created
    assert second.remote_id != first.remote_id


def test_a_person_whose_organization_is_missing_is_rejected_alone(
    pipedrive: PipedriveEmulator,
) -> None:
    connector = _connector(pipedrive)
    for name in connector.objects:
        connector.ensure(name, [])
    [org] = connector.write("organizations", [_record("A1", name="Acme")])
    lonely = WriteRecord("u3", {"name": "T"}, {"name": "T"}, hints={"primary_account_key": "A9"})
    linked = WriteRecord("u4", {"name": "F"}, {"name": "F"}, hints={"primary_account_key": "A1"})
    bad, good = connector.write("persons", [lonely, linked])
    assert bad.rejected
    assert "'A9' has no Pipedrive organization" in bad.rejected
    assert good.ok
    assert pipedrive.records["persons"][int(good.remote_id or 0)]["org_id"] == int(
        org.remote_id or 0
    )


def test_a_429_without_retry_after_waits_for_the_window_reset(
    connector: PipedriveConnector, pipedrive: PipedriveEmulator
) -> None:
    seen: list[RateLimitInfo] = []
    connector.set_rate_observer(seen.append)
    pipedrive.retry_after = False
    pipedrive.inject_status(429, path_prefix="/api/v2/persons", count=1)
    with pytest.raises(RetriableError) as caught:
        connector.write("persons", [_record("u5", name="Five")])
    assert caught.value.retry_after == 2.0  # x-ratelimit-reset of the 2-second window
    assert seen[-1].limit == 10_000
    assert seen[-1].remaining == 0


@pytest.mark.parametrize(("status", "error"), [(402, FatalError), (503, RetriableError)])
def test_account_closed_is_fatal_and_a_server_error_is_retried(
    connector: PipedriveConnector,
    pipedrive: PipedriveEmulator,
    status: int,
    error: type[Exception],
) -> None:
    pipedrive.inject_status(status, path_prefix="/api/v2/persons", count=1)
    with pytest.raises(error, match=f"HTTP {status}"):
        connector.write("persons", [_record("u6", name="Six")])


def test_a_value_pipedrive_refuses_is_a_rejected_record(
    connector: PipedriveConnector,
) -> None:
    [result] = connector.write("persons", [_record("u7", name="S", syncer_note="x" * 256)])
    assert result.rejected is not None
    assert "longer than 255 characters" in result.rejected
