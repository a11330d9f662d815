"""The resolver: store rows + previous marks → resolved users and accounts + marks to save.

Users (and accounts) arrive as a stream in key order, and so do the marks; the two streams are
merge-joined by key, so memory holds one user and their marks at a time, whatever the store's size.

Marks whose user (account) is no longer in the store are *passed over*: no resolved record is made
for them. Their memberships have left the store, which counts as churn, so the resolver turns their
live marks into tombstones (and retires a primary mark) and hands those to ``on_vanished`` if the
caller gave one — a user deleted and re-created later then starts afresh, as the rule requires.
Without ``on_vanished`` they are left as they are.

Only marks that changed are yielded: saving them is the caller's job, after the run's writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, TypeVar

from syncer.errors import UnknownStageError
from syncer.frozen import builder
from syncer.model import (
    ACCOUNT_MARK,
    LEAD_MARK,
    MEMBERSHIP_MARK,
    PRIMARY_MARK,
    AccountWithMembers,
    Mark,
    MemberRow,
    ResolvedAccount,
    ResolvedMember,
    ResolvedMembership,
    ResolvedUser,
    UnknownStage,
    User,
    UserWithMemberships,
)
from syncer.policies.hierarchy import Hierarchy
from syncer.policies.primary import choose_ranked_primary
from syncer.policies.stage import (
    StageScale,
    decide_user,
    member_mark,
    resolve_account_stage,
    unknown_stage,
)
from syncer.rejections import StoreRejection, UnreadableAttributes, UnreadableTimestamp

if TYPE_CHECKING:
    from syncer.policies import PolicySettings

T = TypeVar("T")

# The records built per user and per member of every plan, minus a check and a class switch
# each (syncer.frozen.builder).
_new_mark = builder(Mark)
_new_user = builder(ResolvedUser)
_new_member = builder(ResolvedMember)
VanishedSink = Callable[[list[Mark]], None]


class Resolver:
    """Applies the stage, primary-account and hierarchy policies of one :class:`PolicySettings`.

    ``now`` stamps the marks it creates (one timestamp per run keeps them comparable).
    """

    def __init__(
        self, settings: PolicySettings, hierarchy: Hierarchy, *, now: datetime | None = None
    ) -> None:
        self.settings = settings
        self.hierarchy = hierarchy
        self.scale = StageScale(settings.ladder)
        self.now = now or datetime.now(UTC)
        self._facts = hierarchy.facts()

    # --- users --------------------------------------------------------------------------------

    def resolve_user(
        self, item: UserWithMemberships, marks: Iterable[Mark]
    ) -> tuple[ResolvedUser, list[Mark]]:
        """One user with their previous marks → the resolved user and the marks that changed."""
        marks = marks if isinstance(marks, (list, tuple)) else list(marks)
        user = item.user
        uid = user.user_id
        now = self.now
        attrs = user.attributes  # the store readers' mark of bad data another job wrote
        if type(attrs) is UnreadableAttributes or type(attrs) is UnreadableTimestamp:
            return self._refused(user, attrs.rejection("users", uid)), []
        try:
            stage, rule, churned, memberships, _kept, decided, _gone = decide_user(
                user, item.memberships, marks, self.scale, facts=self._facts, now=now
            )
        except UnknownStageError as exc:
            if exc.column is None:  # the marks: the ladder changed, a configuration problem
                raise
            # A stage the ladder does not know in the user's rows: the user is refused (marks
            # untouched, nothing sent); the rest of the run goes on.
            return self._refused(user, _rejection(exc)), []
        live_primaries = (
            sorted(m.account_id for m in marks if m.subject == PRIMARY_MARK and not m.churned)
            if marks
            else ()
        )
        previous = live_primaries[0] if live_primaries else None
        primary, why = choose_ranked_primary(
            memberships, self.settings.primary, self.scale, previous=previous
        )
        changed = [*decided]  # and the primary's marks
        for old in live_primaries:
            if old != primary:
                changed.append(_new_mark(PRIMARY_MARK, uid, old, None, True, now))
        if primary is not None:
            memberships = _with_primary(memberships, primary)
            if primary not in live_primaries:
                changed.append(_new_mark(PRIMARY_MARK, uid, primary, None, False, now))
        return _new_user(user, memberships, stage, primary, churned, rule, why), changed

    def resolve_users(
        self,
        users: Iterable[UserWithMemberships],
        marks: Iterable[Mark],
        *,
        on_vanished: VanishedSink | None = None,
    ) -> Iterator[tuple[ResolvedUser, list[Mark]]]:
        """Resolve a ``user_id``-ordered stream of users against a mark stream.

        ``marks`` holds subjects ``"membership"``, ``"lead"`` and ``"primary"`` sorted by
        ``(user_id, account_id)`` (:meth:`syncer.state.marks.MarkStore.iter_marks`). Yields each
        user with the marks that changed. Raises ``ValueError`` if either stream is out of order.
        """
        for item, mine, orphans in _merge(users, _user_key, marks, _mark_user):
            if orphans and on_vanished is not None:
                self._vanish_users(orphans, on_vanished)
            if item is not None:
                yield self.resolve_user(item, mine)

    def _vanish_users(self, orphans: Sequence[Mark], sink: VanishedSink) -> None:
        out: list[Mark] = []
        for m in orphans:
            if m.subject in (MEMBERSHIP_MARK, LEAD_MARK, PRIMARY_MARK) and not m.churned:
                out.append(Mark(m.subject, m.user_id, m.account_id, None, True, self.now))
        if out:
            sink(out)

    def _refused(self, user: User, why: StoreRejection) -> ResolvedUser:
        lowest = self.scale.lowest
        return ResolvedUser(user, (), lowest, None, False, f"rejected: {why.reason}", problem=why)

    # --- accounts -----------------------------------------------------------------------------

    def resolve_account(
        self, item: AccountWithMembers, marks: Iterable[Mark]
    ) -> tuple[ResolvedAccount, list[Mark]]:
        """One account with its marks → the resolved account and its own mark if it changed.

        ``marks`` may hold the account's own mark (subject ``"account"``) and its members'
        membership marks, which give each member's high-water mark; only the account mark is
        ever written here (membership marks belong to user resolution).
        """
        account = item.account
        aid = account.account_id
        own: Mark | None = None
        member_marks: dict[str, Mark] = {}
        for m in marks:
            if m.subject == ACCOUNT_MARK:
                own = m
            elif m.subject == MEMBERSHIP_MARK:
                member_marks[m.user_id] = m
        scale = self.scale
        why: StoreRejection | None = None  # bad data in the store: the account is refused
        attrs = account.attributes
        if type(attrs) is UnreadableAttributes or type(attrs) is UnreadableTimestamp:
            why = attrs.rejection("accounts", aid)
        else:
            try:
                decided = resolve_account_stage(account, own, scale, now=self.now)
                ranked = self.members(aid, item.members, member_marks)
            except UnknownStageError as exc:
                why = _rejection(exc)
        if why is not None:
            rule = f"rejected: {why.reason}"
            return ResolvedAccount(account, (), scale.lowest, {}, (), (), rule, why), []
        tree = self.hierarchy
        changed = [decided.mark] if decided.changed else []
        return (
            ResolvedAccount(
                account,
                tuple([r[2] for r in ranked]),
                decided.stage,
                tree.rollups(aid),
                tree.ancestors(aid),
                tree.children(aid),
                decided.rule,
                tree.rejection(aid),
            ),
            changed,
        )

    def members(
        self, aid: str, rows: Iterable[MemberRow], member_marks: dict[str, Mark]
    ) -> list[tuple[int, str, ResolvedMember]]:
        """The active members among ``rows`` (member rows of account ``aid``, by user_id, and
        their membership marks by user_id), best stage first, then user_id: the whole list of
        an account, or a few of its members (:mod:`syncer.engine.member_tokens`).

        Runs once per member row of every plan: stage spellings are looked up in the scale's
        table directly (its method only on a miss), and a member with no mark (every member,
        when the account-side marks hold none) takes its current stage without a call. The
        store reads members in user_id order; while they come so, a stable sort by rank alone
        gives the (rank, user_id) order with no key tuple per member.
        """
        scale = self.scale
        spelled = scale.spellings.get
        lowest = scale.lowest
        mark_of = member_marks.get if member_marks else None
        ranked: list[tuple[int, str, ResolvedMember]] = []
        append = ranked.append
        last = ""
        ordered = True  # user_ids strictly increasing so far
        for row in rows:
            ms = row.membership
            raw = ms.stage
            if raw is None:
                stage, rank = lowest, 0
            else:
                hit = spelled(raw)
                if hit is None:
                    try:
                        hit = scale.lookup(raw)
                    except UnknownStage as exc:
                        raise unknown_stage(
                            exc, scale, user_id=ms.user_id, account_id=aid, source="memberships"
                        ) from None
                stage, rank = hit
            if rank < 0:
                continue
            uid = ms.user_id
            if uid <= last:
                ordered = False
            last = uid
            previous = None if mark_of is None else mark_of(uid)
            mark = stage if previous is None else member_mark(previous, stage, rank, scale)[0]
            member = _new_member(
                uid, row.email, row.first_name, row.last_name, ms.role, stage, mark, ms.joined_at
            )
            append((-rank, uid, member))
        if len(ranked) > 1:
            ranked.sort(key=_rank_order if ordered else _member_order)
        return ranked

    def resolve_accounts(
        self,
        accounts: Iterable[AccountWithMembers],
        marks: Iterable[Mark],
        *,
        on_vanished: VanishedSink | None = None,
    ) -> Iterator[tuple[ResolvedAccount, list[Mark]]]:
        """Resolve an ``account_id``-ordered stream of accounts against a mark stream.

        ``marks`` holds subject ``"account"`` marks, and optionally ``"membership"`` marks, sorted
        by ``(account_id, user_id)`` (:meth:`syncer.state.marks.MarkStore.iter_account_marks`).
        """
        for item, mine, orphans in _merge(accounts, _account_key, marks, _mark_account):
            if orphans and on_vanished is not None:
                dead = [
                    Mark(ACCOUNT_MARK, "", m.account_id, None, True, self.now)
                    for m in orphans
                    if m.subject == ACCOUNT_MARK and not m.churned
                ]
                if dead:
                    on_vanished(dead)
            if item is not None:
                yield self.resolve_account(item, mine)


def _rejection(exc: UnknownStageError) -> StoreRejection:
    """The record's rejection for a stage value in the store the ladder does not know."""
    problem = exc.problems[0]
    return StoreRejection(problem.field or "stage", f"{problem.message}: {problem.hint}")


