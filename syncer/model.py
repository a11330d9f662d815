"""Canonical records, the stage ladder and the resolved views.

Everything downstream of the store works on these small immutable records. This module imports
nothing from syncer but :mod:`syncer.frozen` (how its records are built, a leaf): it is the
vocabulary the other packages share.

Conventions every module relies on:

* Keys (``account_id``, ``user_id``) are strings and sort by code point (``sorted()`` order, the
  ``C`` collation in PostgreSQL, ``BINARY`` in SQLite). Streams are in that order so two sorted
  streams (store rows, policy marks) can be merged without loading either into memory.
* Timestamps are timezone-aware UTC ``datetime`` objects (or ``None``).
* Stage names are canonical ladder names once they leave the store reader; raw values from input
  files are normalised through :meth:`StageLadder.normalize`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from syncer.frozen import fast_init

if TYPE_CHECKING:
    from syncer.rejections import StoreRejection  # a leaf module: the model still imports nothing

JSON = dict[str, Any]


DEFAULT_STAGES: tuple[str, ...] = ("visitor", "MAL", "MQL", "CUS", "PRO")
#: Numeric account attributes that roll up to every ancestor when the config names none.
DEFAULT_ROLLUPS: Mapping[str, str] = MappingProxyType({"licenses": "sum", "contract_value": "sum"})
DEFAULT_CHURNED = "churned"
DEFAULT_ALIASES: Mapping[str, str] = {
    "lead": "visitor",
    "marketing_active_lead": "MAL",
    "marketing_qualified_lead": "MQL",
    "customer": "CUS",
    "professional": "PRO",
    "churn": "churned",
    "cancelled": "churned",
    "canceled": "churned",
}


class UnknownStage(ValueError):
    """A stage name that is neither on the ladder, an alias, nor the churn marker.

    Raised bare by the ladder; callers that know the record (user, account, file, line) wrap it
    into :class:`syncer.errors.UnknownStageError` so the message says where the value came from.
    """

    def __init__(self, value: object, ladder: StageLadder) -> None:
        self.value = value
        self.ladder = ladder
        super().__init__(
            f"unknown stage {value!r}; expected one of {', '.join(ladder.names)} "
            f"or {ladder.churned!r} (aliases: {', '.join(sorted(ladder.aliases)) or 'none'})"
        )


@dataclass(frozen=True, slots=True)
class StageLadder:
    """Ordered lifecycle stages, lowest first, plus the terminal churn marker.

    ``rank`` is the position on the ladder; the churn marker ranks below every stage (-1) so that
    ``max`` over ranks never prefers it. Matching is case-insensitive; ``aliases`` map other
    spellings (``customer``) to canonical names (``CUS``).
    """

    names: tuple[str, ...] = DEFAULT_STAGES
    churned: str = DEFAULT_CHURNED
    aliases: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ALIASES))
    _lookup: Mapping[str, str] = field(init=False, repr=False, compare=False)
    _rank: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("a stage ladder needs at least one stage")
        lowered = [n.lower() for n in self.names]
        if len(set(lowered)) != len(lowered):
            raise ValueError(f"stage names must be unique ignoring case: {list(self.names)}")
        if self.churned.lower() in lowered:
            raise ValueError(f"the churn marker {self.churned!r} cannot also be a stage")
        names: dict[str, str] = {n.lower(): n for n in self.names}
        names[self.churned.lower()] = self.churned
        lookup = dict(names)
        for alias, target in self.aliases.items():
            canonical = names.get(target.lower())
            if canonical is None:
                raise ValueError(f"stage alias {alias!r} points at unknown stage {target!r}")
            taken = names.get(alias.lower())
            if taken is not None and taken != canonical:
                # Would be silently shadowed by the stage name: say so instead.
                raise ValueError(
                    f"stage alias {alias!r} -> {canonical!r} clashes with the stage {taken!r}"
                )
            lookup[alias.lower()] = canonical  # a later alias of the same spelling wins
        object.__setattr__(self, "_lookup", lookup)
        rank = {n: i for i, n in enumerate(self.names)}
        rank[self.churned] = -1
        object.__setattr__(self, "_rank", rank)

    def normalize(self, value: str) -> str:
        """Return the canonical name for ``value`` (a stage, an alias or the churn marker)."""
        try:
            return self._lookup[value.strip().lower()]
        except (KeyError, AttributeError):
            raise UnknownStage(value, self) from None

    def rank(self, name: str) -> int:
        """Position of a canonical stage name; the churn marker is -1."""
        try:
            return self._rank[name]
        except KeyError:
            return self._rank[self.normalize(name)]

    def is_churned(self, name: str) -> bool:
        return name == self.churned

    def best(self, names: Iterable[str]) -> str | None:
        """The highest non-churned stage among ``names``, or ``None`` if there is none."""
        best: str | None = None
        best_rank = -1
        for n in names:
            r = self._rank[n]
            if r > best_rank:
                best, best_rank = n, r
        return best

    @property
    def lowest(self) -> str:
        return self.names[0]


DEFAULT_LADDER = StageLadder()


# --- canonical store records -------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class Account:
    account_id: str
    name: str | None = None
    domain: str | None = None
    parent_account_id: str | None = None
    stage: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    lead_stage: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class Membership:
    user_id: str
    account_id: str
    role: str | None = None
    stage: str | None = None
    joined_at: datetime | None = None
    updated_at: datetime | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class Identity:
    """A foreign system's id for one of our entities: all roads lead to account_id."""

    entity: str  # "account" or "user"
    entity_id: str
    system: str  # "hubspot", "salesforce", "stripe", "zendesk", ...
    external_id: str


