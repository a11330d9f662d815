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

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from syncer.errors import BadInputError, Problem, UnknownStageError
from syncer.model import (
    ACCOUNT_MARK,
    LEAD_MARK,
    MEMBERSHIP_MARK,
    Account,
    Mark,
    Membership,
    ResolvedMembership,
    StageLadder,
    UnknownStage,
    User,
    fast_init,
)

AccountInfo = Callable[[str], tuple[str | None, str | None]]
"""``account_id -> (name, parent_account_id)``; the resolver passes the hierarchy's."""

# How many churned accounts a rule text names before it says "and N more".
_RULE_NAMES = 3


class StageScale:
    """A ladder's canonical names and ranks, with a cache of the raw spellings already seen.

    Store rows repeat a handful of spellings millions of times; the cache turns normalisation into
    one dict lookup. Build one per ladder and share it (the :class:`Resolver` does).
    """

    __slots__ = ("_cache", "churned", "ladder", "lowest", "names")

    def __init__(self, ladder: StageLadder) -> None:
        self.ladder = ladder
        self.names = ladder.names
        self.churned = ladder.churned
        self.lowest = ladder.lowest
        self._cache: dict[str, tuple[str, int]] = {n: (n, i) for i, n in enumerate(ladder.names)}
        self._cache[ladder.churned] = (ladder.churned, -1)

    def lookup(self, raw: str) -> tuple[str, int]:
        """``(canonical name, rank)`` of ``raw``; the churn marker ranks -1.

        Raises :class:`syncer.model.UnknownStage` for a value the ladder does not know.
        """
        hit = self._cache.get(raw)
        if hit is None:
            name = self.ladder.normalize(raw)
            hit = (name, self.ladder.rank(name))
            self._cache[raw] = hit
        return hit

    def rank(self, name: str) -> int:
        """Rank of a stage name (canonical or not); the churn marker is -1."""
        return self.lookup(name)[1]

    def hint(self) -> str:
        """What a user can do about an unknown stage."""
        return (
            f"use one of {', '.join(self.names)} or {self.churned!r}, or add an alias for it to "
            "the stage ladder in the configuration"
        )


def as_scale(ladder: StageLadder | StageScale) -> StageScale:
    """The :class:`StageScale` of ``ladder`` (itself if it already is one)."""
    return ladder if isinstance(ladder, StageScale) else StageScale(ladder)


def unknown_stage(
    exc: UnknownStage,
    scale: StageScale,
    *,
    user_id: str | None,
    account_id: str | None,
    source: str,
) -> UnknownStageError:
    """An :class:`UnknownStageError` naming the user, the account, the value and where it was."""
    who = []
    if user_id is not None:
        who.append(f"user {user_id!r}")
    if account_id is not None:
        who.append(f"account {account_id!r}")
    key = "/".join(k for k in (user_id, account_id) if k)
    hint = scale.hint()
    if source == "policy_marks":
        hint = (
            "the sync state remembers a stage the configured ladder no longer has; put it back "
            "(or alias it to a stage) in the ladder configuration"
        )
    return UnknownStageError(
        Problem(
            f"{', '.join(who)}: unknown stage {exc.value!r} in {source}",
            field="stage",
            key=key or None,
            hint=hint,
        )
    )


# --- one membership ------------------------------------------------------------------------------


def _mark_stage(mark: Mark, scale: StageScale) -> tuple[str, int] | None:
    """``(canonical stage, rank)`` of a live mark, ``None`` for a tombstone."""
    if mark.churned or mark.stage is None:
        return None
    try:
        name, rank = scale.lookup(mark.stage)
    except UnknownStage as exc:
        raise unknown_stage(
            exc,
            scale,
            user_id=mark.user_id or None,
            account_id=mark.account_id or None,
            source="policy_marks",
        ) from None
    return None if rank < 0 else (name, rank)


def advance_mark(
    previous: Mark | None,
    stage: str | None,
    rank: int,
    scale: StageScale,
    *,
    subject: str,
    user_id: str,
    account_id: str,
    now: datetime,
) -> tuple[Mark, str | None, int]:
    """The next mark of one subject, given its previous mark and its current canonical stage.

    ``stage is None`` means the subject left the store; ``rank < 0`` means its row says churned.
    Returns ``(mark, mark stage or None, mark rank or -1)``; ``mark is previous`` when nothing
    changed, so callers detect changes by identity.
    """
    if stage is None or rank < 0:
        if previous is not None and previous.churned and previous.stage is None:
            return previous, None, -1
        return Mark(subject, user_id, account_id, None, True, now), None, -1
    live = _mark_stage(previous, scale) if previous is not None else None
    if live is not None:
        mark_name, mark_rank = live
        if mark_rank >= rank:
            if mark_name == previous.stage:  # type: ignore[union-attr]  # live implies previous
                return previous, mark_name, mark_rank  # type: ignore[return-value]
            return Mark(subject, user_id, account_id, mark_name, False, now), mark_name, mark_rank
    # No live mark (first sight, or back after churn): a new mark from the current stage.
    return Mark(subject, user_id, account_id, stage, False, now), stage, rank


