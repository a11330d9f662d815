"""The primary-account policy: the single account a CRM contact is tied to.

Only active (not churned) memberships qualify; a user without one has no primary account.

=================== =============================================================================
policy              picks
=================== =============================================================================
``first``           the earliest ``joined_at``
``last``            the latest ``joined_at``
``highest_stage``   the best high-water mark; ties → the ``first`` order (earliest joined)
``sticky``          the previous primary while it stays active; otherwise ``highest_stage``
=================== =============================================================================

Tie-breaks are deterministic so the same store always gives the same primary: a membership with
no ``joined_at`` sorts after every dated one (for ``first`` and ``last`` alike: an unknown date
never wins over a known one), and the final tie-break is the smallest ``account_id`` in code-point
order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from syncer.model import ResolvedMembership, StageLadder
from syncer.policies.scale import StageScale, as_scale

FIRST = "first"
LAST = "last"
HIGHEST_STAGE = "highest_stage"
STICKY = "sticky"
PRIMARY_POLICIES: tuple[str, ...] = (FIRST, LAST, HIGHEST_STAGE, STICKY)


def _joined(m: ResolvedMembership) -> str:
    joined = m.joined_at
    # date().isoformat(): an aware datetime's own isoformat() costs 5x as much (it formats the
    # time and the offset too), and this runs for every user.
    return f"joined {joined.date().isoformat()}" if joined is not None else "no join date"


def _first_key(m: ResolvedMembership) -> tuple[bool, datetime, str]:
    # datetime.min stands in for "no date" only behind the leading flag, so it never compares
    # against a real date; tz-awareness does not matter there.
    return m.joined_at is None, m.joined_at or datetime.min, m.account_id


def _first(candidates: Sequence[ResolvedMembership]) -> ResolvedMembership:
    return candidates[0] if len(candidates) == 1 else min(candidates, key=_first_key)


def _last(candidates: Sequence[ResolvedMembership]) -> ResolvedMembership:
    dated = [m for m in candidates if m.joined_at is not None]
    if not dated:
        return min(candidates, key=lambda m: m.account_id)
    latest = max(m.joined_at for m in dated)  # type: ignore[type-var]  # all dated
    return min((m for m in dated if m.joined_at == latest), key=lambda m: m.account_id)


def _highest(
    candidates: Sequence[ResolvedMembership], scale: StageScale
) -> tuple[ResolvedMembership, str]:
    # ``candidates`` are in rank order, best first (choose_ranked_primary): the best stage is the
    # first one's, and its ties follow it. This runs for every user of every plan; most users
    # have one or two active memberships: no search, no list, unless there are ties.
    chosen = candidates[0]
    if len(candidates) > 1:
        known = scale.spellings
        top = _rank(chosen, known, scale)
        n = 1
        while n < len(candidates) and _rank(candidates[n], known, scale) == top:
            n += 1
        if n > 1:
            chosen = _first(candidates[:n])
            ties = f"; {n} accounts at that stage, earliest joined wins"
            return chosen, f"highest stage: {chosen.mark} ({_joined(chosen)}{ties})"
    return chosen, f"highest stage: {chosen.mark} ({_joined(chosen)})"


def _rank(m: ResolvedMembership, known: dict[str, tuple[str, int]], scale: StageScale) -> int:
    mark = m.mark
    if mark is None:
        return -1
    hit = known.get(mark)
    return hit[1] if hit is not None else scale.rank(mark)


def choose_primary(
    memberships: Iterable[ResolvedMembership],
    policy: str,
    ladder: StageLadder | StageScale,
    *,
    previous: str | None = None,
) -> tuple[str | None, str]:
    """``(primary account_id or None, why)`` under ``policy``.

    ``previous`` is the primary the last run chose (``sticky`` keeps it while it stays active;
    the other policies ignore it). Raises ``ValueError`` for an unknown policy name; settings
    validate the name before any user is resolved.
    """
    _check(policy)
    scale = as_scale(ladder)
    active = [m for m in memberships if not m.churned]
    if policy in (HIGHEST_STAGE, STICKY):
        # Best mark first. The sort is stable: equal ranks keep their order, as the search
        # this replaces kept it (only ties on joined_at and account_id would ever show it).
        known = scale.spellings
        active.sort(key=lambda m: -_rank(m, known, scale))
    return choose_ranked_primary(active, policy, scale, previous=previous)


def _check(policy: str) -> None:
    if policy not in PRIMARY_POLICIES:
        raise ValueError(
            f"unknown primary-account policy {policy!r}; use one of {PRIMARY_POLICIES}"
        )


def choose_ranked_primary(
    memberships: Sequence[ResolvedMembership],
    policy: str,
    scale: StageScale,
    *,
    previous: str | None = None,
) -> tuple[str | None, str]:
    """:func:`choose_primary` of ``memberships`` in the order a
    :class:`~syncer.model.ResolvedUser` holds them (active first, best mark first): the
    resolver's path, which finds the best marks at the front instead of searching for them."""
    if policy not in PRIMARY_POLICIES:  # checked here, not by a call per user of every plan
        _check(policy)
    if not memberships or memberships[0].churned:
        return None, "no active membership, so no primary account"
    candidates = (
        [m for m in memberships if not m.churned] if memberships[-1].churned else memberships
    )
    if policy == FIRST:
        chosen = _first(candidates)
        return chosen.account_id, f"first: earliest joined ({_joined(chosen)})"
    if policy == LAST:
        chosen = _last(candidates)
        return chosen.account_id, f"last: latest joined ({_joined(chosen)})"
    if policy == STICKY and previous is not None:
        for m in candidates:
            if m.account_id == previous:
                return previous, "sticky: kept the previous primary, still active"
        chosen, why = _highest(candidates, scale)
        return chosen.account_id, f"sticky: previous primary {previous} is no longer active; {why}"
    chosen, why = _highest(candidates, scale)
    if policy == STICKY:
        return chosen.account_id, "sticky: no previous primary; " + why
    return chosen.account_id, why
