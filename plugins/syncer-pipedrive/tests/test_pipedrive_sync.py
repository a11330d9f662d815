"""examples/ → syncer.engine.Sync → the Pipedrive emulator, through the default mapping."""

from __future__ import annotations

import re
import time
from pathlib import Path

from conftest import TOKEN, write_config
from pipedrive_emulator import PipedriveEmulator
from sqlalchemy import delete

from syncer.config import load_config
from syncer.db import create_db_engine
from syncer.engine import Sync
from syncer.retry import RetryPolicy
from syncer.store.schema import memberships, users

N_ACCOUNTS, N_USERS = 11, 14


def _remove_user(sync: Sync, user_id: str) -> None:
    """The user leaves the product: gone from the store with their memberships."""
    engine = create_db_engine(str(sync.config.store))
    with engine.begin() as conn:
        conn.execute(delete(memberships).where(memberships.c.user_id == user_id))
        conn.execute(delete(users).where(users.c.user_id == user_id))
    engine.dispose()


def _writes(pipedrive: PipedriveEmulator, prefix: str) -> list[str]:
    return [f"{e.method} {e.path}" for e in pipedrive.write_requests() if e.path.startswith(prefix)]


def test_a_first_sync_lands_every_record_with_its_custom_fields_and_organization(
    sync: Sync, pipedrive: PipedriveEmulator
) -> None:
    report = sync.run("pipedrive")
    assert report.status == "succeeded", report.objects
    orgs = pipedrive.by_field("organizations", "syncer_account_id")
    persons = pipedrive.by_field("persons", "syncer_user_id")
    assert (len(orgs), len(persons)) == (N_ACCOUNTS, N_USERS)
    # Custom fields were created with generated 40-character keys, and values landed by key.
    code = pipedrive.field_code("persons", "syncer_accounts")
    assert re.fullmatch(r"[0-9a-f]{40}", code)
    ada = persons["u01"]
    assert ada["name"] == "Ada Lovelace"
    assert ada["emails"] == [{"value": "ada@acme.example", "primary": True, "label": "work"}]
    assert ada["custom_fields"][code] == ";acmexcus;zxyzzxmql;"  # x in XYZ is escaped: zx
    # Numbers go as numbers (v2 refuses "100"), dates as YYYY-MM-DD.
    acme = orgs["ACME"]["custom_fields"]
    assert acme[pipedrive.field_code("organizations", "syncer_licenses")] == 100
    assert acme[pipedrive.field_code("organizations", "syncer_renewal_date")] == "2025-03-31"
    # A person is linked to its primary account's organization; no account, no organization.
    assert ada["org_id"] == orgs["ACME"]["id"]
    assert persons["u07"]["org_id"] is None
    # One create per record, after one search each: 2 requests per record on a first run.
    assert len(_writes(pipedrive, "/api/v2/organizations")) == N_ACCOUNTS
    assert len(_writes(pipedrive, "/api/v2/persons")) == N_USERS
    searches = pipedrive.requests(path_contains="/search")
    assert len(searches) == N_ACCOUNTS + N_USERS


def test_a_no_change_rerun_sends_nothing(sync: Sync, pipedrive: PipedriveEmulator) -> None:
    sync.run("pipedrive")
    pipedrive.reset_log()
    again = sync.run("pipedrive")
    assert again.status == "succeeded"
    assert pipedrive.write_requests() == []
    # Only the preflight's credentials check and ensure's field lists (one GET per object).
    assert [e.path for e in pipedrive.requests()] == [
        "/v1/users/me",
        "/api/v2/organizationFields",
        "/api/v2/personFields",
    ]
    # The rerun read nothing (no change in the store's feed); a full one compares every record
    # and still finds nothing to send.
    assert again.mode == "incremental"
    assert again.totals()["unchanged"] == 0
    full = sync.run("pipedrive", full=True)
    assert full.totals()["unchanged"] == N_ACCOUNTS + N_USERS
    assert pipedrive.write_requests() == []


