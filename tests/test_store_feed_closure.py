"""The closure of a change: exactly the users and accounts whose resolved records it can alter,
on small hand-built stores (SQLite and PostgreSQL)."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from syncer.db import is_postgres
from syncer.policies.hierarchy import Hierarchy
from syncer.store.closure import Closure, affected, read_forest
from syncer.store.feed import changes_since, current_position
from syncer.store.keys import RowsRead
from syncer.store.readers import iter_all_accounts
from syncer.store.triggers import MEMBER_COLUMNS, drop_feed, install_feed

# R1 ── A ── A1          R2 ── B          C (alone)
ACCOUNTS = [("R1", None), ("A", "R1"), ("A1", "A"), ("R2", None), ("B", "R2"), ("C", None)]
# u1 is a member of A, B and C; u2 of A1; u3 of C; u4 of R1.
MEMBERSHIPS = [("u1", "A"), ("u1", "B"), ("u1", "C"), ("u2", "A1"), ("u3", "C"), ("u4", "R1")]


@pytest.fixture
def store(db_url: str) -> Iterator[Engine]:
    from syncer.store.database import init_store

    engine = init_store(db_url)
    with engine.begin() as conn:
        for aid, parent in ACCOUNTS:
            conn.execute(
                text(
                    "INSERT INTO accounts (account_id, name, parent_account_id, attributes) "
                    "VALUES (:a, :a, :p, '{}')"
                ),
                {"a": aid, "p": parent},
            )
        for uid in sorted({u for u, _ in MEMBERSHIPS}):
            conn.execute(
                text("INSERT INTO users (user_id, email, attributes) VALUES (:u, :e, '{}')"),
                {"u": uid, "e": f"{uid}@x.example"},
            )
        for uid, aid in MEMBERSHIPS:
            conn.execute(
                text("INSERT INTO memberships (user_id, account_id) VALUES (:u, :a)"),
                {"u": uid, "a": aid},
            )
    try:
        yield engine
    finally:
        engine.dispose()


def _closure_of(
    engine: Engine,
    *statements: str,
    read: RowsRead | None = None,
    shown: tuple[str, ...] = MEMBER_COLUMNS,
) -> Closure:
    start = current_position(engine)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))
    changes = changes_since(engine, start)
    return affected(engine, changes, member_columns=shown, read=read)


def _ids(closure: Closure) -> tuple[list[str], list[str]]:
    return list(closure.users), list(closure.accounts)


def test_re_parenting_reaches_old_and_new_ancestors_and_the_moved_subtree(store: Engine) -> None:
    users, accounts = _ids(
        _closure_of(store, "UPDATE accounts SET parent_account_id = 'B' WHERE account_id = 'A'")
    )
    # A moved: its old parent chain (R1) loses its roll-ups, the new (B, R2) gains them, and A1
    # under it has new ancestors. C is untouched; A's members see their account's new parent.
    assert accounts == ["A", "A1", "B", "R1", "R2"]
    assert users == ["u1"]


def test_a_user_in_three_accounts_changing_email_reaches_the_three_accounts(
    store: Engine,
) -> None:
    read = RowsRead()
    closure = _closure_of(
        store, "UPDATE users SET email = 'new@x.example' WHERE user_id = 'u1'", read=read
    )
    assert _ids(closure) == (["u1"], ["A", "B", "C"])
    assert read.memberships == 3  # u1's memberships, nothing else


def test_churn_reaches_the_user_and_the_account_only(store: Engine) -> None:
    left = _closure_of(store, "DELETE FROM memberships WHERE user_id = 'u3' AND account_id = 'C'")
    assert _ids(left) == (["u3"], ["C"])
    churned = _closure_of(
        store, "UPDATE memberships SET stage = 'churned' WHERE user_id = 'u2' AND account_id = 'A1'"
    )
    assert _ids(churned) == (["u2"], ["A1"])


def test_an_account_attribute_change_rolls_up_but_does_not_reach_descendants(
    store: Engine,
) -> None:
    closure = _closure_of(
        store, "UPDATE accounts SET attributes = '{\"licenses\": 5}' WHERE account_id = 'A'"
    )
    # A's roll-ups change and so do its ancestors'; A1 (below) inherits nothing from an
    # attribute. A's members see their account's fields (name, stage) in their token lists.
    assert _ids(closure) == (["u1"], ["A", "R1"])


def test_a_deleted_account_reaches_its_old_parent_and_the_children_it_leaves(
    store: Engine,
) -> None:
    users, accounts = _ids(_closure_of(store, "DELETE FROM accounts WHERE account_id = 'A'"))
    # The memberships went with it (cascade): u1 leaves A. A1 is now under a missing parent:
    # rejected, with u2's membership view of A1 unchanged (its own row did not change).
    assert accounts == ["A", "A1", "R1"]
    assert users == ["u1"]


def test_an_account_loaded_after_its_children_reaches_them(store: Engine) -> None:
    with store.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO accounts (account_id, parent_account_id, attributes) "
                "VALUES ('K1', 'K', '{}')"
            )
        )
    # K1 waits for its parent (rejected until K arrives); K's arrival changes K1's ancestors.
    closure = _closure_of(store, "INSERT INTO accounts (account_id, attributes) VALUES ('K', '{}')")
    assert _ids(closure) == ([], ["K", "K1"])


def test_no_change_has_an_empty_closure_and_reads_nothing(store: Engine) -> None:
    read = RowsRead()
    assert _ids(_closure_of(store, read=read)) == ([], [])
    assert read.as_dict() == {"users": 0, "accounts": 0, "memberships": 0}


def test_a_full_change_set_has_no_closure(store: Engine) -> None:
    changes = changes_since(store, current_position(store) + 5)
    with pytest.raises(ValueError, match="full change set"):
        affected(store, changes)


def test_a_change_the_accounts_do_not_show_stays_with_the_user(store: Engine) -> None:
    """The accounts show emails only: a name change reaches the user, an email change its
    accounts too; with names shown, a name change reaches the accounts."""
    name = "UPDATE users SET first_name = 'Ann' WHERE user_id = 'u1'"
    read = RowsRead()
    assert _ids(_closure_of(store, name, shown=("email",), read=read)) == (["u1"], [])
    assert read.memberships == 0  # no account to find
    both = "UPDATE users SET first_name = 'Bo', last_name = 'X' WHERE user_id = 'u1'"
    assert _ids(_closure_of(store, both, shown=("last_name",))) == (["u1"], ["A", "B", "C"])
    email = "UPDATE users SET email = 'e@x.example' WHERE user_id = 'u1'"
    assert _ids(_closure_of(store, email, shown=("email",))) == (["u1"], ["A", "B", "C"])
    assert _ids(_closure_of(store, email.replace("e@", "f@"), shown=())) == (["u1"], [])
    # An attribute (never shown to accounts), then a name and back again: the trigger saw it.
    attr = "UPDATE users SET attributes = '{\"plan\": \"pro\"}' WHERE user_id = 'u1'"
    back = (
        "UPDATE users SET email = 'g@x' WHERE user_id = 'u1'",
        "UPDATE users SET email = 'f@x.example' WHERE user_id = 'u1'",
    )
    assert _ids(_closure_of(store, attr, shown=MEMBER_COLUMNS)) == (["u1"], [])
    assert _ids(_closure_of(store, *back, shown=("email",))) == (["u1"], ["A", "B", "C"])


def test_a_deleted_user_reaches_its_accounts_whatever_they_show(db_url: str) -> None:
    from syncer.store.database import init_store

    engine = init_store(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO accounts (account_id, attributes) VALUES ('A', '{}')"))
        if not is_postgres(engine):
            # A product job on a connection without foreign keys (SQLite's default): a member
            # row may name a user that arrives later, who then shows up in the account.
            import sqlite3

            raw = sqlite3.connect(str(engine.url.database))
            raw.execute("INSERT INTO memberships (user_id, account_id) VALUES ('n', 'A')")
            raw.commit()
            raw.close()
            arrived = "INSERT INTO users (user_id, attributes) VALUES ('n', '{}')"
            assert _ids(_closure_of(engine, arrived, shown=())) == (["n"], ["A"])
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO users (user_id, attributes) VALUES ('d', '{}')"))
            conn.execute(text("INSERT INTO memberships (user_id, account_id) VALUES ('d', 'A')"))
        gone = "DELETE FROM users WHERE user_id = 'd'"
        assert _ids(_closure_of(engine, gone, shown=()))[1] == ["A"]
    finally:
        engine.dispose()


def test_without_the_member_trigger_every_changed_user_reaches_its_accounts(
    store: Engine,
) -> None:
    """A store whose triggers predate the member trigger, and a window reaching back before
    it was installed: the feed cannot tell what changed, so the closure takes it all."""
    name = "UPDATE users SET first_name = 'Ann' WHERE user_id = 'u1'"
    with store.begin() as conn:
        drop_feed(conn)
        install_feed(conn)
        conn.execute(
            text(
                "DROP TRIGGER IF EXISTS syncer_feed_users_shown"
                + (" ON users" if is_postgres(conn) else "")
            )
        )
    assert _ids(_closure_of(store, name, shown=())) == (["u1"], ["A", "B", "C"])
    start = current_position(store)
    with store.begin() as conn:
        install_feed(conn)  # installed inside the window: the marker says so
        conn.execute(text(name.replace("Ann", "Bea")))
    changes = changes_since(store, start)
    assert not changes.members_known
    assert _ids(affected(store, changes, member_columns=())) == (["u1"], ["A", "B", "C"])
    assert changes_since(store, current_position(store)).members_known


def _random_forest(rng: random.Random, n: int) -> list[tuple[str, str | None, int]]:
    """Accounts with parents anywhere (cycles, missing parents) and a number to roll up."""
    ids = [f"a{i:02d}" for i in range(n)]
    out = []
    for aid in ids:
        roll = rng.random()
        parent = None if roll < 0.3 else ("zz" if roll < 0.35 else rng.choice(ids))
        out.append((aid, parent, rng.randrange(0, 10)))
    return out


@pytest.mark.parametrize("seed", range(12))
def test_the_forest_read_for_some_keys_tells_them_what_the_whole_forest_does(
    db_url: str, seed: int
) -> None:
    from syncer.store.database import init_store

    rng = random.Random(seed)
    engine = init_store(db_url)
    try:
        with engine.begin() as conn:
            for aid, parent, n in _random_forest(rng, 30):
                conn.execute(
                    text(
                        "INSERT INTO accounts (account_id, name, parent_account_id, attributes) "
                        "VALUES (:a, :a, :p, :attrs)"
                    ),
                    {"a": aid, "p": parent, "attrs": f'{{"n": {n}}}'},
                )
            conn.execute(text("INSERT INTO users (user_id, attributes) VALUES ('u', '{}')"))
            member_of = rng.sample([f"a{i:02d}" for i in range(30)], 3)
            for aid in member_of:
                conn.execute(
                    text("INSERT INTO memberships (user_id, account_id) VALUES ('u', :a)"),
                    {"a": aid},
                )
        whole = Hierarchy.from_accounts(iter_all_accounts(engine), {"n": "sum"})
        wanted = rng.sample([f"a{i:02d}" for i in range(30)], 4)
        for subtrees in (True, False):
            read = RowsRead()
            forest = read_forest(engine, wanted, ["u"], subtrees=subtrees, read=read)
            assert read.accounts >= len(forest)
            part = Hierarchy.from_accounts(forest, {"n": "sum"})
            for aid in wanted:
                assert part.problem(aid) == whole.problem(aid)
                assert part.ancestors(aid) == whole.ancestors(aid)
                assert part.children(aid) == whole.children(aid)
                if subtrees:
                    assert part.rollups(aid) == whole.rollups(aid)
            for aid in member_of:
                assert part.info(aid) == whole.info(aid)
    finally:
        engine.dispose()
