"""The account hierarchy: a forest by ``parent_account_id``, with numeric roll-ups.

Each configured attribute rolls up to every ancestor: the value at a node is the aggregate over
its whole subtree, the node itself included. Aggregates:

========= ======================================================================================
``sum``   (the default) the sum of the numeric values
``min``   the smallest numeric value
``max``   the largest numeric value
``count`` how many accounts in the subtree have the attribute at all (any non-null value)
========= ======================================================================================

Decisions:

* Numeric means ``int`` or ``float`` (not ``bool``), finite. Anything else (strings, even ones
  that look like numbers, NaN, lists: ``syncer load`` refuses them, the product's own SQL may
  not) is never coerced: it *rejects* the account holding it and every ancestor, whose roll-ups
  would leave it out without a word (:meth:`Hierarchy.rejection` names account, attribute, value
  and fix; :attr:`Hierarchy.skipped` counts them). ``count`` counts present values of any type.
* A subtree with no numeric value has no ``sum``/``min``/``max`` entry at all (``None`` for the
  CRM means "unknown", which 0 would misstate); ``count`` is always there, possibly 0.
* Integer inputs give integer sums. Float sums add the node's own value first, then each child's
  subtotal in ``account_id`` order, so the result depends only on the tree, never on input order.

An account in a cycle or whose parent is not an account is *rejected*, and so is every account
under it (:meth:`Hierarchy.problem` says why, naming the whole cycle or the missing parent); the
rest of the forest is built, rolled up and synced as usual. A rejected account has no depth, no
ancestors, no children and no roll-ups; the mappings refuse it with that reason, so it shows in
the run report and ``syncer errors`` like any record the formatter refuses. Everything is iterative:
depth is unbounded and 200k accounts take well under a second. Virtual child accounts (account ×
product, ``XYZ_Widget1`` under ``XYZ``) need nothing special: they are accounts with a parent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from syncer.errors import BadInputError, Problem
from syncer.model import Account
from syncer.rejections import (
    BadValue,
    StoreRejection,
    UnreadableAttributes,
    not_a_number,
    unreadable_below,
)

AGGREGATES: tuple[str, ...] = ("sum", "min", "max", "count")

Number = int | float
AccountFacts = tuple[str | None, str | None]
"""``(name, parent_account_id)`` of one account."""
NO_FACTS: AccountFacts = (None, None)
"""The facts of an account the hierarchy does not know."""


def is_number(value: object) -> bool:
    """Whether ``value`` takes part in ``sum``/``min``/``max``: a finite int or float, not bool."""
    kind = type(value)
    if kind is int:
        return True
    return kind is float and math.isfinite(value)  # type: ignore[arg-type]


class Hierarchy:
    """Parents, children, depths and roll-ups of every account; read-only once built.

    Build it with :meth:`from_accounts`. Only ids, names, parents and the rolled-up numbers are
    kept, not the :class:`Account` records, so a few hundred thousand accounts stay small.
    """

    __slots__ = (
        "_bad",
        "_cause",
        "_children",
        "_culprit",
        "_depth",
        "_info",
        "_parent",
        "_rollups",
        "aggregates",
        "skipped",
    )

    def __init__(
        self,
        parent: dict[str, str | None],
        name: dict[str, str | None],
        aggregates: Mapping[str, str],
    ) -> None:
        self._parent = parent
        # (name, parent) per account, built once: resolving reads it for every membership.
        self._info: dict[str, AccountFacts] = {a: (name.get(a), p) for a, p in parent.items()}
        self.aggregates: Mapping[str, str] = dict(aggregates)
        self._children: dict[str, list[str]] = {}
        self._depth: dict[str, int] = {}
        self._rollups: dict[str, dict[str, Number]] = {}
        #: attribute -> how many present values are not numbers (each rejects accounts).
        self.skipped: dict[str, int] = {}
        # Rejected accounts: each names the account whose own parent is wrong (itself, or the
        # ancestor it sits under), and that account says what is wrong.
        self._culprit: dict[str, str] = {}
        self._cause: dict[str, str] = {}
        # Accounts rejected for a roll-up value that is not a number (theirs or below them).
        self._bad: dict[str, StoreRejection] = {}

    # --- building ---------------------------------------------------------------------------

    @classmethod
    def from_accounts(
        cls, accounts: Iterable[Account], rollups: Mapping[str, str] | None = None
    ) -> Hierarchy:
        """The hierarchy of ``accounts`` with ``rollups`` (attribute -> aggregate) computed.

        Accounts in a cycle or under a missing parent, and their descendants, are rejected (see
        :meth:`problem`), not raised: the rest of the forest syncs. Raises
        :class:`BadInputError` for an id listed twice (the store's primary key prevents it) and
        ``ValueError`` for an aggregate name that is not one of :data:`AGGREGATES`.
        """
        aggregates = dict(rollups or {})
        for attr, agg in aggregates.items():
            if agg not in AGGREGATES:
                raise ValueError(
                    f"roll-up of {attr!r}: unknown aggregate {agg!r}; use {AGGREGATES}"
                )
        parent: dict[str, str | None] = {}
        name: dict[str, str | None] = {}
        values: dict[str, dict[str, Any]] = {attr: {} for attr in aggregates}
        problems: list[Problem] = []
        unreadable: list[str] = []  # accounts whose attributes are not a JSON object
        for account in accounts:
            aid = account.account_id
            if aid in parent:
                problems.append(Problem("account listed twice", key=aid, hint="keep one row"))
                continue
            parent[aid] = account.parent_account_id or None
            name[aid] = account.name
            attrs = account.attributes
            if type(attrs) is UnreadableAttributes and aggregates:
                unreadable.append(aid)
            for attr, found in values.items():
                value = attrs.get(attr)
                if value is not None:
                    found[aid] = value
        if problems:
            raise BadInputError(problems, summary="the account list has duplicates")
        tree = cls(parent, name, aggregates)
        tree._link()
        tree._roll_up(values, unreadable)
        return tree

    def _link(self) -> None:
        """Children lists and depths of the valid accounts; the rejected ones and why.

        An account in a cycle or under a parent that is not an account is rejected, and so is
        every account under it: no valid account ever has a rejected child (each has one
        parent), so the valid accounts alone form a forest and roll up as usual.
        """
        parent, depth = self._parent, self._depth
        culprit, cause = self._culprit, self._cause
        for start in parent:
            if start in depth or start in culprit:
                continue
            # Walk up until a node of known fate, a root, or a node already on this path.
            path: list[str] = []
            on_path: dict[str, int] = {}
            node: str | None = start
            base = -1  # depth of the node above the path's top
            blame: str | None = None  # the rejected account the path ends under
            while node is not None:
                if node in depth:
                    base = depth[node]
                    break
                if node in culprit:
                    blame = culprit[node]
                    break
                if node in on_path:
                    members = path[on_path[node] :]
                    # Named from its smallest id, so the text does not depend on input order.
                    first = members.index(min(members))
                    cycle = [*members[first:], *members[:first], members[first]]
                    reason = f"parent_account_id forms a cycle: {' → '.join(cycle)}"
                    for n in members:
                        culprit[n] = n
                        cause[n] = reason
                    del path[on_path[node] :]
                    blame = node
                    break
                on_path[node] = len(path)
                path.append(node)
                up = parent[node]
                if up is not None and up not in parent:
                    culprit[node] = node
                    cause[node] = f"parent_account_id {up!r} is not an account"
                    path.pop()
                    blame = node
                    break
                node = up
            if blame is not None:
                for n in path:  # descendants of the rejected account
                    culprit[n] = blame
                continue
            for offset, n in enumerate(reversed(path), start=1):
                depth[n] = base + offset
        children = self._children
        for aid, up in parent.items():
            if up is not None and aid in depth:
                children.setdefault(up, []).append(aid)
        for kids in children.values():
            kids.sort()

    def _roll_up(self, values: dict[str, dict[str, Any]], unreadable: list[str]) -> None:
        # Deepest level first, so every child's subtotal exists before its parent needs it.
        levels: dict[int, list[str]] = {}
        for aid, d in self._depth.items():
            levels.setdefault(d, []).append(aid)
        order = [aid for d in sorted(levels, reverse=True) for aid in levels[d]]
        bad = [unreadable_below(aid) for aid in unreadable if aid in self._depth]
        for attr, agg in self.aggregates.items():
            own = values[attr]
            if agg == "count":
                self._rollups[attr] = self._count(order, own)
                continue
            numbers: dict[str, Number] = {}
            skipped = 0
            for aid, value in own.items():
                if is_number(value):
                    numbers[aid] = value
                else:
                    skipped += 1
                    if aid in self._depth:  # a rejected account's value rolls up nowhere
                        bad.append(not_a_number(aid, attr, agg, value))
            self.skipped[attr] = skipped
            self._rollups[attr] = self._fold(order, numbers, agg)
        if bad:
            self._reject_values(bad)

    def _reject_values(self, bad: list[BadValue]) -> None:
        """Reject each account of ``bad`` (its own rejection, if any) and its ancestors (the
        inherited one). Own first, then the smallest ids: the text never depends on input
        order."""
        bad.sort(key=lambda b: (b[0], b[2].field))
        rejected = self._bad
        for aid, own, _ in bad:
            if own is not None:
                rejected.setdefault(aid, own)
        for aid, _, inherited in bad:
            up = self._parent.get(aid)
            while up is not None:
                rejected.setdefault(up, inherited)
                up = self._parent.get(up)

    def _count(self, order: list[str], present: Mapping[str, Any]) -> dict[str, Number]:
        total: dict[str, Number] = {}
        for aid in order:
            n: Number = 1 if aid in present else 0
            for child in self._children.get(aid, ()):
                n += total[child]
            total[aid] = n
        return total

    def _fold(self, order: list[str], numbers: dict[str, Number], agg: str) -> dict[str, Number]:
        result: dict[str, Number] = {}
        combine: Callable[[Number, Number], Number] = {"sum": _add, "min": _min, "max": _max}[agg]
        for aid in order:
            acc = numbers.get(aid)
            for child in self._children.get(aid, ()):
                sub = result.get(child)
                if sub is not None:
                    acc = sub if acc is None else combine(acc, sub)
            if acc is not None:
                result[aid] = acc
        return result

    # --- reading ----------------------------------------------------------------------------

    def __contains__(self, account_id: object) -> bool:
        return account_id in self._parent

    def __len__(self) -> int:
        return len(self._parent)

    def __iter__(self) -> Iterator[str]:
        return iter(self._parent)

    def name(self, account_id: str) -> str | None:
        """The account's name (``None`` if it has none or is unknown)."""
        return self._info.get(account_id, NO_FACTS)[0]

    def parent(self, account_id: str) -> str | None:
        """The account's parent id, ``None`` for a root or an unknown account."""
        return self._parent.get(account_id)

    def info(self, account_id: str) -> AccountFacts:
        """``(name, parent_account_id)``: what a resolved membership shows of its account."""
        return self._info.get(account_id, NO_FACTS)

    def facts(self) -> Mapping[str, AccountFacts]:
        """Every account's ``(name, parent_account_id)`` by id (read-only by contract): the
        resolver looks memberships up in it directly, without a method call per membership."""
        return self._info

    def problem(self, account_id: str) -> str | None:
        """Why the account is rejected (a cycle or a missing parent at or above it, a roll-up
        value that is not a number at or below it), or ``None``."""
        rejection = self.rejection(account_id)
        return None if rejection is None else rejection.reason

    def rejection(self, account_id: str) -> StoreRejection | None:
        """:meth:`problem` with the column at fault (``parent_account_id``, ``attributes.X``)."""
        blame = self._culprit.get(account_id)
        if blame is None:
            return self._bad.get(account_id)
        if blame == account_id:
            return StoreRejection("parent_account_id", self._cause[account_id])
        return StoreRejection(
            "parent_account_id",
            f"under account {blame!r}, which is rejected: {self._cause[blame]}",
        )

    def problems(self) -> list[Problem]:
        """Every rejected account with its reason, in ``account_id`` order (for reports)."""
        found = [(aid, self.rejection(aid)) for aid in sorted({*self._culprit, *self._bad})]
        return [
            Problem(r.reason, key=aid, field=r.field, hint=_HINTS.get(r.field, _VALUE_HINT))
            for aid, r in found
            if r is not None
        ]

    def depth(self, account_id: str) -> int:
        """0 for a root, 1 for its children, and so on; ``KeyError`` for a rejected account."""
        return self._depth[account_id]

    def ancestors(self, account_id: str) -> tuple[str, ...]:
        """The account's ancestors, parent first, root last; none for an account whose chain
        is wrong."""
        if account_id in self._culprit:
            return ()
        out: list[str] = []
        up = self._parent.get(account_id)
        while up is not None:
            out.append(up)
            up = self._parent.get(up)
        return tuple(out)

    def children(self, account_id: str) -> tuple[str, ...]:
        """The account's direct children in ``account_id`` order."""
        return tuple(self._children.get(account_id, ()))

    def subtree(self, account_id: str) -> Iterator[str]:
        """The account and all its descendants, depth first, children in ``account_id`` order."""
        stack = [account_id]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(self._children.get(node, ())))

    def roots(self) -> tuple[str, ...]:
        """Accounts without a parent, in ``account_id`` order."""
        return tuple(sorted(a for a, p in self._parent.items() if p is None))

    def rollups(self, account_id: str) -> dict[str, Number]:
        """The configured attributes aggregated over the account's subtree (absent: no value)."""
        out: dict[str, Number] = {}
        for attr, by_account in self._rollups.items():
            value = by_account.get(account_id)
            if value is not None:
                out[attr] = value
        return out


_HINTS = {
    "parent_account_id": "fix or clear parent_account_id of the account named; the others "
    "under it sync once it is fixed"
}
_VALUE_HINT = "fix the value of the account named; its parent accounts sync once it is fixed"


def _add(a: Number, b: Number) -> Number:
    return a + b


def _min(a: Number, b: Number) -> Number:
    return a if a <= b else b


def _max(a: Number, b: Number) -> Number:
    return a if a >= b else b
