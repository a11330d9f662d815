"""The monotonic stage policy: high-water marks per membership, a user's stage, an account's stage.

The rules (DESIGN.md § Policies), exactly:

* Each membership keeps a **high-water mark**: the best stage it reached since it last churned.
  A membership whose row says the churn marker, or whose row has left the store, is churned: its
  mark is cleared and a tombstone ``Mark(stage=None, churned=True)`` stays behind. A churned
  membership that comes back starts a **new** mark from its current stage, not the old one.
* A user's stage is the best mark over their active memberships, or their own lead stage if that
  is higher (ties go to the membership, the stronger explanation).
* A user whose memberships are all churned (including ones that left the store, remembered by
  their tombstones) is ``churned``, whatever their lead stage says.
* A user with no membership at all, ever, has their lead stage.

Decisions the design leaves open, made here:

* A stage that is ``None`` (a membership, account or lead with no stage in the store) is the
  lowest rung of the ladder: being in the store at all makes one at least a ``visitor``. It never
  lowers a mark. A user with no memberships and no lead stage is therefore the lowest stage.
* The lead stage is monotonic too (subject ``"lead"``, key ``(user_id, "")``): "a user never drops
  below that, whatever the source data later says, except through churn" covers it. A lead stage
  set to the churn marker clears it; a user with no memberships whose lead churned is ``churned``.
* An account's own stage follows the same rule over the account row's history (subject
  ``"account"``, key ``("", account_id)``).

Everything here is a pure function of the current rows and the previous marks; persisting the
returned marks is the caller's job (see :class:`syncer.state.marks.MarkStore`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import NamedTuple

from syncer.errors import BadInputError, Problem
from syncer.frozen import builder
from syncer.model import (
    LEAD_MARK,
    MEMBERSHIP_MARK,
    Mark,
    Membership,
    ResolvedMembership,
    StageLadder,
    User,
)
from syncer.policies.hierarchy import NO_FACTS, AccountFacts
from syncer.policies.highwater import (
    AccountStage,
    advance_mark,
    live_mark,
    member_mark,
    resolve_account_stage,
)
from syncer.policies.scale import StageScale, as_scale, lookup_stage, unknown_stage

__all__ = [
    "AccountStage",
    "StageScale",
    "UserStage",
    "as_scale",
    "decide_user",
    "lookup_stage",
    "member_mark",
    "resolve_account_stage",
    "resolve_user_stage",
    "unknown_stage",
]

AccountInfo = Callable[[str], AccountFacts]
"""``account_id -> (name, parent_account_id)``; the resolver passes the hierarchy's."""

# Mark(...), ResolvedMembership(...) less a check and a class switch (syncer.frozen.builder).
_new_mark = builder(Mark)
_new_membership = builder(ResolvedMembership)

_RULE_NAMES = 3  # how many churned accounts a rule text names before it says "and N more"


# --- a user -------------------------------------------------------------------------------------


class UserStage(NamedTuple):
    """What the stage policy decided for one user.

    ``marks`` is the user's complete new mark state (membership marks including tombstones, and the
    lead mark); ``changed`` is the part of it that differs from the previous marks — what the
    caller must save. ``memberships`` are the store's rows, resolved, in the order
    :class:`~syncer.model.ResolvedUser` promises (active first, best mark first, then account_id);
    none is marked primary yet.
    """

    stage: str
    rule: str
    churned: bool
    memberships: tuple[ResolvedMembership, ...]
    marks: tuple[Mark, ...]
    changed: tuple[Mark, ...]
    left_store: tuple[str, ...]  # accounts whose membership left the store since the last run


def _names(ids: list[str]) -> str:
    shown = ", ".join(ids[:_RULE_NAMES])
    more = len(ids) - _RULE_NAMES
    return f"{shown} and {more} more" if more > 0 else shown


def resolve_user_stage(
    user: User,
    memberships: Iterable[Membership],
    marks: Iterable[Mark],
    ladder: StageLadder | StageScale,
    *,
    accounts: AccountInfo | None = None,
    now: datetime | None = None,
) -> UserStage:
    """Apply the monotonic stage policy to one user.

    ``memberships`` are all of the user's current rows in the store; ``marks`` the user's previous
    marks (subjects other than ``"membership"`` and ``"lead"`` are ignored). Input order does not
    matter. ``accounts`` supplies account names and parents for the resolved memberships.

    Raises :class:`UnknownStageError` naming the user, the account and the value for a stage the
    ladder does not know, and :class:`BadInputError` for two rows of one membership.
    """
    facts = None if accounts is None else _CallFacts(accounts)
    scale = as_scale(ladder)
    return decide_user(user, memberships, marks, scale, facts=facts, now=now or datetime.now(UTC))