# --- a user -------------------------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class UserStage:
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
    work = _UserWork(user, as_scale(ladder), accounts, now or datetime.now(UTC))
    previous, lead_prev = work.split_marks(marks)
    work.memberships(memberships, previous)
    work.left_store(previous)
    work.lead(lead_prev)
    return work.decide()


class _UserWork:
    """The steps of :func:`resolve_user_stage` for one user, sharing what they accumulate."""

    __slots__ = (
        "accounts",
        "best",
        "changed",
        "churned_here",
        "gone",
        "lead_churned",
        "lead_live",
        "lead_now",
        "marks",
        "now",
        "rows",
        "scale",
        "seen",
        "user",
    )

    def __init__(
        self, user: User, scale: StageScale, accounts: AccountInfo | None, now: datetime
    ) -> None:
        self.user = user
        self.scale = scale
        self.accounts = accounts
        self.now = now
        self.marks: list[Mark] = []
        self.changed: list[Mark] = []
        # (churned, -mark rank, account_id, row): sorts active first, best mark first, account_id.
        self.rows: list[tuple[bool, int, str, ResolvedMembership]] = []
        self.seen: set[str] = set()
        # The best active membership: (mark rank, account_id, mark stage, current stage, name).
        self.best: tuple[int, str, str, str, str | None] | None = None
        self.churned_here: list[str] = []
        self.gone: list[str] = []
        self.lead_live: tuple[str, int] | None = None
        self.lead_churned = False
        self.lead_now: str | None = None

    def split_marks(self, marks: Iterable[Mark]) -> tuple[dict[str, Mark], Mark | None]:
        previous: dict[str, Mark] = {}
        lead_prev: Mark | None = None
        for mark in marks:
            if mark.subject == MEMBERSHIP_MARK:
                if mark.account_id in previous:
                    raise ValueError(
                        f"two membership marks for user {self.user.user_id!r}, "
                        f"account {mark.account_id!r}: the marks stream repeats a key"
                    )
                previous[mark.account_id] = mark
            elif mark.subject == LEAD_MARK:
                lead_prev = mark
        return previous, lead_prev

    def _keep(self, mark: Mark, previous: Mark | None) -> None:
        self.marks.append(mark)
        if mark is not previous:
            self.changed.append(mark)

    def memberships(self, memberships: Iterable[Membership], previous: dict[str, Mark]) -> None:
        # The hot loop of every plan (once per membership): locals instead of attributes, and
        # _keep inlined.
        scale, uid, seen, now = self.scale, self.user.user_id, self.seen, self.now
        lookup, accounts, kept, changed = scale.lookup, self.accounts, self.marks, self.changed
        rows = self.rows
        for row in memberships:
            aid = row.account_id
            if aid in seen:
                raise BadInputError(
                    Problem(
                        f"user {uid!r} has two membership rows for account {aid!r}",
                        key=f"{uid}/{aid}",
                        hint="a membership is keyed by (user_id, account_id); keep one row",
                    )
                )
            seen.add(aid)
            if row.stage is None:
                stage, rank = scale.lowest, 0
            else:
                try:
                    stage, rank = lookup(row.stage)
                except UnknownStage as exc:
                    raise unknown_stage(
                        exc, scale, user_id=uid, account_id=aid, source="memberships"
                    ) from None
            prev = previous.pop(aid, None) if previous else None
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
            kept.append(mark)
            if mark is not prev:
                changed.append(mark)
            name, parent = accounts(aid) if accounts is not None else (None, None)
            churned = mark_stage is None
            if mark_stage is None:
                self.churned_here.append(aid)
            else:
                best = self.best
                if best is None or mark_rank > best[0] or (mark_rank == best[0] and aid < best[1]):
                    self.best = (mark_rank, aid, mark_stage, stage, name)
            resolved = ResolvedMembership(
                aid, name, parent, row.role, stage, mark_stage, churned, row.joined_at
            )
            # account_ids are unique here, so sorting these tuples never compares ``resolved``.
            rows.append((churned, -mark_rank, aid, resolved))

    def left_store(self, previous: dict[str, Mark]) -> None:
        """Marks whose membership is no longer in the store: a live one is churned now."""
        for aid, prev in previous.items():
            mark, _, _ = advance_mark(
                prev,
                None,
                -1,
                self.scale,
                subject=MEMBERSHIP_MARK,
                user_id=self.user.user_id,
                account_id=aid,
                now=self.now,
            )
            self._keep(mark, prev)
            if mark is not prev:
                self.gone.append(aid)

    def lead(self, lead_prev: Mark | None) -> None:
        """The lead stage keeps a high-water mark of its own."""
        raw = self.user.lead_stage
        if raw is None:
            if lead_prev is not None:
                # No lead stage in the store any more: nothing new to say, the mark stands.
                self.marks.append(lead_prev)
                self.lead_live = _mark_stage(lead_prev, self.scale)
                self.lead_churned = self.lead_live is None
            return
        try:
            self.lead_now, rank = self.scale.lookup(raw)
        except UnknownStage as exc:
            raise unknown_stage(
                exc, self.scale, user_id=self.user.user_id, account_id=None, source="users"
            ) from None
        mark, stage, mark_rank = advance_mark(
            lead_prev,
            self.lead_now,
            rank,
            self.scale,
            subject=LEAD_MARK,
            user_id=self.user.user_id,
            account_id="",
            now=self.now,
        )
        self._keep(mark, lead_prev)
        self.lead_churned = stage is None
        self.lead_live = None if stage is None else (stage, mark_rank)

    def decide(self) -> UserStage:
        scale, lead = self.scale, self.lead_live
        churned = False
        if self.best is not None:
            mark_rank, aid, mark_stage, current, name = self.best
            if lead is not None and lead[1] > mark_rank:
                stage = lead[0]
                rule = (
                    f"lead stage: {stage}{_lead_note(stage, self.lead_now)} is higher than the "
                    f"best active membership ({mark_stage} in account {_label(aid, name)})"
                )
            else:
                stage = mark_stage
                note = f" (high-water mark; now {current})" if current != mark_stage else ""
                rule = f"best active membership: {stage} in account {_label(aid, name)}{note}"
        elif self.rows or any(m.subject == MEMBERSHIP_MARK for m in self.marks):
            stage, churned = scale.churned, True
            gone = set(self.gone)
            earlier = sorted(
                m.account_id
                for m in self.marks
                if m.subject == MEMBERSHIP_MARK
                and m.account_id not in self.seen
                and m.account_id not in gone
            )
            parts = []
            if self.churned_here:
                parts.append(f"churned: {_names(sorted(self.churned_here))}")
            if gone:
                parts.append(f"left the store: {_names(sorted(gone))}")
            if earlier:
                parts.append(f"churned or left earlier: {_names(earlier)}")
            rule = f"all memberships churned ({'; '.join(parts)})"
        elif lead is not None:
            stage = lead[0]
            rule = f"lead stage: {stage}{_lead_note(stage, self.lead_now)} (no memberships)"
        elif self.lead_churned:
            stage, churned = scale.churned, True
            rule = "lead churned and no memberships"
        else:
            stage = scale.lowest
            rule = f"no memberships and no lead stage: lowest stage {stage}"
        self.rows.sort()
        return UserStage(
            stage,
            rule,
            churned,
            tuple([r[3] for r in self.rows]),
            tuple(self.marks),
            tuple(self.changed),
            tuple(sorted(self.gone)),
        )


