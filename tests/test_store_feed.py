"""The store's change feed: every write path stamps the rows it touches (syncer's loads, Segment
events, identities, deletes, and plain SQL from anyone), deletions leave tombstones until
pruned, and a version-1 store is upgraded in place by ``syncer init``."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from crm_configs import upgraded
from sqlalchemy import select, text, update
from sqlalchemy.engine import Engine

from syncer.errors import ConfigError
from syncer.store.database import init_store
from syncer.store.feed import ChangeSet, changes_since, current_position, prune_tombstones
from syncer.store.keys import KeySet, RowsRead
from syncer.store.loaders import load_paths
from syncer.store.readers import iter_accounts, iter_users
from syncer.store.removal import DeleteKeys, delete_records
from syncer.store.schema import (
    FEED_TABLES,
    store_commits,
    store_feed,
    store_tombstones,
    store_version,
    users,
)
from syncer.store.triggers import drop_feed

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def store(db_url: str, tmp_path: Path) -> Iterator[Engine]:
    engine = init_store(db_url)
    data = tmp_path / "data"
    data.mkdir()
    for name in ("accounts.csv", "users.csv", "memberships.csv", "identities.csv"):
        shutil.copy(EXAMPLES / name, data / name)
    load_paths(engine, [data])
    try:
        yield engine
    finally:
        engine.dispose()


def _sql(engine: Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def _next(engine: Engine, since: int) -> ChangeSet:
    changes = changes_since(engine, since)
    assert changes.position == current_position(engine)
    return changes


def _csv(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def test_a_load_stamps_every_row_and_the_first_read_sees_them_all(store: Engine) -> None:
    with store.connect() as conn:
        for table in FEED_TABLES:
            stamps = conn.execute(select(table.c.change_seq)).scalars().all()
            assert stamps, table.name
            assert all(s is not None and s > 0 for s in stamps), table.name
    everything = _next(store, 0)
    assert not everything.full
    assert "u01" in everything.users
    assert "ACME" in everything.accounts
    assert ("u01", "ACME") in everything.memberships
    assert ("account", "ACME", "hubspot") in everything.identities
    # Every account was inserted in the window: all of them are structural changes.
    assert everything.structural == everything.accounts
    assert not changes_since(store, everything.position)  # the position passed them all


def test_a_second_load_stamps_only_what_it_changed(store: Engine, tmp_path: Path) -> None:
    p = current_position(store)
    # u02's row is given as it is stored: upserted, but unchanged, so not stamped.
    users_csv = _csv(
        tmp_path,
        "users.csv",
        "user_id,email,first_name\nu01,ada@new.example,Ada\nu02,grace@acme.example,Grace\n",
    )
    load_paths(store, [users_csv])
    changes = _next(store, p)
    assert changes.users == ("u01",)
    assert changes.accounts == ()
    assert changes.memberships == ()
    # u01's email changed: a member row says so (its accounts show it), nothing left
    assert [(t.entity, t.key, t.other) for t in changes.tombstones] == [("member", "u01", "email")]
    load_paths(store, [users_csv])  # the same file again writes nothing
    assert not _next(store, changes.position)


def test_memberships_and_identities_loads_stamp_their_rows(store: Engine, tmp_path: Path) -> None:
    p = current_position(store)
    load_paths(
        store,
        [
            _csv(tmp_path, "memberships.csv", "user_id,account_id,stage\nu01,HOOLI,MQL\n"),
            _csv(
                tmp_path,
                "identities.csv",
                "entity,entity_id,system,external_id\nuser,u02,hubspot,777\n",
            ),
        ],
    )
    changes = _next(store, p)
    assert changes.memberships == (("u01", "HOOLI"),)
    assert changes.identities == (("user", "u02", "hubspot"),)
    assert changes.users == ()
    assert changes.accounts == ()


def test_segment_events_stamp_the_user_account_and_membership(
    store: Engine, tmp_path: Path
) -> None:
    p = current_position(store)
    events = tmp_path / "events.jsonl"
    calls = [
        {
            "type": "identify",
            "userId": "u99",
            "timestamp": "2024-04-01T08:00:00Z",
            "traits": {"email": "new@x.example"},
        },
        {
            "type": "group",
            "userId": "u99",
            "groupId": "NEWCO",
            "timestamp": "2024-04-01T08:01:00Z",
            "traits": {"name": "NewCo", "member_stage": "MQL"},
        },
    ]
    events.write_text("".join(json.dumps(c) + "\n" for c in calls), encoding="utf-8")
    load_paths(store, [events])
    changes = _next(store, p)
    assert changes.users == ("u99",)
    assert changes.accounts == ("NEWCO",)
    assert changes.structural == ("NEWCO",)
    assert changes.memberships == (("u99", "NEWCO"),)


def test_a_delete_leaves_tombstones_for_everything_it_removes(store: Engine) -> None:
    p = current_position(store)
    delete_records(store, DeleteKeys(["u01"], ["HOOLI"], [("u02", "ACME-US")]))
    changes = _next(store, p)
    gone = {(t.entity, t.key, t.other) for t in changes.tombstones}
    assert ("user", "u01", None) in gone
    assert ("account", "HOOLI", None) in gone  # a root: no parent to remember
    assert ("membership", "u02", "ACME-US") in gone
    assert {("membership", "u01", "ACME"), ("membership", "u01", "XYZ")} <= gone
    assert ("identity", "u01", "user:hubspot") in gone
    assert changes.users == ()
    assert changes.accounts == ()
    assert all(p < t.change_seq <= changes.position for t in changes.tombstones)


def test_plain_sql_inserts_updates_and_deletes_are_seen(store: Engine) -> None:
    p = current_position(store)
    _sql(
        store,
        "INSERT INTO users (user_id, email, attributes) VALUES ('u77', 'x@y.example', '{}')",
        "INSERT INTO memberships (user_id, account_id, stage) VALUES ('u77', 'ACME', 'MQL')",
        "UPDATE accounts SET name = 'Acme Corporation' WHERE account_id = 'ACME'",
    )
    first = _next(store, p)
    assert first.users == ("u77",)
    assert first.memberships == (("u77", "ACME"),)
    assert first.accounts == ("ACME",)
    assert first.structural == ()
    _sql(
        store,
        "UPDATE accounts SET parent_account_id = 'XYZ' WHERE account_id = 'ACME-EU'",
        "DELETE FROM memberships WHERE user_id = 'u09' AND account_id = 'ACME-EU'",
        "UPDATE users SET user_id = 'u77b' WHERE user_id = 'u77' AND 1 = 0",  # touches nothing
    )
    second = _next(store, first.position)
    assert second.accounts == ("ACME-EU",)
    assert second.structural == ("ACME-EU",)
    gone = {(t.entity, t.key, t.other) for t in second.tombstones}
    assert gone == {("parent", "ACME-EU", "ACME"), ("membership", "u09", "ACME-EU")}


def test_an_update_that_changes_a_key_leaves_a_tombstone_for_the_old_key(store: Engine) -> None:
    _sql(store, "INSERT INTO users (user_id, attributes) VALUES ('lonely', '{}')")
    p = current_position(store)
    _sql(store, "UPDATE users SET user_id = 'lonely2' WHERE user_id = 'lonely'")
    changes = _next(store, p)
    assert changes.users == ("lonely2",)
    assert sorted((t.entity, t.key, t.other) for t in changes.tombstones) == [
        ("member", "lonely2", "*"),  # a new user to the accounts that name it
        ("user", "lonely", None),
    ]


def test_tombstones_stay_until_pruned_below_every_position(store: Engine) -> None:
    p = current_position(store)
    # The member and columns triggers' "installed here" markers.
    assert prune_tombstones(store, p) == 2
    delete_records(store, DeleteKeys(["u05"], [], []))
    after = current_position(store)
    assert prune_tombstones(store, p) == 0  # a destination still at p has not passed them
    assert changes_since(store, p).gone("user")
    pruned = prune_tombstones(store, after)
    assert pruned >= 1
    with store.connect() as conn:
        assert conn.execute(select(store_tombstones)).first() is None


def test_a_position_past_the_feed_asks_for_a_full_read(store: Engine) -> None:
    changes = changes_since(store, current_position(store) + 1000)
    assert changes.full
    assert "restored or re-created" in changes.reason


@pytest.mark.postgres
def test_a_truncate_on_postgresql_asks_for_a_full_read(postgres_url: str) -> None:
    engine = init_store(postgres_url)
    try:
        p = current_position(engine)
        _sql(engine, "TRUNCATE identities")
        changes = changes_since(engine, p)
        assert changes.full
        assert "identities" in changes.reason
    finally:
        engine.dispose()


def test_key_set_readers_read_only_those_keys_in_key_order(store: Engine) -> None:
    read = RowsRead()
    got = list(iter_users(store, keys=KeySet.of(["u03", "u01", "nobody"]), read=read))
    assert [u.user.user_id for u in got] == ["u01", "u03"]
    assert read.users == 2
    assert read.memberships == sum(len(u.memberships) for u in got)
    full = {u.user.user_id: u for u in iter_users(store)}
    assert got == [full["u01"], full["u03"]]  # the same records as a full read
    read = RowsRead()
    accounts = list(iter_accounts(store, keys=KeySet.of(["XYZ", "ACME"]), read=read, chunk_size=1))
    assert [a.account.account_id for a in accounts] == ["ACME", "XYZ"]
    assert read.accounts == 2
    assert read.memberships == sum(len(a.members) for a in accounts)
    assert list(iter_users(store, keys=KeySet())) == []


# --- the upgrade from version 1 -------------------------------------------------------------


def _make_version_1(engine: Engine) -> None:
    """Turn a store into what syncer's version-1 schema looked like: no feed at all."""
    with engine.begin() as conn:
        drop_feed(conn)
        for table in FEED_TABLES:
            conn.execute(text(f"DROP INDEX IF EXISTS ix_{table.name}_change_seq"))
            conn.execute(text(f"ALTER TABLE {table.name} DROP COLUMN change_seq"))
        conn.execute(text("ALTER TABLE accounts DROP COLUMN parent_seq"))
        conn.execute(text(f"DROP TABLE {store_tombstones.name}"))
        conn.execute(text(f"DROP TABLE {store_feed.name}"))
        conn.execute(text(f"DROP TABLE {store_commits.name}"))
        conn.execute(update(store_version).values(version=1))