@fast_init
@dataclass(frozen=True, slots=True)
class UserWithMemberships:
    """One user and all of their membership rows, as the store reader streams them."""

    user: User
    memberships: tuple[Membership, ...]


@fast_init
@dataclass(frozen=True, slots=True)
class MemberRow:
    """A membership seen from the account side, with the user fields account views need."""

    membership: Membership
    email: str | None
    first_name: str | None
    last_name: str | None


@fast_init
@dataclass(frozen=True, slots=True)
class AccountWithMembers:
    """One account and all of its membership rows, as the store reader streams them."""

    account: Account
    members: tuple[MemberRow, ...]


# --- policy state --------------------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class Mark:
    """The high-water mark of one membership (or of one account's own stage).

    ``stage`` is the best stage reached since the subject last churned, ``None`` once it churned.
    ``churned`` is kept as a tombstone so that a user whose memberships all churned (or vanished)
    stays ``churned`` on later runs instead of falling back to the lead stage.
    """

    subject: str  # "membership", "account", "lead" or "primary" (see the *_MARK constants)
    user_id: str  # "" for account marks
    account_id: str  # "" for lead marks
    stage: str | None
    churned: bool = False
    updated_at: datetime | None = None


# Mark subjects. "lead" is the high-water mark of a user's own lead_stage, keyed (user_id, "").
# "primary" records a user's primary account (account_id); churned=True retires a former primary.
MEMBERSHIP_MARK = "membership"
ACCOUNT_MARK = "account"
LEAD_MARK = "lead"
PRIMARY_MARK = "primary"


# --- resolved views (what mappings render) --------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class ResolvedMembership:
    """A user's membership after the stage policy: current stage, mark, and account facts."""

    account_id: str
    account_name: str | None
    parent_account_id: str | None
    role: str | None
    stage: str  # the current stage from the store, canonical (may be the churn marker)
    mark: str | None  # high-water mark since last churn; None when churned
    churned: bool
    joined_at: datetime | None
    primary: bool = False

    @property
    def active(self) -> bool:
        return not self.churned


@fast_init
@dataclass(frozen=True, slots=True)
class ResolvedUser:
    """A user after all policies: the record a contact-level mapping renders."""

    user: User
    memberships: tuple[ResolvedMembership, ...]  # active first, best mark first, then account_id
    stage: str  # resolved stage (a ladder name or the churn marker)
    primary_account_id: str | None
    churned: bool
    rule: str  # which policy rule decided ``stage``, for `syncer explain`
    primary_rule: str = ""  # why ``primary_account_id`` is the primary, for `syncer explain`
    problem: StoreRejection | None = None  # why the user cannot sync (bad data in the store)

    @property
    def key(self) -> str:
        return self.user.user_id

    @property
    def active_memberships(self) -> tuple[ResolvedMembership, ...]:
        return tuple(m for m in self.memberships if m.active)


@fast_init
@dataclass(frozen=True, slots=True)
class ResolvedMember:
    """An active member of an account, with their stage in that account."""

    user_id: str
    email: str | None
    first_name: str | None
    last_name: str | None
    role: str | None
    stage: str  # current stage in this account
    mark: str | None
    joined_at: datetime | None


@fast_init
@dataclass(frozen=True, slots=True)
class ResolvedAccount:
    """An account after all policies: the record a company-level mapping renders."""

    account: Account
    members: tuple[ResolvedMember, ...]  # active members, best stage first, then user_id
    stage: str  # the account's own stage under the monotonic rule
    rollups: Mapping[str, float]  # configured numeric attributes summed over the subtree
    ancestors: tuple[str, ...]  # parent first, root last
    children: tuple[str, ...] = ()
    rule: str = ""
    problem: StoreRejection | None = None  # why the account cannot sync (bad data in the store)

    @property
    def key(self) -> str:
        return self.account.account_id