def _label(account_id: str, name: str | None) -> str:
    return f"{account_id} ({name})" if name and name != account_id else account_id


def _lead_note(mark: str, current: str | None) -> str:
    if current is None:
        return " (high-water mark; no lead stage in the store now)"
    if current != mark:
        return f" (high-water mark; lead_stage now {current})"
    return ""


# --- an account ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountStage:
    """What the stage policy decided for one account's own stage; ``mark`` is its new mark."""

    stage: str
    rule: str
    churned: bool
    mark: Mark
    changed: bool


def resolve_account_stage(
    account: Account,
    previous: Mark | None,
    ladder: StageLadder | StageScale,
    *,
    now: datetime | None = None,
) -> AccountStage:
    """The account's own stage: the same high-water rule over the account row's history."""
    scale = as_scale(ladder)
    aid = account.account_id
    if account.stage is None:
        stage, rank = scale.lowest, 0
    else:
        try:
            stage, rank = scale.lookup(account.stage)
        except UnknownStage as exc:
            raise unknown_stage(
                exc, scale, user_id=None, account_id=aid, source="accounts"
            ) from None
    mark, mark_stage, _ = advance_mark(
        previous,
        stage,
        rank,
        scale,
        subject=ACCOUNT_MARK,
        user_id="",
        account_id=aid,
        now=now or datetime.now(UTC),
    )
    if mark_stage is None:
        return AccountStage(scale.churned, "account churned", True, mark, mark is not previous)
    if account.stage is None and mark_stage == stage:
        rule = f"no stage in the store: lowest stage {stage}"
    elif mark_stage != stage:
        rule = f"high-water mark: {mark_stage} (now {stage})"
    else:
        rule = f"account stage: {stage}"
    return AccountStage(mark_stage, rule, False, mark, mark is not previous)


def member_mark(
    previous: Mark | None, stage: str, rank: int, scale: StageScale
) -> tuple[str | None, int]:
    """The mark a membership has this run, for the account-side view (which saves nothing).

    Same rule as :func:`advance_mark`, without building the :class:`Mark`.
    """
    if rank < 0:
        return None, -1
    live = _mark_stage(previous, scale) if previous is not None else None
    if live is not None and live[1] >= rank:
        return live
    return stage, rank
