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
    # One pass, no sort, ranks straight from the scale's table: this runs for every user of
    # every plan, and most users have one or two active memberships.
    if len(candidates) == 1:
        chosen = candidates[0]
        return chosen, f"highest stage: {chosen.mark} ({_joined(chosen)})"
    known = scale.spellings
    top = -2
    best: list[ResolvedMembership] = []
    for m in candidates:
        mark = m.mark
        if mark is None:
            r = -1
        else:
            hit = known.get(mark)
            r = hit[1] if hit is not None else scale.rank(mark)
        if r > top:
            top, best = r, [m]
        elif r == top:
            best.append(m)
    if len(best) == 1:
        chosen = best[0]
        return chosen, f"highest stage: {chosen.mark} ({_joined(chosen)})"
    chosen = _first(best)
    ties = f"; {len(best)} accounts at that stage, earliest joined wins"
    return chosen, f"highest stage: {chosen.mark} ({_joined(chosen)}{ties})"


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
    if policy not in PRIMARY_POLICIES:
        raise ValueError(
            f"unknown primary-account policy {policy!r}; use one of {PRIMARY_POLICIES}"
        )
    candidates = [m for m in memberships if not m.churned]
    if not candidates:
        return None, "no active membership, so no primary account"
    if policy == FIRST:
        chosen = _first(candidates)
        return chosen.account_id, f"first: earliest joined ({_joined(chosen)})"
    if policy == LAST:
        chosen = _last(candidates)
        return chosen.account_id, f"last: latest joined ({_joined(chosen)})"
    scale = as_scale(ladder)
    if policy == STICKY and previous is not None:
        if any(m.account_id == previous for m in candidates):
            return previous, "sticky: kept the previous primary, still active"
        chosen, why = _highest(candidates, scale)
        return chosen.account_id, f"sticky: previous primary {previous} is no longer active; {why}"
    chosen, why = _highest(candidates, scale)
    prefix = "sticky: no previous primary; " if policy == STICKY else ""
    return chosen.account_id, prefix + why
