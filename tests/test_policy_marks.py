"""The stage policy across runs with its marks kept in the sync-state database (SQLite and
PostgreSQL): each run reads the marks back from the database, never from memory."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from syncer.model import (
    ACCOUNT_MARK,
    DEFAULT_LADDER,
    MEMBERSHIP_MARK,
    Account,
    AccountWithMembers,
    Mark,
    Membership,
    User,
    UserWithMemberships,
)
from syncer.policies import (
    Hierarchy,
    PolicySettings,
    Resolver,
    resolve_account_stage,
    resolve_user_stage,
)
from syncer.state import init_state
from syncer.state.marks import MarkStore, marks_query
from syncer.state.schema import MARKS_BY_ACCOUNT, MARKS_BY_ACCOUNT_DDL
from syncer.store.keys import KeySet

NOW = datetime(2024, 5, 1, tzinfo=UTC)


@pytest.fixture
def marks(db_url: str) -> Iterator[MarkStore]:
    engine = init_state(db_url)
    try:
        yield MarkStore(engine)
    finally:
        engine.dispose()


def _run(marks: MarkStore, *rows: tuple[str, str], user: str = "u1") -> str:
    """One run for one user: marks from the database in, changed marks back to it."""
    memberships = [Membership(user, a, stage=s) for a, s in rows]
    result = resolve_user_stage(
        User(user), memberships, marks.get_user_marks(user), DEFAULT_LADDER, now=NOW
    )
    marks.save(result.changed)
    return result.stage


def _stored(marks: MarkStore, user: str, account: str) -> Mark:
    (found,) = [
        m
        for m in marks.get_user_marks(user)
        if m.subject == MEMBERSHIP_MARK and m.account_id == account
    ]
    return found


def test_worked_example_through_runs_with_marks_in_the_database(marks: MarkStore) -> None:
    assert _run(marks, ("A", "CUS"), ("B", "MQL")) == "CUS"
    assert _run(marks, ("A", "CUS"), ("B", "PRO")) == "PRO"
    assert _run(marks, ("A", "CUS"), ("B", "churned")) == "CUS"
    assert _stored(marks, "u1", "B") == Mark(MEMBERSHIP_MARK, "u1", "B", None, True, NOW)
    assert _run(marks, ("A", "MQL"), ("B", "churned")) == "CUS"
    assert _stored(marks, "u1", "A").stage == "CUS"  # the mark did not follow the correction
    assert _run(marks, ("A", "churned"), ("B", "churned")) == "churned"


def test_a_membership_gone_from_the_store_stays_churned_on_later_runs(marks: MarkStore) -> None:
    assert _run(marks, ("A", "CUS"), ("B", "PRO")) == "PRO"
    assert _run(marks, ("A", "CUS")) == "CUS"  # B left the store: churned
    assert _stored(marks, "u1", "B").churned
    assert _run(marks) == "churned"  # A left too
    assert _run(marks) == "churned"  # and a later run remembers it from the tombstones


def test_a_reactivated_membership_starts_a_new_mark_after_a_restart(marks: MarkStore) -> None:
    _run(marks, ("A", "PRO"))
    _run(marks, ("A", "churned"))
    assert _run(marks, ("A", "MAL")) == "MAL"
    assert _stored(marks, "u1", "A") == Mark(MEMBERSHIP_MARK, "u1", "A", "MAL", False, NOW)


def test_an_account_stage_mark_persists_across_runs(marks: MarkStore) -> None:
    def run(stage: str) -> str:
        (previous,) = [m for m in marks.get_account_marks("X") if m.subject == ACCOUNT_MARK] or [
            None
        ]
        result = resolve_account_stage(Account("X", stage=stage), previous, DEFAULT_LADDER, now=NOW)
        if result.changed:
            marks.save([result.mark])
        return result.stage

    assert [run(s) for s in ("MQL", "PRO", "CUS", "churned", "MAL")] == [
        "MQL",
        "PRO",
        "PRO",
        "churned",
        "MAL",
    ]


def test_the_streaming_resolver_churns_the_live_mark_of_an_account_gone_from_the_store() -> None:
    resolver = Resolver(PolicySettings(), Hierarchy.from_accounts([Account("A")]), now=NOW)
    old = datetime(2024, 1, 1, tzinfo=UTC)
    marks = [
        Mark(ACCOUNT_MARK, "", "A", "CUS", False, old),
        Mark(ACCOUNT_MARK, "", "B", "CUS", False, old),  # B left the store: churned now
        Mark(MEMBERSHIP_MARK, "u1", "B", "CUS", False, old),  # the users' resolution's business
        Mark(ACCOUNT_MARK, "", "C", None, True, old),  # C left churned: nothing to do
    ]
    accounts = [AccountWithMembers(Account("A", stage="CUS"), ())]
    vanished: list[Mark] = []
    out = resolver.resolve_accounts(accounts, marks, on_vanished=vanished.extend)
    assert [resolved.key for resolved, _ in out] == ["A"]
    assert vanished == [Mark(ACCOUNT_MARK, "", "B", None, True, NOW)]
    # Without a sink the gone accounts' marks are passed over.
    assert [r.key for r, _ in resolver.resolve_accounts(accounts, marks)] == ["A"]


def test_the_streaming_resolver_churns_the_marks_of_a_user_gone_from_the_store(
    marks: MarkStore,
) -> None:
    resolver = Resolver(PolicySettings(), Hierarchy.from_accounts([Account("A")]), now=NOW)

    def run(*user_ids: str, stage: str = "CUS") -> dict[str, str]:
        users = [UserWithMemberships(User(u), (Membership(u, "A", stage=stage),)) for u in user_ids]
        vanished: list[Mark] = []
        out: dict[str, str] = {}
        changed: list[Mark] = []
        for resolved, mine in resolver.resolve_users(
            users, marks.iter_marks(), on_vanished=vanished.extend
        ):
            out[resolved.key] = resolved.stage
            changed.extend(mine)
        marks.save([*changed, *vanished])
        return out

    assert run("u1", "u2", "u3") == {"u1": "CUS", "u2": "CUS", "u3": "CUS"}
    assert run("u1", "u3") == {"u1": "CUS", "u3": "CUS"}
    gone = [m for m in marks.get_user_marks("u2") if m.subject == MEMBERSHIP_MARK]
    assert [(m.account_id, m.stage, m.churned) for m in gone] == [("A", None, True)]
    # Deleted and re-created later: starts afresh, not from the old CUS mark.
    assert run("u1", "u2", "u3", stage="MAL") == {"u1": "CUS", "u2": "MAL", "u3": "CUS"}
    assert _stored(marks, "u2", "A").stage == "MAL"


def _indexes(engine: Engine) -> set[str]:
    return {str(i["name"]) for i in inspect(engine).get_indexes("policy_marks")}


def test_an_accounts_marks_are_read_through_an_index_the_first_such_read_builds(
    db_url: str,
) -> None:
    """An incremental run reads a few accounts' marks: by ``ix_policy_marks_by_account``, not a
    scan of every membership mark per chunk of accounts (at 1M users, 2.5M rows a chunk). The
    index is not made with the table (a first run writes a mark per membership): the first read
    of a list of accounts builds it; a read of a key range (a full run) does not need it."""
    engine = init_state(db_url)
    try:
        marks = MarkStore(engine)
        # The widest entry the covering index can get (255-character keys and a 64-character
        # stage, 4-byte UTF-8) stays under PostgreSQL's 2,704-byte limit for an index entry.
        wide = Mark(MEMBERSHIP_MARK, "\U0001d11e" * 255, "\U0001d11f" * 255, "\U0001d120" * 64)
        marks.save(
            [Mark(MEMBERSHIP_MARK, f"u{i}", f"A{i % 7}", "CUS", False, NOW) for i in range(50)]
            + [Mark(ACCOUNT_MARK, "", "A3", "PRO", False, NOW), wide]
        )
        expected = sorted(
            [("A3", "")] + [(f"A{i % 7}", f"u{i}") for i in range(50) if i % 7 in (3, 5)]
        )
        assert MARKS_BY_ACCOUNT not in _indexes(engine)
        everything = list(marks.iter_account_marks())  # a key range: read as it always was
        assert len(everything) == 52
        assert MARKS_BY_ACCOUNT not in _indexes(engine)
        got = list(MarkStore(engine).iter_account_marks(keys=KeySet.of(["A3", "A5"])))
        assert MARKS_BY_ACCOUNT in _indexes(engine)
        assert [(m.account_id, m.user_id) for m in got] == expected
        assert list(marks.iter_account_marks(keys=KeySet.of([wide.account_id]))) == [wide]
        # The marks written after it are in it too (the index is the table's from now on).
        marks.save([Mark(MEMBERSHIP_MARK, "u99", "A5", "MQL", False, NOW)])
        again = MarkStore(engine).iter_account_marks(keys=KeySet.of(["A3", "A5"]))
        assert [(m.account_id, m.user_id) for m in again] == sorted([*expected, ("A5", "u99")])
        if engine.dialect.name == "sqlite":  # the plan searches the index alone: no table, no sort
            with engine.connect() as conn:
                query = marks_query(("account", "membership"), "account_id", conn, indexed=True)
                by = query.selected_columns.account_id
                compiled = query.where(by.in_(["A3", "A5"])).compile(
                    conn, compile_kwargs={"literal_binds": True}
                )
                plan = " ".join(
                    str(r[-1]) for r in conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))
                )
            assert "USING COVERING INDEX ix_policy_marks_by_account (account_id=?)" in plan, plan
            assert "TEMP B-TREE" not in plan, plan
    finally:
        engine.dispose()


def test_the_accounts_marks_are_read_without_the_index_when_it_cannot_be_built(
    db_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A state this process may not change (a read-only role, a read-only file): the marks are
    read without the index, with a warning, not a failed plan."""
    engine = init_state(db_url)
    try:
        MarkStore(engine).save([Mark(MEMBERSHIP_MARK, "u1", "A1", "CUS", False, NOW)])
        refused = OperationalError("CREATE INDEX", {}, Exception("a readonly database"))

        def read_only() -> Any:
            raise refused

        marks = MarkStore(engine)
        monkeypatch.setattr(marks.engine, "begin", read_only)
        with caplog.at_level("WARNING", logger="syncer.state"):
            got = list(marks.iter_account_marks(keys=KeySet.of(["A1"])))
        assert [(m.account_id, m.user_id, m.stage) for m in got] == [("A1", "u1", "CUS")]
        assert "cannot be built" in caplog.text
        assert MARKS_BY_ACCOUNT not in _indexes(engine)
    finally:
        engine.dispose()


def test_a_build_that_loses_the_race_to_another_uses_the_index_that_one_built(
    db_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Two runs build the index at once: the one whose CREATE fails (PostgreSQL's IF NOT EXISTS
    can still fail in a race) finds the index the other built, and reads through it."""
    engine = init_state(db_url)
    try:
        MarkStore(engine).save([Mark(MEMBERSHIP_MARK, "u1", "A1", "CUS", False, NOW)])
        marks = MarkStore(engine)
        original = engine.begin

        def the_other_run_first() -> Any:
            with original() as conn:  # the other run's build commits first
                conn.execute(text(MARKS_BY_ACCOUNT_DDL))
            raise OperationalError("CREATE INDEX", {}, Exception("duplicate key value"))

        monkeypatch.setattr(marks.engine, "begin", the_other_run_first)
        with caplog.at_level("WARNING", logger="syncer.state"):
            got = list(marks.iter_account_marks(keys=KeySet.of(["A1"])))
        assert [(m.account_id, m.user_id) for m in got] == [("A1", "u1")]
        assert marks._by_account is True
        assert "cannot be built" not in caplog.text
    finally:
        engine.dispose()
