"""A reader of the change feed never skips a change committed by a concurrent writer.

PostgreSQL: a writer that stamped rows first but commits last must still be read, after a
reader has already moved past a writer that committed in between. SQLite: writers are
serialised, so stamps are handed out in commit order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from syncer.store.database import init_store
from syncer.store.feed import changes_since, current_position
from syncer.store.schema import users


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[Engine]:
    engine = init_store(postgres_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _insert_user(conn: object, user_id: str) -> None:
    conn.execute(  # type: ignore[attr-defined]
        text("INSERT INTO users (user_id, attributes) VALUES (:u, '{}')"), {"u": user_id}
    )


def _stamp(engine: Engine, user_id: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(select(users.c.change_seq).where(users.c.user_id == user_id)).scalar_one()
        )


@pytest.mark.postgres
def test_a_writer_that_commits_last_is_read_after_a_reader_passed_a_later_one(
    pg_store: Engine,
) -> None:
    start = current_position(pg_store)
    first = pg_store.connect()
    try:
        first.execute(text("SET lock_timeout = '10s'"))
        _insert_user(first, "first")  # stamped now, held open (not committed)
        with pg_store.begin() as second:
            second.execute(text("SET LOCAL lock_timeout = '10s'"))  # it must not wait for first
            _insert_user(second, "second")
        # A reader now: it sees "second" only, and its position must not pass "first".
        seen = changes_since(pg_store, start)
        assert seen.users == ("second",)
        first.commit()
    finally:
        first.close()
    # The hazard is real: "first" holds the lower stamp, so a reader that recorded the highest
    # stamp it saw would never look at "first" again.
    assert _stamp(pg_store, "first") < _stamp(pg_store, "second")
    after = changes_since(pg_store, seen.position)
    assert after.users == ("first",)
    assert after.position > seen.position


@pytest.mark.postgres
def test_a_rolled_back_savepoint_does_not_lose_the_transactions_registration(
    pg_store: Engine,
) -> None:
    start = current_position(pg_store)
    with pg_store.begin() as conn:
        savepoint = conn.begin_nested()
        _insert_user(conn, "gone")
        savepoint.rollback()  # the first stamp, and its registration, roll back together
        _insert_user(conn, "kept")
    assert changes_since(pg_store, start).users == ("kept",)


@pytest.mark.postgres
def test_a_rolled_back_writer_leaves_nothing_and_holds_nothing_back(pg_store: Engine) -> None:
    start = current_position(pg_store)
    with pg_store.connect() as conn:
        _insert_user(conn, "never")
        conn.rollback()
    with pg_store.begin() as conn:
        _insert_user(conn, "later")
    changes = changes_since(pg_store, start)
    assert changes.users == ("later",)
    assert changes.position == current_position(pg_store)


def test_sqlite_writers_are_serialised_so_stamps_follow_commit_order(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    engine = init_store(f"sqlite:///{path}")
    try:
        start = current_position(engine)
        a = sqlite3.connect(path, isolation_level=None, timeout=0)
        b = sqlite3.connect(path, isolation_level=None, timeout=0)
        try:
            a.execute("BEGIN")
            a.execute("INSERT INTO users (user_id, attributes) VALUES ('a', '{}')")
            # A second writer cannot stamp anything while the first is open: it cannot even
            # start writing, so it cannot take a number the first would commit under.
            b.execute("BEGIN")
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                b.execute("INSERT INTO users (user_id, attributes) VALUES ('b', '{}')")
            b.execute("ROLLBACK")
            # A reader meanwhile sees the committed counter: nothing of "a".
            seen = changes_since(engine, start)
            assert seen.users == ()
            a.execute("COMMIT")
            b.execute("INSERT INTO users (user_id, attributes) VALUES ('b', '{}')")
        finally:
            a.close()
            b.close()
        after = changes_since(engine, seen.position)
        assert after.users == ("a", "b")
        assert seen.position < _stamp(engine, "a") < _stamp(engine, "b") <= after.position
    finally:
        engine.dispose()