def test_init_upgrades_a_version_1_store_in_place(store: Engine, db_url: str) -> None:
    before = sorted(u.user.user_id for u in iter_users(store))
    _make_version_1(store)
    store.dispose()
    engine = upgraded(db_url, 1)
    try:
        with engine.connect() as conn:
            assert None not in conn.execute(select(users.c.change_seq)).scalars().all()
        everything = changes_since(engine, 0)
        assert list(everything.users) == before  # existing rows are stamped
        p = current_position(engine)
        _sql(engine, "UPDATE users SET email = 'z@z.example' WHERE user_id = 'u02'")
        assert changes_since(engine, p).users == ("u02",)  # the triggers are in place
        init_store(db_url).dispose()  # idempotent
    finally:
        engine.dispose()


def test_a_store_without_the_feed_counter_is_refused_clearly(sqlite_url: str) -> None:
    engine = init_store(sqlite_url)
    try:
        _sql(engine, f"DELETE FROM {store_feed.name}")
        with pytest.raises(ConfigError, match="syncer init"):
            current_position(engine)
    finally:
        engine.dispose()


def test_a_load_that_moves_an_account_records_its_old_parent(store: Engine, tmp_path: Path) -> None:
    p = current_position(store)
    accounts_csv = _csv(tmp_path, "accounts.csv", "account_id,parent_account_id\nACME-EU,XYZ\n")
    load_paths(store, [accounts_csv])
    changes = _next(store, p)
    assert changes.accounts == ("ACME-EU",)
    assert changes.structural == ("ACME-EU",)
    assert [(t.entity, t.key, t.other) for t in changes.tombstones] == [
        ("parent", "ACME-EU", "ACME")
    ]
    assert all(p < t.change_seq <= changes.position for t in changes.tombstones)
    assert not changes_since(store, changes.position)