_NO_ACCOUNTS: Mapping[str, AccountFacts] = MappingProxyType({})


class _CallFacts:
    """An :data:`AccountInfo` function seen as the mapping :func:`decide_user` reads."""

    __slots__ = ("get",)

    def __init__(self, accounts: AccountInfo) -> None:
        self.get = lambda account_id, _default: accounts(account_id)


FactsTable = Mapping[str, AccountFacts] | _CallFacts
"""``account_id -> (name, parent_account_id)``, read with ``.get(account_id, default)``."""


def decide_user(
    user: User,
    memberships: Iterable[Membership],
    marks: Iterable[Mark],
    scale: StageScale,
    *,
    facts: FactsTable | None,
    now: datetime,
) -> UserStage:
    """:func:`resolve_user_stage` for a ready :class:`StageScale` and facts table (``account_id
    -> (name, parent_account_id)``, :meth:`~syncer.policies.hierarchy.Hierarchy.facts`).

    This runs once per user of every plan and its loop once per membership: the common cases of
    :func:`advance_mark` are inlined, every name in the loop is a local, and the best active
    membership is not tracked: it is the first row once the rows are sorted."""
    uid = user.user_id
    previous, lead_prev = _split_marks(uid, marks) if marks else (None, None)
    cache_get = scale.spellings.get
    get_facts = (_NO_ACCOUNTS if facts is None else facts).get
    lowest = scale.lowest
    kept: list[Mark] = []
    changed: list[Mark] = []
    # (churned, -mark rank, account_id, row): sorts active first, best mark first, account_id.
    rows: list[tuple[bool, int, str, ResolvedMembership]] = []
    seen: set[str] = set()
    churned_here: list[str] = []
    for row in memberships:
        aid = row.account_id
        if aid in seen:
            raise _two_rows(uid, aid)
        seen.add(aid)
        raw = row.stage
        if raw is None:
            stage, rank = lowest, 0
        else:
            stage, rank = cache_get(raw) or lookup_stage(scale, raw, uid, aid, "memberships")
        prev = previous.pop(aid, None) if previous else None
        if prev is None:
            # First sight (or back after a tombstone was dropped): a new mark from this stage,
            # or a tombstone if the row says churned (advance_mark's answers, without the call).
            mark_stage: str | None = stage if rank >= 0 else None
            mark = _new_mark(MEMBERSHIP_MARK, uid, aid, mark_stage, mark_stage is None, now)
            mark_rank = rank
            changed.append(mark)
        else:
            mark, mark_stage, mark_rank = advance_mark(
                prev,
                stage,
                rank,
                scale,
                subject=MEMBERSHIP_MARK,
                user_id=uid,
                account_id=aid,
                now=now,
            )
            if mark is not prev:
                changed.append(mark)
        kept.append(mark)
        name, parent = get_facts(aid, NO_FACTS)
        resolved = _new_membership(
            aid, name, parent, row.role, stage, mark_stage, mark_stage is None, row.joined_at
        )
        if mark_stage is None:
            churned_here.append(aid)
            rows.append((True, 1, aid, resolved))
        else:
            # account_ids are unique here, so sorting these tuples never compares the record.
            rows.append((False, -mark_rank, aid, resolved))

    gone = _left_store(previous, kept, changed, scale=scale, uid=uid, now=now) if previous else []
    lead = _lead(user, lead_prev, kept, changed, scale=scale, now=now)
    if len(rows) > 1:
        rows.sort()
    stage, rule, churned = _decide(
        rows, lead, kept, seen=seen, churned_here=churned_here, gone=gone, scale=scale
    )
    # tuple.__new__ skips the named tuple's Python-level __new__: a frame per user of every plan.
    done = (stage, rule, churned, tuple([r[3] for r in rows]), tuple(kept), tuple(changed))
    return tuple.__new__(UserStage, (*done, tuple(sorted(gone))))


# The lead's live mark (stage, rank) or None, whether it churned, and the lead stage now.
_Lead = tuple[tuple[str, int] | None, bool, str | None]


def _split_marks(uid: str, marks: Iterable[Mark]) -> tuple[dict[str, Mark], Mark | None]:
    """A user's previous membership marks by account, and their lead mark."""
    previous: dict[str, Mark] = {}
    lead_prev: Mark | None = None
    for mark in marks:
        subject = mark.subject
        if subject == MEMBERSHIP_MARK:
            if mark.account_id in previous:
                raise ValueError(
                    f"two membership marks for user {uid!r}, "
                    f"account {mark.account_id!r}: the marks stream repeats a key"
                )
            previous[mark.account_id] = mark
        elif subject == LEAD_MARK:
            lead_prev = mark
    return previous, lead_prev