def test_a_refused_record_is_rejected_alone_and_sent_again_next_run(
    sync: Sync, pipedrive: PipedriveEmulator
) -> None:
    pipedrive.inject_status(400, path_prefix="/api/v2/persons", method="POST", count=1, after=2)
    report = sync.run("pipedrive")
    persons = next(o for o in report.objects if o.object == "persons")
    assert report.status == "partial"
    [(key, reason)] = persons.errors
    assert "HTTP 400" in reason
    assert "Injected 400" in reason  # Pipedrive's own message is kept
    landed = pipedrive.by_field("persons", "syncer_user_id")
    assert key not in landed
    assert len(landed) == N_USERS - 1
    pipedrive.reset_log()
    assert sync.run("pipedrive").status == "succeeded"
    assert _writes(pipedrive, "/api/v2/persons") == ["POST /api/v2/persons"]
    assert key in pipedrive.by_field("persons", "syncer_user_id")


def test_a_429_is_retried_after_retry_after(sync: Sync, pipedrive: PipedriveEmulator) -> None:
    rule = pipedrive.inject_status(429, path_prefix="/api/v2/organizations", method="POST", count=1)
    started = time.monotonic()
    report = sync.run("pipedrive")
    assert report.status == "succeeded"
    assert rule.fired == 1
    assert sum(o.retries for o in report.objects) == 1
    assert time.monotonic() - started >= 1.0  # the emulator's Retry-After: 1
    assert len(pipedrive.by_field("organizations", "syncer_account_id")) == N_ACCOUNTS


def _sync_then_remove(
    directory: Path, pipedrive: PipedriveEmulator, removal: str, user: str
) -> None:
    """A first sync with ``removal``, then ``user`` leaves the product and a second sync runs
    (the log holds only the second run)."""
    config = load_config(write_config(directory, pipedrive.url, f"    removal: {removal}\n"))
    with Sync(config, environ={"PD_TOKEN": TOKEN}, retry=RetryPolicy.no_wait()) as sync:
        sync.run("pipedrive")
        _remove_user(sync, user)
        pipedrive.reset_log()
        assert sync.run("pipedrive").status == "succeeded"


def test_an_archived_user_is_deleted_in_pipedrive(
    tmp_path: Path, pipedrive: PipedriveEmulator
) -> None:
    _sync_then_remove(tmp_path, pipedrive, "archive", "u07")
    [delete_request] = _writes(pipedrive, "/api/v2/persons")
    gone = pipedrive.records["persons"][int(delete_request.rsplit("/", 1)[1])]
    assert gone["is_deleted"]
    assert gone["custom_fields"][pipedrive.field_code("persons", "syncer_user_id")] == "u07"


def test_a_cleared_user_keeps_name_and_email_but_loses_syncer_fields(
    tmp_path: Path, pipedrive: PipedriveEmulator
) -> None:
    _sync_then_remove(tmp_path, pipedrive, "clear", "u01")
    ada = pipedrive.by_field("persons", "syncer_user_id")["u01"]
    assert _writes(pipedrive, "/api/v2/persons") == [f"PATCH /api/v2/persons/{ada['id']}"]
    assert ada["name"] == "Ada Lovelace"
    assert ada["emails"][0]["value"] == "ada@acme.example"
    assert ada["custom_fields"][pipedrive.field_code("persons", "syncer_accounts")] is None


def test_a_clear_leaves_the_name_pipedrive_requires_out_of_the_changes(
    tmp_path: Path, pipedrive: PipedriveEmulator
) -> None:
    """Pipedrive requires a name (docs/api-fidelity.md): the plan of a clear keeps it as it was
    and does not send it, instead of handing the connector a null to drop."""
    config = load_config(write_config(tmp_path, pipedrive.url, "    removal: clear\n"))
    with Sync(config, environ={"PD_TOKEN": TOKEN}, retry=RetryPolicy.no_wait()) as sync:
        sync.run("pipedrive")
        _remove_user(sync, "u01")
        dest = sync.destination("pipedrive")
        [persons] = [o for o in dest.mapping.objects if o.name == "persons"]
        [change] = [c for c in sync.changes(dest, persons) if c.key == "u01"]
    assert change.action == "remove"
    assert "name" not in change.changes
    assert change.payload["name"] == "Ada Lovelace"
    assert change.changes["syncer_accounts"] is None  # the syncer fields are cleared