def test_a_row_written_with_a_copied_stamp_is_restamped(store: Engine) -> None:
    position = current_position(store)
    with store.connect() as conn:
        old = conn.execute(select(users.c.change_seq).where(users.c.user_id == "u01")).scalar()
    # A product job copying a row, stamp and all (on SQLite the copied value may equal the
    # counter): the triggers restamp it, so a reader already at `position` still sees it.
    _sql(
        store,
        f"INSERT INTO users (user_id, attributes, change_seq) VALUES ('copy', '{{}}', {int(old)})",
        f"UPDATE users SET email = 'e@x.example', change_seq = {position} WHERE user_id = 'u02'",
    )
    assert _next(store, position).users == ("copy", "u02")


def test_member_rows_name_every_column_change_of_a_user(store: Engine) -> None:
    """The email and names by name; any other column as ``+``: only a user whose changes were
    all to the email and names is an own change (its record is made from its row)."""
    p = current_position(store)
    _sql(
        store,
        "UPDATE users SET email = 'new1@example.com' WHERE user_id = 'u01'",
        "UPDATE users SET first_name = 'Two', last_name = 'Too' WHERE user_id = 'u02'",
        "UPDATE users SET email = 'new3@example.com' WHERE user_id = 'u03'",
        "UPDATE users SET lead_stage = 'MQL' WHERE user_id = 'u03'",
        "UPDATE users SET attributes = '{\"plan\": \"pro\"}' WHERE user_id = 'u04'",
        "UPDATE users SET email = email WHERE user_id = 'u05'",  # no change: no row
    )
    changes = _next(store, p)
    assert changes.columns_known
    rows = sorted((t.key, t.other) for t in changes.gone("member"))
    assert rows == [
        ("u01", "email"),
        ("u02", "first_name,last_name"),
        ("u03", "+"),
        ("u03", "email"),
        ("u04", "+"),
    ]
    assert changes.own_changes() == {"u01", "u02"}
    assert changes.shown(["email"]) == {"u01", "u03"}  # "+" is nothing an account shows