def _two_rows(uid: str, aid: str) -> BadInputError:
    return BadInputError(
        Problem(
            f"user {uid!r} has two membership rows for account {aid!r}",
            key=f"{uid}/{aid}",
            hint="a membership is keyed by (user_id, account_id); keep one row",
        )
    )


def _left_store(
    previous: dict[str, Mark],
    kept: list[Mark],
    changed: list[Mark],
    *,
    scale: StageScale,
    uid: str,
    now: datetime,
) -> list[str]:
    """Marks whose membership is no longer in the store: a live one is churned now. Returns
    the accounts whose membership left since the last run."""
    gone: list[str] = []
    for aid, prev in previous.items():
        mark, _, _ = advance_mark(
            prev, None, -1, scale, subject=MEMBERSHIP_MARK, user_id=uid, account_id=aid, now=now
        )
        kept.append(mark)
        if mark is not prev:
            changed.append(mark)
            gone.append(aid)
    return gone


def _lead(
    user: User,
    lead_prev: Mark | None,
    kept: list[Mark],
    changed: list[Mark],
    *,
    scale: StageScale,
    now: datetime,
) -> _Lead:
    """The lead stage keeps a high-water mark of its own."""
    raw = user.lead_stage
    if raw is None:
        if lead_prev is None:
            return None, False, None
        # No lead stage in the store any more: nothing new to say, the mark stands.
        kept.append(lead_prev)
        live = live_mark(lead_prev, scale)
        return live, live is None, None
    uid = user.user_id
    lead_now, rank = scale.spellings.get(raw) or lookup_stage(scale, raw, uid, None, "users")
    if lead_prev is None and rank >= 0:
        mark = _new_mark(LEAD_MARK, uid, "", lead_now, False, now)
        kept.append(mark)
        changed.append(mark)
        return (lead_now, rank), False, lead_now
    mark, stage, mark_rank = advance_mark(
        lead_prev, lead_now, rank, scale, subject=LEAD_MARK, user_id=uid, account_id="", now=now
    )
    kept.append(mark)
    if mark is not lead_prev:
        changed.append(mark)
    return (None if stage is None else (stage, mark_rank)), stage is None, lead_now


def _decide(
    rows: list[tuple[bool, int, str, ResolvedMembership]],
    lead: _Lead,
    kept: list[Mark],
    *,
    seen: set[str],
    churned_here: list[str],
    gone: list[str],
    scale: StageScale,
) -> tuple[str, str, bool]:
    """``(stage, rule, churned)`` from the best active membership (the first of the sorted
    ``rows``, if active) and the lead stage."""
    lead_live, lead_churned, lead_now = lead
    if rows and not rows[0][0]:
        _, minus_rank, aid, top = rows[0]
        mark_stage: str = top.mark  # type: ignore[assignment]  # an active row has a mark
        current, name = top.stage, top.account_name
        if lead_live is not None and lead_live[1] > -minus_rank:
            stage = lead_live[0]
            return (
                stage,
                f"lead stage: {stage}{_lead_note(stage, lead_now)} is higher than the "
                f"best active membership ({mark_stage} in account {_label(aid, name)})",
                False,
            )
        rule = f"best active membership: {mark_stage} in account {_label(aid, name)}"
        if current != mark_stage:
            rule += f" (high-water mark; now {current})"
        return mark_stage, rule, False
    if rows or any(m.subject == MEMBERSHIP_MARK for m in kept):
        return scale.churned, _all_churned(kept, seen, churned_here, gone), True
    if lead_live is not None:
        stage = lead_live[0]
        return stage, f"lead stage: {stage}{_lead_note(stage, lead_now)} (no memberships)", False
    if lead_churned:
        return scale.churned, "lead churned and no memberships", True
    return scale.lowest, f"no memberships and no lead stage: lowest stage {scale.lowest}", False


def _all_churned(kept: list[Mark], seen: set[str], churned_here: list[str], left: list[str]) -> str:
    """The rule text of a user whose memberships are all churned."""
    gone = set(left)
    earlier = sorted(
        m.account_id
        for m in kept
        if m.subject == MEMBERSHIP_MARK and m.account_id not in seen and m.account_id not in gone
    )
    parts = []
    if churned_here:
        parts.append(f"churned: {_names(sorted(churned_here))}")
    if gone:
        parts.append(f"left the store: {_names(sorted(gone))}")
    if earlier:
        parts.append(f"churned or left earlier: {_names(earlier)}")
    return f"all memberships churned ({'; '.join(parts)})"


def _label(account_id: str, name: str | None) -> str:
    return f"{account_id} ({name})" if name and name != account_id else account_id


def _lead_note(mark: str, current: str | None) -> str:
    if current is None:
        return " (high-water mark; no lead stage in the store now)"
    if current != mark:
        return f" (high-water mark; lead_stage now {current})"
    return ""
