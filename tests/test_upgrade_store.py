"""Schema version 3: on SQLite, memberships by account through a covering index (and the
members' names by user through another), and the upgrade of a version-2 store to it by
``syncer init`` (in place, nothing else touched, nothing re-sent)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from crm_configs import load_examples, upgraded
from sqlalchemy import inspect, text, update
from sqlalchemy.engine import Engine

from syncer.errors import ConfigError
from syncer.store.database import init_store, open_store
from syncer.store.feed import changes_since, current_position
from syncer.store.readers import _account_members_query, iter_accounts
from syncer.store.schema import (
    MEMBERS_BY_ACCOUNT,
    MEMBERS_BY_ACCOUNT_KEYS,
    STORE_SCHEMA_VERSION,
    USER_NAMES,
    accounts,
    memberships,
    store_version,
    users,
)

OLD_INDEX = MEMBERS_BY_ACCOUNT_KEYS  # version 2's, kept on PostgreSQL


@pytest.fixture
def store(db_url: str) -> Iterator[Engine]:
    engine = open_store(load_examples(db_url))
    try:
        yield engine
    finally:
        engine.dispose()


def _indexes(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        found = inspect(conn)
        return {str(i["name"]) for t in (memberships, users) for i in found.get_indexes(t.name)}


def _expected(engine: Engine) -> set[str]:
    """SQLite: the covering indexes. PostgreSQL: the index of the two keys, as at version 2
    (a covering index could refuse long multi-byte rows: test_postgres_keeps_long_rows)."""
    return {MEMBERS_BY_ACCOUNT, USER_NAMES} if engine.dialect.name == "sqlite" else {OLD_INDEX}


def _replaced(engine: Engine) -> set[str]:
    return {OLD_INDEX} if engine.dialect.name == "sqlite" else {MEMBERS_BY_ACCOUNT, USER_NAMES}


def _make_version_2(engine: Engine) -> None:
    """Turn a store into what syncer's version-2 schema looked like: memberships by account
    through an index of the two keys only."""
    with engine.begin() as conn:
        conn.execute(text(f"DROP INDEX IF EXISTS {MEMBERS_BY_ACCOUNT}"))
        conn.execute(text(f"DROP INDEX IF EXISTS {USER_NAMES}"))
        conn.execute(
            text(f"CREATE INDEX IF NOT EXISTS {OLD_INDEX} ON memberships (account_id, user_id)")
        )
        conn.execute(update(store_version).values(version=2))


def test_a_new_store_reads_members_by_account_through_covering_indexes(store: Engine) -> None:
    assert STORE_SCHEMA_VERSION == 3
    assert _expected(store) <= _indexes(store)
    assert not _replaced(store) & _indexes(store)
    if store.dialect.name == "sqlite":
        with store.connect() as conn:
            query = str(_account_members_query(conn).compile(conn))
            steps = [str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}")]
        assert any(f"COVERING INDEX {MEMBERS_BY_ACCOUNT}" in s for s in steps), steps
        assert any(f"COVERING INDEX {USER_NAMES}" in s for s in steps), steps


def test_init_upgrades_a_version_2_store_in_place(store: Engine, db_url: str) -> None:
    before = list(iter_accounts(store))
    position = current_position(store)
    _make_version_2(store)
    store.dispose()
    engine = upgraded(db_url, 2)
    try:
        assert _expected(engine) <= _indexes(engine)
        assert not _replaced(engine) & _indexes(engine)
        assert list(iter_accounts(engine)) == before  # the same records, member for member
        # Nothing was stamped: a destination's feed position still sees no change.
        assert current_position(engine) == position
        assert not changes_since(engine, position).users
        init_store(db_url).dispose()  # idempotent
        assert _expected(engine) <= _indexes(engine)
    finally:
        engine.dispose()


def test_store_commands_ask_for_the_upgrade_and_init_does_it(store: Engine, db_url: str) -> None:
    from typer.testing import CliRunner

    from syncer.cli import app

    _make_version_2(store)
    store.dispose()
    runner = CliRunner()
    refused = runner.invoke(app, ["store", "stats", "--store", db_url])
    assert isinstance(refused.exception, ConfigError)  # the CLI prints it as "error: ..."
    message = str(refused.exception)
    assert "schema version 2" in message
    assert "syncer init" in message
    assert "indexes that make reading accounts faster" in message
    assert runner.invoke(app, ["init", "--store", db_url]).exit_code == 0
    assert runner.invoke(app, ["store", "stats", "--store", db_url]).exit_code == 0


def test_postgres_keeps_long_rows(store: Engine) -> None:
    """Keys and a role at their declared lengths in 4-byte UTF-8 (3,104 bytes together): a
    row PostgreSQL's B-tree would refuse in a covering index (2,704 bytes at most) loads."""
    # Distinct characters: PostgreSQL compresses a repetitive index entry below the limit.
    long = "".join(chr(0x20000 + 157 * i) for i in range(255))
    user_id, account_id = "u" + long[1:], "a" + long[1:]
    with store.begin() as conn:
        conn.execute(users.insert().values(user_id=user_id, attributes={}))
        conn.execute(accounts.insert().values(account_id=account_id, attributes={}))
        conn.execute(memberships.insert().values(user_id=user_id, account_id=account_id, role=long))
    (found,) = [a for a in iter_accounts(store) if a.account.account_id == account_id]
    assert [m.membership.role for m in found.members] == [long]
