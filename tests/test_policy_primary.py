"""The primary-account policy: first, last, highest_stage, sticky, and their tie-breaks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncer.model import DEFAULT_LADDER, ResolvedMembership
from syncer.policies import PRIMARY_POLICIES, choose_primary
from syncer.policies.primary import choose_ranked_primary
from syncer.policies.scale import StageScale


def _m(
    account_id: str, mark: str | None, joined: int | None, *, churned: bool = False
) -> ResolvedMembership:
    joined_at = datetime(2020, 1, joined, tzinfo=UTC) if joined is not None else None
    stage = "churned" if churned else (mark or "visitor")
    return ResolvedMembership(
        account_id, None, None, None, stage, None if churned else mark, churned, joined_at
    )


def _pick(memberships: list[ResolvedMembership], policy: str, previous: str | None = None) -> str:
    chosen, _ = choose_primary(memberships, policy, DEFAULT_LADDER, previous=previous)
    assert chosen is not None
    return chosen


MEMBERSHIPS = [
    _m("B", "MQL", 5),
    _m("A", "CUS", 9),
    _m("C", "CUS", 3),
    _m("D", "PRO", 1, churned=True),
]


def test_first_picks_the_earliest_joined_active_membership() -> None:
    assert _pick(MEMBERSHIPS, "first") == "C"


def test_last_picks_the_latest_joined_active_membership() -> None:
    assert _pick(MEMBERSHIPS, "last") == "A"


def test_highest_stage_picks_the_best_mark_and_breaks_ties_by_earliest_joined() -> None:
    assert _pick(MEMBERSHIPS, "highest_stage") == "C"
    _, why = choose_primary(MEMBERSHIPS, "highest_stage", DEFAULT_LADDER)
    assert (
        why
        == "highest stage: CUS (joined 2020-01-03; 2 accounts at that stage, earliest joined wins)"
    )


def test_churned_memberships_never_become_primary() -> None:
    for policy in PRIMARY_POLICIES:
        assert _pick(MEMBERSHIPS, policy) != "D"


def test_no_active_membership_means_no_primary() -> None:
    churned = [_m("A", None, 1, churned=True)]
    for policy in PRIMARY_POLICIES:
        assert choose_primary(churned, policy, DEFAULT_LADDER, previous="A")[0] is None
    assert choose_primary([], "first", DEFAULT_LADDER)[0] is None


def test_membership_without_join_date_sorts_after_dated_ones() -> None:
    ms = [_m("A", "MQL", None), _m("B", "MQL", 20), _m("C", "MQL", 2)]
    assert _pick(ms, "first") == "C"
    assert _pick(ms, "last") == "B"
    assert _pick(ms, "highest_stage") == "C"


def test_final_tie_break_is_the_smallest_account_id() -> None:
    same_day = [_m("b", "MQL", 4), _m("B", "MQL", 4), _m("a", "MQL", 4)]
    for policy in ("first", "last", "highest_stage", "sticky"):
        assert _pick(same_day, policy) == "B"  # code-point order: "B" < "a" < "b"
    undated = [_m("z", "MQL", None), _m("y", "MQL", None)]
    assert _pick(undated, "first") == _pick(undated, "last") == "y"


def test_sticky_keeps_the_previous_primary_while_it_stays_active() -> None:
    assert _pick(MEMBERSHIPS, "sticky", previous="B") == "B"
    _, why = choose_primary(MEMBERSHIPS, "sticky", DEFAULT_LADDER, previous="B")
    assert why == "sticky: kept the previous primary, still active"


def test_sticky_falls_back_to_highest_stage_when_the_previous_primary_churned() -> None:
    chosen, why = choose_primary(MEMBERSHIPS, "sticky", DEFAULT_LADDER, previous="D")
    assert chosen == "C"
    assert why.startswith("sticky: previous primary D is no longer active; highest stage: CUS")


def test_sticky_without_a_previous_primary_is_highest_stage() -> None:
    assert _pick(MEMBERSHIPS, "sticky") == _pick(MEMBERSHIPS, "highest_stage")


def test_result_does_not_depend_on_membership_order() -> None:
    for policy in PRIMARY_POLICIES:
        assert _pick(MEMBERSHIPS, policy) == _pick(MEMBERSHIPS[::-1], policy)


def test_unknown_policy_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown primary-account policy 'oldest'"):
        choose_primary(MEMBERSHIPS, "oldest", DEFAULT_LADDER)


# --- the search the rank-ordered choice replaced -------------------------------------------------


def _reference(
    memberships: list[ResolvedMembership], policy: str, previous: str | None
) -> tuple[str | None, str]:
    """choose_primary as it was written before the resolver read the best marks off the front
    of its rank-ordered memberships: a search over the active ones, in any order."""
    scale = StageScale(DEFAULT_LADDER)

    def joined(m: ResolvedMembership) -> str:
        j = m.joined_at
        return f"joined {j.date().isoformat()}" if j is not None else "no join date"

    def first(ms: list[ResolvedMembership]) -> ResolvedMembership:
        return min(
            ms, key=lambda m: (m.joined_at is None, m.joined_at or datetime.min, m.account_id)
        )

    def highest(ms: list[ResolvedMembership]) -> tuple[ResolvedMembership, str]:
        ranks = [-1 if m.mark is None else scale.rank(m.mark) for m in ms]
        best = [m for m, r in zip(ms, ranks, strict=True) if r == max(ranks)]
        chosen = first(best)
        ties = (
            f"; {len(best)} accounts at that stage, earliest joined wins" if len(best) > 1 else ""
        )
        return (
            chosen,
            f"highest stage: {chosen.mark} ({joined(chosen)}{ties if len(best) > 1 else ''})",
        )

    active = [m for m in memberships if not m.churned]
    if not active:
        return None, "no active membership, so no primary account"
    if policy == "first":
        chosen = first(active)
        return chosen.account_id, f"first: earliest joined ({joined(chosen)})"
    if policy == "last":
        dated = [m for m in active if m.joined_at is not None]
        if not dated:
            chosen = min(active, key=lambda m: m.account_id)
        else:
            latest = max(m.joined_at for m in dated)  # type: ignore[type-var]
            chosen = min((m for m in dated if m.joined_at == latest), key=lambda m: m.account_id)
        return chosen.account_id, f"last: latest joined ({joined(chosen)})"
    if policy == "sticky" and previous is not None:
        if any(m.account_id == previous for m in active):
            return previous, "sticky: kept the previous primary, still active"
        chosen, why = highest(active)
        return chosen.account_id, f"sticky: previous primary {previous} is no longer active; {why}"
    chosen, why = highest(active)
    prefix = "sticky: no previous primary; " if policy == "sticky" else ""
    return chosen.account_id, prefix + why


# Marks as a resolved membership may hold them, an alias included (ranked like its stage).
_MARKS = st.sampled_from([*DEFAULT_LADDER.names, "customer", None])
_memberships = st.dictionaries(
    st.sampled_from("ABCDEF"),
    st.tuples(_MARKS, st.one_of(st.none(), st.integers(1, 3)), st.booleans()),
    max_size=6,
).map(lambda d: [_m(a, mark, j, churned=c) for a, (mark, j, c) in d.items()])


@settings(max_examples=300, deadline=None)
@given(_memberships, st.sampled_from(PRIMARY_POLICIES), st.sampled_from([None, "A", "C"]))
def test_choose_primary_says_what_the_search_it_replaced_said(
    memberships: list[ResolvedMembership], policy: str, previous: str | None
) -> None:
    expected = _reference(memberships, policy, previous)
    assert choose_primary(memberships, policy, DEFAULT_LADDER, previous=previous) == expected
    # The resolver's path: the same memberships in a ResolvedUser's order.
    scale = StageScale(DEFAULT_LADDER)
    ordered = sorted(
        memberships,
        key=lambda m: (m.churned, -(-1 if m.mark is None else scale.rank(m.mark)), m.account_id),
    )
    assert choose_ranked_primary(ordered, policy, scale, previous=previous) == expected