def test_a_window_before_the_columns_trigger_cannot_tell_own_changes(store: Engine) -> None:
    """A store whose feed predates the trigger of ``+`` rows: ``syncer init`` installs it with
    a marker, and a window holding the marker tells no own change (a change before it may have
    touched another column unseen)."""
    with store.begin() as conn:
        conn.exec_driver_sql(
            "DROP TRIGGER IF EXISTS syncer_feed_users_other"
            + (" ON users" if store.dialect.name == "postgresql" else "")
        )
    p = current_position(store)
    _sql(
        store, "UPDATE users SET email = 'x1@example.com', lead_stage = 'MQL' WHERE user_id = 'u01'"
    )
    init_store(str(store.url.render_as_string(hide_password=False))).dispose()
    blind = _next(store, p)
    assert not blind.columns_known
    assert blind.own_changes() == set()
    _sql(store, "UPDATE users SET email = 'x2@example.com' WHERE user_id = 'u01'")
    seen = _next(store, blind.position)
    assert seen.columns_known
    assert seen.own_changes() == {"u01"}


def test_a_load_that_changes_a_lead_stage_says_so(store: Engine, tmp_path: Path) -> None:
    """``syncer load``'s upsert fires the ``+`` trigger as plain SQL does: a user whose email
    and lead stage a load changed is not an own change."""
    p = current_position(store)
    users_csv = _csv(
        tmp_path,
        "users.csv",
        "user_id,email,lead_stage\nu01,ada@moved.example,MQL\nu02,grace@moved.example,PRO\n",
    )
    load_paths(store, [users_csv])
    changes = _next(store, p)
    assert sorted((t.key, t.other) for t in changes.gone("member")) == [
        ("u01", "email"),  # its lead stage was MQL already
        ("u02", "+"),
        ("u02", "email"),
    ]
    assert changes.own_changes() == {"u01"}
