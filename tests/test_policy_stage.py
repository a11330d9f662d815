"""The monotonic stage policy (DESIGN.md § Policies), rule by rule."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from syncer.errors import BadInputError, UnknownStageError
from syncer.model import (
    ACCOUNT_MARK,
    DEFAULT_LADDER,
    LEAD_MARK,
    MEMBERSHIP_MARK,
    Account,
    Mark,
    Membership,
    StageLadder,
    User,
)
from syncer.policies import UserStage, resolve_account_stage, resolve_user_stage

NOW = datetime(2024, 5, 1, tzinfo=UTC)


class Run:
    """One user resolved run after run, carrying the marks like the sync state would."""

    def __init__(self, user_id: str = "u1", lead_stage: str | None = None) -> None:
        self.user = User(user_id, lead_stage=lead_stage)
        self.marks: tuple[Mark, ...] = ()

    def __call__(self, *rows: tuple[str, str | None], lead: str | None = None) -> UserStage:
        user = self.user if lead is None else User(self.user.user_id, lead_stage=lead)
        memberships = [Membership(user.user_id, a, stage=s) for a, s in rows]
        result = resolve_user_stage(user, memberships, self.marks, DEFAULT_LADDER, now=NOW)
        self.marks = result.marks
        return result

    def mark(self, account_id: str) -> Mark:
        (found,) = [
            m for m in self.marks if m.subject == MEMBERSHIP_MARK and m.account_id == account_id
        ]
        return found


def test_worked_example_cus_in_a_and_mql_in_b_through_both_churns() -> None:
    run = Run()
    step = run(("A", "CUS"), ("B", "MQL"))
    assert (step.stage, step.churned) == ("CUS", False)
    assert step.rule == "best active membership: CUS in account A"

    step = run(("A", "CUS"), ("B", "PRO"))
    assert step.stage == "PRO"
    assert step.rule == "best active membership: PRO in account B"

    step = run(("A", "CUS"), ("B", "churned"))
    assert step.stage == "CUS"
    assert run.mark("B") == Mark(MEMBERSHIP_MARK, "u1", "B", None, True, NOW)

    step = run(("A", "MQL"), ("B", "churned"))
    assert step.stage == "CUS"
    assert step.rule == "best active membership: CUS in account A (high-water mark; now MQL)"
    assert run.mark("A").stage == "CUS"

    step = run(("A", "churned"), ("B", "churned"))
    assert (step.stage, step.churned) == ("churned", True)
    assert step.rule == "all memberships churned (churned: A, B)"


def test_membership_that_disappears_from_the_store_counts_as_churned() -> None:
    run = Run()
    run(("A", "CUS"), ("B", "PRO"))
    step = run(("A", "CUS"))
    assert step.stage == "CUS"
    assert step.left_store == ("B",)
    assert run.mark("B").churned
    assert run.mark("B").stage is None


def test_user_whose_memberships_all_left_the_store_is_churned() -> None:
    run = Run(lead_stage="MQL")
    run(("A", "CUS"))
    step = run()
    assert (step.stage, step.churned) == ("churned", True)
    assert step.rule == "all memberships churned (left the store: A)"


def test_all_churned_user_stays_churned_on_later_runs() -> None:
    run = Run(lead_stage="PRO")
    run(("A", "CUS"))
    run(("A", "churned"))
    for _ in range(2):
        step = run()
        assert step.stage == "churned"
        assert step.changed == ()
        assert step.rule == "all memberships churned (churned or left earlier: A)"


def test_reactivated_membership_starts_a_new_mark_from_its_current_stage() -> None:
    run = Run()
    run(("A", "PRO"))
    run(("A", "churned"))
    step = run(("A", "MAL"))
    assert step.stage == "MAL"
    assert run.mark("A") == Mark(MEMBERSHIP_MARK, "u1", "A", "MAL", False, NOW)


def test_membership_back_in_the_store_after_leaving_starts_a_new_mark() -> None:
    run = Run()
    run(("A", "PRO"), ("B", "MAL"))
    run(("B", "MAL"))
    step = run(("A", "MQL"), ("B", "MAL"))
    assert step.stage == "MQL"


def test_user_without_memberships_has_their_lead_stage() -> None:
    step = Run(lead_stage="MQL")()
    assert (step.stage, step.churned) == ("MQL", False)
    assert step.rule == "lead stage: MQL (no memberships)"


def test_user_without_memberships_or_lead_stage_is_the_lowest_stage() -> None:
    step = Run()()
    assert step.stage == "visitor"
    assert step.rule == "no memberships and no lead stage: lowest stage visitor"
    assert step.marks == ()


def test_lead_stage_higher_than_every_membership_wins() -> None:
    step = Run(lead_stage="CUS")(("A", "MAL"), ("B", "MQL"))
    assert step.stage == "CUS"
    assert step.rule == (
        "lead stage: CUS is higher than the best active membership (MQL in account B)"
    )


def test_membership_at_the_lead_stage_explains_the_stage() -> None:
    step = Run(lead_stage="MQL")(("A", "MQL"))
    assert step.rule == "best active membership: MQL in account A"


def test_lead_stage_keeps_its_high_water_mark() -> None:
    run = Run()
    run(lead="MQL")
    step = run(lead="MAL")
    assert step.stage == "MQL"
    assert step.rule == "lead stage: MQL (high-water mark; lead_stage now MAL) (no memberships)"


def test_lead_stage_set_to_churned_makes_a_user_without_memberships_churned() -> None:
    run = Run()
    run(lead="MQL")
    step = run(lead="churned")
    assert (step.stage, step.churned) == ("churned", True)
    assert [m for m in step.marks if m.subject == LEAD_MARK] == [
        Mark(LEAD_MARK, "u1", "", None, True, NOW)
    ]


def test_all_memberships_churned_is_churned_whatever_the_lead_stage() -> None:
    step = Run(lead_stage="PRO")(("A", "churned"))
    assert (step.stage, step.churned) == ("churned", True)


def test_stage_without_a_value_is_the_lowest_and_never_lowers_a_mark() -> None:
    run = Run()
    assert run(("A", None)).stage == "visitor"
    run(("A", "CUS"))
    assert run(("A", None)).stage == "CUS"


def test_aliases_and_case_resolve_to_canonical_stage_names() -> None:
    step = Run()(("A", "customer"), ("B", " mql "))
    assert step.stage == "CUS"
    assert [m.stage for m in step.memberships] == ["CUS", "MQL"]


def test_resolved_memberships_are_active_first_then_best_mark_then_account_id() -> None:
    step = Run()(("D", "churned"), ("C", "MQL"), ("B", "CUS"), ("A", "MQL"))
    assert [(m.account_id, m.mark, m.churned) for m in step.memberships] == [
        ("B", "CUS", False),
        ("A", "MQL", False),
        ("C", "MQL", False),
        ("D", None, True),
    ]


def test_only_changed_marks_are_reported_for_saving() -> None:
    run = Run(lead_stage="MAL")
    first = run(("A", "CUS"), ("B", "MQL"))
    assert len(first.changed) == 3
    again = run(("A", "CUS"), ("B", "MQL"))
    assert again.changed == ()
    corrected_down = run(("A", "MQL"), ("B", "MQL"))
    assert corrected_down.changed == ()


def test_input_order_of_rows_and_marks_does_not_matter() -> None:
    run = Run()
    run(("A", "CUS"), ("B", "PRO"), ("C", "MAL"))
    marks = run.marks
    rows = [Membership("u1", "C", stage="churned"), Membership("u1", "A", stage="MQL")]
    one = resolve_user_stage(run.user, rows, marks, DEFAULT_LADDER, now=NOW)
    two = resolve_user_stage(run.user, rows[::-1], marks[::-1], DEFAULT_LADDER, now=NOW)
    assert one.stage == two.stage == "CUS"
    assert one.memberships == two.memberships
    assert sorted(one.marks, key=_key) == sorted(two.marks, key=_key)


def _key(m: Mark) -> tuple[str, str, str]:
    return m.subject, m.user_id, m.account_id


def test_unknown_membership_stage_is_an_error_naming_user_account_and_value() -> None:
    with pytest.raises(UnknownStageError) as err:
        Run("u-42")(("acct-7", "Evangelist"))
    text = str(err.value)
    assert "'u-42'" in text
    assert "'acct-7'" in text
    assert "'Evangelist'" in text
    assert "visitor, MAL, MQL, CUS, PRO" in text  # the hint lists the ladder


def test_unknown_lead_stage_is_an_error_naming_the_user() -> None:
    with pytest.raises(UnknownStageError, match=r"user 'u1'.*unknown stage 'hot' in users"):
        Run(lead_stage="hot")()


def test_unknown_stage_in_a_stored_mark_says_the_ladder_changed() -> None:
    stale = Mark(MEMBERSHIP_MARK, "u1", "A", "Evangelist")
    with pytest.raises(UnknownStageError, match="no longer has") as err:
        resolve_user_stage(
            User("u1"), [Membership("u1", "A", stage="MAL")], [stale], DEFAULT_LADDER
        )
    assert "'A'" in str(err.value)


def test_custom_ladder_orders_stages_and_names_its_churn_marker() -> None:
    ladder = StageLadder(names=("free", "trial", "paid"), churned="gone", aliases={})
    user = User("u1")
    rows = [Membership("u1", "A", stage="paid"), Membership("u1", "B", stage="trial")]
    assert resolve_user_stage(user, rows, [], ladder).stage == "paid"
    gone = [Membership("u1", "A", stage="gone")]
    assert resolve_user_stage(user, gone, [], ladder).stage == "gone"


def test_two_rows_for_one_membership_are_bad_input() -> None:
    rows = [Membership("u1", "A", stage="MAL"), Membership("u1", "A", stage="CUS")]
    with pytest.raises(BadInputError, match="two membership rows for account 'A'"):
        resolve_user_stage(User("u1"), rows, [], DEFAULT_LADDER)


def test_account_names_appear_in_rules_and_memberships() -> None:
    def info(account_id: str) -> tuple[str | None, str | None]:
        return {"A": ("Acme", "ROOT")}.get(account_id, (None, None))

    rows = [Membership("u1", "A", stage="CUS", role="admin")]
    result = resolve_user_stage(User("u1"), rows, [], DEFAULT_LADDER, accounts=info)
    assert result.rule == "best active membership: CUS in account A (Acme)"
    (m,) = result.memberships
    assert (m.account_name, m.parent_account_id, m.role) == ("Acme", "ROOT", "admin")


# --- an account's own stage --------------------------------------------------------------------


def _account_run(stages: Sequence[str | None]) -> list[tuple[str, bool]]:
    mark: Mark | None = None
    out = []
    for stage in stages:
        result = resolve_account_stage(Account("X", stage=stage), mark, DEFAULT_LADDER, now=NOW)
        assert result.changed == (result.mark is not mark)
        mark = result.mark
        out.append((result.stage, result.changed))
    return out


def test_account_stage_is_monotonic_over_its_history() -> None:
    assert _account_run(["MQL", "CUS", "MQL", None, "PRO"]) == [
        ("MQL", True),
        ("CUS", True),
        ("CUS", False),
        ("CUS", False),
        ("PRO", True),
    ]


def test_account_stage_drops_only_through_churn_and_restarts_after() -> None:
    assert _account_run(["PRO", "churned", "churned", "MAL"]) == [
        ("PRO", True),
        ("churned", True),
        ("churned", False),
        ("MAL", True),
    ]


def test_account_stage_rule_shows_the_high_water_mark() -> None:
    first = resolve_account_stage(Account("X", stage="CUS"), None, DEFAULT_LADDER, now=NOW)
    assert first.mark == Mark(ACCOUNT_MARK, "", "X", "CUS", False, NOW)
    later = resolve_account_stage(Account("X", stage="MQL"), first.mark, DEFAULT_LADDER)
    assert later.rule == "high-water mark: CUS (now MQL)"


def test_unknown_account_stage_is_an_error_naming_the_account() -> None:
    with pytest.raises(UnknownStageError, match=r"account 'X': unknown stage 'VIP'"):
        resolve_account_stage(Account("X", stage="VIP"), None, DEFAULT_LADDER)


def test_an_alias_that_clashes_with_a_stage_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="alias 'Pro' -> 'CUS' clashes with the stage 'PRO'"):
        StageLadder(aliases={"Pro": "CUS"})


def test_a_later_alias_overrides_an_earlier_spelling() -> None:
    ladder = StageLadder(aliases={"customer": "CUS", "Customer": "PRO"})
    assert ladder.normalize("CUSTOMER") == "PRO"