# The primary flag's slot setter: the resolver flags the chosen membership in place (below).
_set_primary = ResolvedMembership.__dict__["primary"].__set__


def _with_primary(
    memberships: tuple[ResolvedMembership, ...], primary: str
) -> tuple[ResolvedMembership, ...]:
    """``memberships`` with the one of account ``primary`` flagged as the primary.

    The records were built by :func:`decide_user` in this same call and nobody else holds them
    yet, so the flag is set on the record itself, as its constructor would (a frozen record's
    slots are written through their descriptors, see :func:`syncer.frozen.fast_init`): a second
    record and a second tuple cost more than the rest of the primary policy, on every user.
    """
    for m in memberships:
        if m.account_id == primary:
            _set_primary(m, True)
            return memberships
    raise ValueError(f"primary account {primary!r} is not one of the user's memberships")


# C-level key getters (operator.attrgetter): the merge calls them once per user, account and mark.
_user_key: Callable[[UserWithMemberships], str] = attrgetter("user.user_id")
_account_key: Callable[[AccountWithMembers], str] = attrgetter("account.account_id")
_mark_user: Callable[[Mark], str] = attrgetter("user_id")
_mark_account: Callable[[Mark], str] = attrgetter("account_id")


# (-rank, user_id) of a ranked member, in C: the sort never compares the records themselves.
_member_order: Callable[[tuple[int, str, ResolvedMember]], tuple[int, str]] = itemgetter(0, 1)
_rank_order: Callable[[tuple[int, str, ResolvedMember]], int] = itemgetter(0)


