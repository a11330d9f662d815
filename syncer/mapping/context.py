"""What an expression sees: the names of a view's context, and the sample views checks run on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from syncer.model import (
    Account,
    ResolvedAccount,
    ResolvedMember,
    ResolvedMembership,
    ResolvedUser,
    StageLadder,
    UnknownStage,
    User,
)

Source = Literal["users", "accounts"]
View = ResolvedUser | ResolvedAccount

USER_NAMES = (
    "user",
    "memberships",
    "all_memberships",
    "stage",
    "churned",
    "primary",
    "primary_account_id",
    "attributes",
    "rule",
)
ACCOUNT_NAMES = (
    "account",
    "members",
    "stage",
    "rollups",
    "ancestors",
    "children",
    "parent_account_id",
    "attributes",
    "member_stages",
)


class Attributes(dict[str, Any]):
    """An attributes mapping where a missing key is ``None`` (not every account has every
    attribute), so ``account.attributes.renewal_date`` never fails on a blank."""

    def __missing__(self, key: str) -> None:
        return None


def context_for(view: View, ladder: StageLadder) -> dict[str, Any]:
    """The names an expression sees for ``view`` (listed in ``docs/mappings.md``)."""
    if isinstance(view, ResolvedUser):
        active = [m for m in view.memberships if not m.churned]
        primary = None
        for m in view.memberships:  # a loop, not next() over a generator: one frame fewer
            if m.primary:
                primary = m
                break
        return {
            "user": view.user,
            "memberships": active,
            "all_memberships": list(view.memberships),
            "stage": view.stage,
            "churned": view.churned,
            "primary": primary,
            "primary_account_id": view.primary_account_id,
            "attributes": Attributes(view.user.attributes),
            "rule": view.rule,
        }
    members = list(view.members)
    stages = sorted({m.stage for m in members}, key=lambda s: (-stage_rank(ladder, s), s))
    return {
        "account": view.account,
        "members": members,
        "stage": view.stage,
        "rollups": Attributes(view.rollups),
        "ancestors": list(view.ancestors),
        "children": list(view.children),
        "parent_account_id": view.account.parent_account_id,
        "attributes": Attributes(view.account.attributes),
        "member_stages": stages,
    }


def stage_rank(ladder: StageLadder, stage: str | None) -> int:
    """``stage``'s rank on ``ladder``; ``None`` and names the ladder does not know rank -1."""
    if stage is None:
        return -1
    try:
        return ladder.rank(stage)
    except (UnknownStage, KeyError):  # a name the ladder does not know ranks lowest
        return -1


# --- the views a mapping is checked on at load ----------------------------------------------------

_AT = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def sample_context(source: Source, ladder: StageLadder) -> dict[str, Any]:
    """A view with every field filled, to catch typos at load time."""
    top = ladder.names[-1]
    if source == "users":
        m = ResolvedMembership(
            "acct-1", "Sample Co", "parent-1", "admin", top, top, False, _AT, True
        )
        user = User("user-1", "sample@example.com", "Sam", "Ple", top, {"plan": "pro"}, _AT, _AT)
        return context_for(ResolvedUser(user, (m,), top, "acct-1", False, "sample"), ladder)
    member = ResolvedMember("user-1", "sample@example.com", "Sam", "Ple", "admin", top, top, _AT)
    account = Account(
        "acct-1",
        "Sample Co",
        "sample.example",
        "parent-1",
        top,
        {"status": "active", "contract_value": 1000, "renewal_date": "2025-01-01", "licenses": 5},
        _AT,
        _AT,
    )
    view = ResolvedAccount(account, (member,), top, {"licenses": 5.0}, ("parent-1",), (), "sample")
    return context_for(view, ladder)


def edge_contexts(source: Source, ladder: StageLadder) -> list[tuple[str, dict[str, Any]]]:
    """Views that take the other side of the usual branches, each with its name for messages:
    a churned user with no primary account (one churned membership), an account with no
    members, parent or attributes."""
    gone = ladder.churned
    if source == "users":
        m = ResolvedMembership("acct-2", "Gone Co", None, None, gone, None, True, _AT, False)
        user = User("user-2", None, None, None, None, {}, None, None)
        view: View = ResolvedUser(user, (m,), gone, None, True, "sample")
        return [("churned user without a primary account", context_for(view, ladder))]
    view = ResolvedAccount(Account("acct-2"), (), gone, {}, (), (), "sample")
    return [("memberless account", context_for(view, ladder))]
