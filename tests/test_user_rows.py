"""Contacts made from their rows and last payloads when only the users' emails or names changed
(:mod:`syncer.engine.user_rows`): the same records as a full rebuild, nothing of the forest or
the memberships read for them, and a rebuild whenever that may not hold."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text, update
from test_incremental_property import apply_step
from test_member_tokens import HUBSPOT, _members, syncs

from syncer.engine import Sync
from syncer.mapping import load_mapping
from syncer.mapping.user_row import UserRowFields
from syncer.model import DEFAULT_LADDER
from syncer.store.schema import users
from syncer.testing.memory import MemoryConfig, MemoryConnector, MemoryStore

ROOT = Path(__file__).resolve().parents[1]


def _contacts(mapping: str, tmp_path: Path) -> object:
    path = tmp_path / "mapping.yaml"
    path.write_text(mapping, encoding="utf-8")
    loaded = load_mapping(path, MemoryConnector.objects, DEFAULT_LADDER)
    return next(o for o in loaded.objects if o.name == "contacts")


def _email(sync_engine: object, uid: str, email: str) -> None:
    with sync_engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(update(users).where(users.c.user_id == uid).values(email=email))


def _run(inc: Sync, dest: MemoryStore, **config: object) -> object:
    connector = MemoryConnector(MemoryConfig(**config), store=dest) if config else None
    return inc.run("crm", connector=connector or MemoryConnector(store=dest))


def test_an_email_change_makes_the_contact_from_its_row() -> None:
    dest = MemoryStore()
    with syncs() as (engine, inc, ref):
        _members(engine, "a1", ["CUS", "MQL", "PRO"])
        _members(engine, "a2", ["MAL", "CUS"])
        assert inc.run("crm", connector=MemoryConnector(store=dest)).mode == "full"
        ref.check(dest)
        _email(engine, "u1", "u1@new.example")
        plan = inc.plan("crm")
        assert plan.mode == "incremental"
        # u1's own row; its two memberships (the companies that list it), read once to find
        # them, and kept for their tokens; nothing of the forest.
        assert plan.read["users"] == 1
        assert plan.read["accounts"] == 0
        assert plan.read["memberships"] == 2
        assert plan.totals()["update"] == 3  # u1's contact, a1's and a2's companies
        _run(inc, dest)
        assert dest.records["contacts"]["u1"].fields["email"] == "u1@new.example"
        ref.check(dest)
        # A name too: the contact's first name comes from the row as well.
        with engine.begin() as conn:
            conn.execute(update(users).where(users.c.user_id == "u0").values(first_name="Zoe"))
        names = inc.plan("crm")
        assert (names.read["users"], names.read["accounts"], names.read["memberships"]) == (1, 0, 0)
        _run(inc, dest)
        assert dest.records["contacts"]["u0"].fields["firstname"] == "Zoe"
        ref.check(dest)
        check = MemoryConnector(store=dest)
        assert inc.run("crm", connector=check, full=True).run_counts()["sent"] == 0


def test_another_column_changed_too_rebuilds_the_user() -> None:
    dest = MemoryStore()
    with syncs() as (engine, inc, ref):
        _members(engine, "a1", ["CUS", "MQL"])
        _run(inc, dest)
        with engine.begin() as conn:
            conn.execute(update(users).where(users.c.user_id == "u1").values(email="u1@b.example"))
            conn.execute(update(users).where(users.c.user_id == "u1").values(lead_stage="PRO"))
        plan = inc.plan("crm")
        assert plan.read["accounts"] > 0  # u1 resolved again: its account's part of the forest
        _run(inc, dest)
        ref.check(dest)


def test_a_value_the_formatter_refuses_is_rebuilt_and_refused_as_before() -> None:
    dest = MemoryStore()
    with syncs() as (engine, inc, ref):
        _members(engine, "a1", ["CUS", "MQL"])
        _run(inc, dest)
        _email(engine, "u1", "not an address")
        refused = inc.plan("crm")
        assert refused.totals()["rejected"] == 1
        assert refused.read["accounts"] > 0  # rebuilt: the reference path says why
        _run(inc, dest)
        ref.sync.run("crm", connector=MemoryConnector(store=ref.dest), full=True)
        # The refused contact waits for a retry: the fixed address is sent by a rebuild.
        _email(engine, "u1", "u1@fixed.example")
        plan = inc.plan("crm")
        assert plan.read["accounts"] > 0
        _run(inc, dest)
        ref.check(dest)


def test_a_contact_the_destination_refused_is_rebuilt() -> None:
    dest = MemoryStore()
    with syncs() as (engine, inc, ref):
        _members(engine, "a1", ["CUS", "MQL"])
        _run(inc, dest)
        apply_step(engine, ("member", "u1", "a1", "PRO", 1))
        refused = _run(inc, dest, reject_keys=frozenset({"u1"}))
        assert refused.run_counts()["refused"] == 1  # type: ignore[attr-defined]
        _email(engine, "u1", "u1@after.example")  # u1's stage change was never acknowledged
        plan = inc.plan("crm")
        assert plan.read["accounts"] > 0
        _run(inc, dest)
        assert dest.records["contacts"]["u1"].fields["syncer_stage"] == "PRO"
        ref.check(dest)


def test_a_user_deleted_with_plain_sql_is_removed() -> None:
    dest = MemoryStore()
    with syncs() as (engine, inc, ref):
        _members(engine, "a1", ["CUS", "MQL"])
        _run(inc, dest)
        ref.check(dest)
        _email(engine, "u1", "u1@gone.example")
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM users WHERE user_id = 'u1'"))
        _run(inc, dest)
        ref.check(dest)


def test_which_user_objects_qualify(tmp_path: Path) -> None:
    contacts = _contacts(HUBSPOT, tmp_path)
    # HubSpot reads no hint writing a contact it holds; the email hint reads the row.
    fields = UserRowFields.of(contacts, frozenset())  # type: ignore[arg-type]
    assert fields is not None
    assert [name for name, _ in fields.hints] == ["email"]
    assert len(fields.writers) == 3  # email, firstname, lastname
    # A connector that reads the primary account on every write, or says nothing: rebuilt.
    assert UserRowFields.of(contacts, frozenset({"primary_account_key"})) is None  # type: ignore[arg-type]
    assert UserRowFields.of(contacts, None) is None  # type: ignore[arg-type]
    mixed = HUBSPOT.replace(
        "lastname: user.last_name", "lastname: \"user.last_name ~ ' ' ~ stage\""
    )
    assert mixed != HUBSPOT
    assert UserRowFields.of(_contacts(mixed, tmp_path), frozenset()) is None  # type: ignore[arg-type]
    none_of_the_row = HUBSPOT.replace("      email: {type: email, value: user.email}\n", "")
    none_of_the_row = none_of_the_row.replace("      firstname: user.first_name\n", "")
    none_of_the_row = none_of_the_row.replace("      lastname: user.last_name\n", "")
    bare = _contacts(none_of_the_row, tmp_path)
    assert UserRowFields.of(bare, frozenset()) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("hints", [None, frozenset({"primary_account_key"})])
def test_a_connector_that_reads_other_hints_rebuilds(
    hints: frozenset[str] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    dest = MemoryStore()
    capabilities = replace(MemoryConnector.capabilities, update_hints=hints)
    monkeypatch.setattr(MemoryConnector, "capabilities", capabilities)
    with syncs() as (engine, inc, ref):
        _members(engine, "a1", ["CUS", "MQL"])
        _run(inc, dest)
        _email(engine, "u1", "u1@hinted.example")
        plan = inc.plan("crm")
        assert plan.read["accounts"] > 0  # u1 resolved again
        _run(inc, dest)
        ref.check(dest)
