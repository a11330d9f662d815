"""Properties of the policies over arbitrary inputs (hypothesis)."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from syncer.model import (
    DEFAULT_LADDER,
    MEMBERSHIP_MARK,
    PRIMARY_MARK,
    Account,
    AccountWithMembers,
    Mark,
    MemberRow,
    Membership,
    User,
    UserWithMemberships,
)
from syncer.policies import (
    PRIMARY_POLICIES,
    PolicySettings,
    Resolver,
    UserStage,
    choose_primary,
    resolve_user_stage,
)
from syncer.policies.hierarchy import Hierarchy

NOW = datetime(2024, 5, 1, tzinfo=UTC)
STAGES = (*DEFAULT_LADDER.names, DEFAULT_LADDER.churned)
ACCOUNTS = ("A", "B", "C", "D")
RANK = {name: i for i, name in enumerate(DEFAULT_LADDER.names)}

# A snapshot of the store for one user: account → stage, for the memberships present.
snapshots = st.dictionaries(st.sampled_from(ACCOUNTS), st.sampled_from(STAGES), max_size=4)


# The user's own lead stage in that snapshot (never the churn marker: a churned lead is the one
# documented way down without a membership, tested in test_policy_stage.py).
leads = st.one_of(st.none(), st.sampled_from(DEFAULT_LADDER.names))


def _resolve(
    snapshot: dict[str, str], marks: tuple[Mark, ...], lead: str | None = None
) -> UserStage:
    rows = [Membership("u1", a, stage=s) for a, s in snapshot.items()]
    return resolve_user_stage(User("u1", lead_stage=lead), rows, marks, DEFAULT_LADDER, now=NOW)


@settings(max_examples=200, deadline=None)
@given(st.lists(snapshots, min_size=1, max_size=8))
def test_the_stage_never_falls_below_an_active_membership_mark(steps: list[dict[str, str]]) -> None:
    marks: tuple[Mark, ...] = ()
    for snapshot in steps:
        result = _resolve(snapshot, marks)
        marks = result.marks
        active = [
            m.stage
            for m in marks
            if m.subject == MEMBERSHIP_MARK and not m.churned and m.stage is not None
        ]
        if active:
            assert not result.churned
            assert RANK[result.stage] >= max(RANK[s] for s in active)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(snapshots, leads), min_size=2, max_size=8))
def test_the_stage_goes_down_only_when_a_membership_churned_or_left(
    steps: list[tuple[dict[str, str], str | None]],
) -> None:
    marks: tuple[Mark, ...] = ()
    previous: dict[str, str] | None = None
    before: str | None = None
    for snapshot, lead in steps:
        result = _resolve(snapshot, marks, lead)
        marks = result.marks
        if previous is not None and before is not None:
            dropped = (
                result.stage == DEFAULT_LADDER.churned and before != DEFAULT_LADDER.churned
            ) or (result.stage in RANK and before in RANK and RANK[result.stage] < RANK[before])
            if dropped:
                churned = DEFAULT_LADDER.churned
                churned_or_left = any(a not in snapshot for a in previous) or any(
                    s == churned and previous.get(a) != churned for a, s in snapshot.items()
                )
                assert churned_or_left, (previous, snapshot, before, result.stage)
        previous, before = snapshot, result.stage


@settings(max_examples=150, deadline=None)
@given(st.lists(snapshots, min_size=1, max_size=4), snapshots, st.randoms())
def test_the_result_does_not_depend_on_row_order(
    history: list[dict[str, str]], snapshot: dict[str, str], rnd: random.Random
) -> None:
    marks: tuple[Mark, ...] = ()
    for earlier in history:  # marks from earlier runs, so the order of marks is shuffled too
        marks = _resolve(earlier, marks).marks
    rows = [Membership("u1", a, stage=s) for a, s in snapshot.items()]
    shuffled_rows, shuffled_marks = rows[:], list(marks)
    rnd.shuffle(shuffled_rows)
    rnd.shuffle(shuffled_marks)
    one = resolve_user_stage(User("u1"), rows, marks, DEFAULT_LADDER, now=NOW)
    two = resolve_user_stage(User("u1"), shuffled_rows, shuffled_marks, DEFAULT_LADDER, now=NOW)
    assert (one.stage, one.rule, one.memberships, set(one.marks), set(one.changed)) == (
        two.stage,
        two.rule,
        two.memberships,
        set(two.marks),
        set(two.changed),
    )


@st.composite
def forests(draw: st.DrawFn) -> list[Account]:
    n = draw(st.integers(1, 25))
    accounts = []
    for i in range(n):
        parent = draw(st.one_of(st.none(), st.integers(0, i - 1))) if i else None
        licenses = draw(st.one_of(st.none(), st.integers(0, 1000)))
        attrs = {} if licenses is None else {"licenses": licenses}
        accounts.append(
            Account(
                f"a{i}",
                parent_account_id=None if parent is None else f"a{parent}",
                attributes=attrs,
            )
        )
    return accounts


AGGREGATE = {"sum": sum, "min": min, "max": max}


@settings(max_examples=150, deadline=None)
@given(forests(), st.sampled_from(["sum", "min", "max", "count"]), st.randoms())
def test_a_rollup_equals_the_aggregate_over_the_subtree(
    accounts: list[Account], aggregate: str, rnd: random.Random
) -> None:
    shuffled = accounts[:]
    rnd.shuffle(shuffled)  # input order must not matter either
    tree = Hierarchy.from_accounts(shuffled, {"licenses": aggregate})
    parent = {a.account_id: a.parent_account_id for a in accounts}

    def in_subtree(node: str, root: str) -> bool:
        cur: str | None = node
        while cur is not None:
            if cur == root:
                return True
            cur = parent[cur]
        return False

    for root in parent:
        values = [
            a.attributes["licenses"]
            for a in accounts
            if "licenses" in a.attributes and in_subtree(a.account_id, root)
        ]
        got = tree.rollups(root).get("licenses")
        if aggregate == "count":
            assert got == len(values)
        elif values:
            assert got == AGGREGATE[aggregate](values)
        else:
            assert got is None


# Join dates for the primary policies' tie-breaks: some equal, some missing.
joins = st.one_of(st.none(), st.sampled_from([datetime(2023, m, 1, tzinfo=UTC) for m in (1, 2)]))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(snapshots, min_size=1, max_size=4),
    st.dictionaries(st.sampled_from(ACCOUNTS), joins, min_size=4),
    leads,
    st.sampled_from(PRIMARY_POLICIES),
)
def test_the_resolver_agrees_with_the_rules_applied_one_by_one(
    steps: list[dict[str, str]],
    joined: dict[str, datetime | None],
    lead: str | None,
    policy: str,
) -> None:
    # Resolver.resolve_user runs the policies on a path of its own (no UserStage, the primary
    # flagged in place): it must say what resolve_user_stage and choose_primary say.
    tree = Hierarchy.from_accounts([Account(a, name=f"Co {a}") for a in ACCOUNTS])
    resolver = Resolver(PolicySettings(primary=policy), tree, now=NOW)
    marks: list[Mark] = []
    for snapshot in steps:
        rows = [Membership("u1", a, stage=s, joined_at=joined[a]) for a, s in snapshot.items()]
        user = User("u1", lead_stage=lead)
        got, changed = resolver.resolve_user(UserWithMemberships(user, tuple(rows)), marks)
        alone = resolve_user_stage(user, rows, marks, DEFAULT_LADDER, accounts=tree.info, now=NOW)
        previous = min(
            (m.account_id for m in marks if m.subject == PRIMARY_MARK and not m.churned),
            default=None,
        )
        primary, why = choose_primary(alone.memberships, policy, DEFAULT_LADDER, previous=previous)
        assert (got.stage, got.rule, got.churned) == (alone.stage, alone.rule, alone.churned)
        assert (got.primary_account_id, got.primary_rule) == (primary, why)
        assert [m.primary for m in got.memberships] == [
            m.account_id == primary for m in alone.memberships
        ]
        assert [dataclasses.replace(m, primary=False) for m in got.memberships] == list(
            alone.memberships
        )
        assert set(alone.changed) <= set(changed)
        # The next run starts from this run's marks, as MarkStore would give them back.
        kept = {(m.subject, m.account_id): m for m in marks}
        kept.update({(m.subject, m.account_id): m for m in changed})
        marks = sorted(kept.values(), key=lambda m: (m.account_id, m.subject))


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["u1", "u2", "u3", "u10", "u4"]),
        st.one_of(st.none(), st.sampled_from(STAGES)),
        max_size=5,
    ),
    st.randoms(),
)
def test_an_accounts_members_are_best_stage_first_then_user_id_in_any_row_order(
    stages: dict[str, str | None], rnd: random.Random
) -> None:
    # The store reads members in user_id order and the resolver sorts them cheaply while they
    # come so: any other order must give the same members.
    rows = [
        MemberRow(Membership(u, "A", stage=s), f"{u}@x.example", None, None)
        for u, s in stages.items()
    ]
    rnd.shuffle(rows)
    tree = Hierarchy.from_accounts([Account("A")])
    resolver = Resolver(PolicySettings(), tree, now=NOW)
    got, _ = resolver.resolve_account(AccountWithMembers(Account("A"), tuple(rows)), [])
    active = {u: s or DEFAULT_LADDER.lowest for u, s in stages.items() if s != "churned"}
    expected = sorted(active, key=lambda u: (-RANK[active[u]], u))
    assert [(m.user_id, m.stage, m.mark) for m in got.members] == [
        (u, active[u], active[u]) for u in expected
    ]
