"""``syncer store delete``: users, accounts and memberships leave the store by key, in one
transaction, refused whole for a key that does not exist; the next run clears or archives them
in the destination as its ``removal`` setting says."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from syncer.cli import app
from syncer.cli.app import console
from syncer.db import create_db_engine
from syncer.errors import BadInputError
from syncer.store.readers import read_account, read_user
from syncer.store.removal import DeleteKeys, delete_records, keys_from_file, parse_membership
from syncer.store.schema import identities, memberships, metadata
from syncer.testing.memory import MemoryConnector, MemoryStore

if TYPE_CHECKING:
    from syncer.engine import Sync

runner = CliRunner()


@pytest.fixture
def store(store_url: str) -> Iterator[Engine]:
    engine = create_db_engine(store_url)
    yield engine
    engine.dispose()


def _snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {
            name: sorted(tuple(map(repr, row)) for row in conn.execute(select(table)))
            for name, table in metadata.tables.items()
        }


def test_a_user_an_account_and_a_membership_are_deleted_with_what_hangs_on_them(
    store: Engine,
) -> None:
    report = delete_records(store, DeleteKeys(["u01"], ["HOOLI"], [("u02", "ACME-US")]))
    # u01: 2 memberships and its hubspot id; HOOLI: members u06 and u12; u02 leaves ACME-US.
    assert report == {"users": 1, "accounts": 1, "memberships": 5, "identities": 1}
    assert read_user(store, "u01") is None
    assert read_account(store, "HOOLI") is None
    u02 = read_user(store, "u02")
    assert u02 is not None
    assert [m.account_id for m in u02.memberships] == ["ACME", "ACME-EU-RD"]
    with store.connect() as conn:
        left = set(conn.execute(select(identities.c.entity_id)).scalars())
        members = set(conn.execute(select(memberships.c.account_id)).scalars())
    assert "u01" not in left
    assert "HOOLI" not in members


def test_unknown_keys_refuse_the_whole_delete_naming_each(store: Engine) -> None:
    before = _snapshot(store)
    with pytest.raises(BadInputError) as caught:
        delete_records(
            store,
            DeleteKeys(["u01", "nobody"], ["GHOST"], [("u01", "ACME"), ("u03", "HOOLI")]),
        )
    text = str(caught.value)
    assert "nothing was deleted" in text
    assert "no user 'nobody' in the store" in text
    assert "no account 'GHOST' in the store" in text
    assert "no membership of user 'u03' in account 'HOOLI'" in text
    assert len(caught.value.problems) == 3
    assert _snapshot(store) == before


def test_an_account_with_children_is_refused_unless_they_go_too(store: Engine) -> None:
    with pytest.raises(
        BadInputError, match=r"account 'ACME' is the parent of 'ACME-EU', 'ACME-US'"
    ):
        delete_records(store, DeleteKeys([], ["ACME"], []))
    family = ["ACME", "ACME-EU", "ACME-EU-RD", "ACME-US"]
    report = delete_records(store, DeleteKeys([], family, []))
    assert report["accounts"] == 4


def test_keys_from_a_file_and_the_membership_flag(tmp_path: Path) -> None:
    path = tmp_path / "gone.csv"
    path.write_text("user_id,account_id\nu1,\n,A\nu2,B\n", encoding="utf-8")
    keys = keys_from_file(path)
    assert (keys.users, keys.accounts, keys.memberships) == (["u1"], ["A"], [("u2", "B")])
    assert parse_membership(" u1 : A ") == ("u1", "A")
    with pytest.raises(BadInputError, match="is not USER_ID:ACCOUNT_ID"):
        parse_membership("u1")
    bad = tmp_path / "bad.csv"
    bad.write_text("user,account\nu1,A\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="expected user_id and/or account_id"):
        keys_from_file(bad)


def test_syncer_store_delete(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "width", 200)
    keys = tmp_path / "gone.csv"
    keys.write_text("user_id,account_id\nu05,\n", encoding="utf-8")
    done = runner.invoke(
        app,
        [
            "store",
            "delete",
            "--store",
            store_url,
            "--user",
            "u07",
            "--from",
            str(keys),
            "--membership",
            "u01:XYZ",
        ],
    )
    assert done.exit_code == 0, done.output
    out = " ".join(done.output.split())
    assert "deleted 2 users, 0 accounts," in out
    assert "the next `syncer run` clears or archives them" in out
    again = runner.invoke(app, ["store", "delete", "--store", store_url, "--user", "u07"])
    assert again.exit_code != 0
    assert "no user 'u07' in the store" in str(again.exception)
    nothing = runner.invoke(app, ["store", "delete", "--store", store_url])
    assert nothing.exit_code != 0
    assert "nothing to delete" in str(nothing.exception)


@pytest.mark.parametrize("removal", ["clear", "archive"])
def test_the_next_run_removes_what_was_deleted_as_removal_says(
    store_url: str, memory_sync: Callable[..., Sync], removal: str
) -> None:
    dest = MemoryStore()
    with memory_sync(removal=removal) as sync:
        sync.run("crm", connector=MemoryConnector(store=dest))
        engine = create_db_engine(store_url)
        delete_records(engine, DeleteKeys(["u07"], ["HOOLI"], [("u01", "XYZ")]))
        engine.dispose()
        report = sync.run("crm", connector=MemoryConnector(store=dest))
        counts = {o.object: o.counts.remove for o in report.objects}
        assert counts == {"companies": 1, "contacts": 1}
        assert sync.plan("crm").totals()["remove"] == 0  # removed once, not at every run
    contact = dest.records["contacts"]["u07"]
    company = dest.records["companies"]["HOOLI"]
    if removal == "archive":
        assert contact.archived
        assert company.archived
    else:
        assert not contact.archived
        assert contact.fields.get("email") in (None, "")
        assert company.fields.get("name") in (None, "")
    assert report.links is not None
    assert report.links.removed >= 1  # u01's association with XYZ, made by syncer, is gone