_NO_MARKS: tuple[Mark, ...] = ()


def _merge(
    items: Iterable[T],
    key: Callable[[T], str],
    marks: Iterable[Mark],
    mark_key: Callable[[Mark], str],
) -> Iterator[tuple[T | None, Sequence[Mark], Sequence[Mark]]]:
    """Merge-join two key-ordered streams: ``(item, its marks, marks of keys passed over)``.

    Passed-over marks come out one key at a time (with ``item`` ``None`` after the last item), so
    a long run of vanished keys never piles up in memory.
    """
    it = iter(marks)
    pending = next(it, None)
    pending_key = mark_key(pending) if pending is not None else ""
    last: str | None = None

    def advance() -> None:
        nonlocal pending, pending_key
        previous = pending_key
        pending = next(it, None)
        if pending is not None:
            pending_key = mark_key(pending)
            if pending_key < previous:
                raise ValueError(
                    f"marks are not in key order ({pending_key!r} after {previous!r}); read them "
                    "with MarkStore, which orders them by code point"
                )

    for item in items:
        k = key(item)
        if last is not None and k <= last:
            raise ValueError(
                f"records are not in strictly increasing key order ({k!r} after {last!r}); the "
                "store readers must order by syncer.db.key_order"
            )
        last = k
        while pending is not None and pending_key < k:
            group_key, group = pending_key, []
            while pending is not None and pending_key == group_key:
                group.append(pending)
                advance()
            yield None, _NO_MARKS, group
        if pending is None or pending_key != k:
            # Most items have no marks (all of them, in a first plan): no list for none.
            yield item, _NO_MARKS, _NO_MARKS
            continue
        mine: list[Mark] = []
        while pending is not None and pending_key == k:
            mine.append(pending)
            advance()
        yield item, mine, _NO_MARKS
    while pending is not None:
        group_key, group = pending_key, []
        while pending is not None and pending_key == group_key:
            group.append(pending)
            advance()
        yield None, _NO_MARKS, group
