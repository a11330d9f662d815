"""The closure of a change: exactly the users and accounts whose resolved records it can alter,
on small hand-built stores (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from syncer.policies.hierarchy import Hierarchy
from syncer.store.closure import Closure, affected
from syncer.store.feed import changes_since, current_position
from syncer.store.keys import RowsRead
from syncer.store.readers import iter_all_accounts

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


def _closure_of(engine: Engine, *statements: str, read: RowsRead | None = None) -> Closure:
    start = current_position(engine)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))
    changes = changes_since(engine, start)
    hierarchy = Hierarchy.from_accounts(iter_all_accounts(engine))
    return affected(engine, changes, hierarchy, read=read)


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
        affected(store, changes, Hierarchy.from_accounts([]))
