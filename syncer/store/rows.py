"""Store rows made into the records of :mod:`syncer.model`: the readers' hot path.

Every user, account and membership of every plan goes through here once (a membership once per
side), so the loops are written for CPython: driver tuples unpacked by position, timestamps
parsed inline, records yielded one at a time. :mod:`syncer.store.readers` runs the queries.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Table
from sqlalchemy.engine import Row

from syncer.db import as_utc
from syncer.model import (
    Account,
    AccountWithMembers,
    MemberRow,
    Membership,
    User,
    UserWithMemberships,
)
from syncer.rejections import UnreadableAttributes
from syncer.store.keys import RowsRead
from syncer.store.schema import accounts, data_columns, memberships, users
from syncer.store.unreadable import Unreadable, marked, unreadable_membership, unreadable_record


def _attributes(value: Any, *, decoded: bool = False) -> dict[str, Any]:
    """Attributes from a stored mapping or JSON text (SQLite); else UnreadableAttributes."""
    if type(value) is dict and decoded:  # fresh from the driver, no one else holds it: no copy
        return value
    if isinstance(value, str):
        try:
            value = json_value(value)
        except ValueError as exc:  # text another job wrote: the record is rejected, not the run
            value = UnreadableAttributes(value, f"invalid JSON: {exc}")
        if isinstance(value, dict):  # UnreadableAttributes too (a dict)
            return value
    if isinstance(value, Mapping):
        return dict(value)
    return UnreadableAttributes(json.dumps(value), "not an object") if value is not None else {}


# The decoder's C scanner (typeshed does not declare the attribute).
_scan_json = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def json_value(text: str) -> Any:
    """The value of a JSON text, as ``json.loads`` gives it.

    Stored JSON is syncer's own compact output, read once per user and account of every plan:
    the C scanner alone is 3-4x cheaper than ``json.loads`` (whose Python wrapper and
    whitespace regexes dominate a short text). Anything it does not take whole (whitespace
    around the value, an error) goes through ``json.loads``, which raises as usual.
    """
    try:
        value, end = _scan_json(text, 0)
    except StopIteration:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


StoreRow = Row[Any] | tuple[Any, ...] | Mapping[str, Any]
"""A store row: a SQLAlchemy Row or a driver tuple (positional, in table column order), or a
mapping by column name."""


def _by_name(row: Mapping[str, Any], table: Table) -> tuple[Any, ...]:
    """A mapping's values in ``table``'s column order, as the driver would give them."""
    return tuple(row[column.name] for column in data_columns(table))


def account_from_row(row: StoreRow) -> Account:
    """An :class:`Account` from a row of the ``accounts`` table."""
    return _described(row, accounts, Account)


def user_from_row(row: StoreRow) -> User:
    """A :class:`User` from a row of the ``users`` table."""
    return _described(row, users, User)


_R = TypeVar("_R", Account, User)


def _described(row: StoreRow, table: Table, record: type[_R]) -> _R:
    """An account or a user: both tables, and both records, are the key, three texts, the
    stage, attributes and two timestamps, in this order.

    A Row or a driver tuple is unpacked as it is (its JSON was decoded just now and nobody else
    holds it); a mapping is put in column order first, and its attributes copied. This runs
    once per user and account of every plan: positional, no lookups by name.
    """
    fresh = isinstance(row, (tuple, Row))
    values = row if fresh else _by_name(row, table)  # type: ignore[arg-type]
    key, a, b, c, stage, attrs, created, updated = values
    attributes = _attributes(attrs, decoded=fresh)
    try:
        # SQLite's stored text, parsed as as_utc() parses it first, without its call per value.
        if created.__class__ is str and updated.__class__ is str:
            at = _fromiso(created + _Z)  # equal texts (never updated) are one parse
            return record(
                key,
                a,
                b,
                c,
                stage,
                attributes,
                at,
                at if updated == created else _fromiso(updated + _Z),
            )
    except ValueError:
        pass  # text with its own offset, or no timestamp at all: as_utc() tells which
    try:
        return record(key, a, b, c, stage, attributes, as_utc(created), as_utc(updated))
    except ValueError:  # a timestamp another job wrote as text: the record is rejected, not the run
        return unreadable_record(table.name, record, values, attributes)


# The first step of as_utc() on SQLite's text (see there), inlined in _described and
# _membership: they run once per record and membership row of every plan, and the call costs as
# much as the parse. Any text it does not take goes through as_utc() itself, so the values, and
# the rejections, are the same.
_fromiso = datetime.fromisoformat
_Z = "+00:00"


def _membership(r: tuple[Any, ...]) -> tuple[Membership, Unreadable | None]:
    """The membership of a row whose first columns are the ``memberships`` columns in table
    order, and None; or, for an unreadable timestamp (text another job wrote), the membership
    :func:`unreadable_membership` makes and why, which rejects its user or account.

    Runs once per membership row of every plan: SQLite's stored text is parsed inline, and only
    what that does not take goes through :func:`as_utc`.
    """
    joined, updated = r[4], r[5]
    try:
        if joined.__class__ is str and updated.__class__ is str:
            # Two equal texts are one parse: a membership that never changed after it began
            # (the common row) has its join time as its update time.
            at = _fromiso(joined + _Z)
            return Membership(
                r[0], r[1], r[2], r[3], at, at if updated == joined else _fromiso(updated + _Z)
            ), None
    except ValueError:
        pass
    try:
        return Membership(r[0], r[1], r[2], r[3], as_utc(joined), as_utc(updated)), None
    except ValueError:
        return unreadable_membership(r)


def membership_from_row(row: StoreRow) -> Membership:
    """A :class:`Membership` from a row whose first columns are the ``memberships`` columns in
    table order (``select(memberships, ...)``)."""
    values = row if isinstance(row, (tuple, Row)) else _by_name(row, memberships)
    uid, aid, role, stage, joined, updated = values[:6]
    return Membership(uid, aid, role, stage, as_utc(joined), as_utc(updated))


def users_page(
    page: list[tuple[Any, ...]], rows: list[tuple[Any, ...]]
) -> Iterator[UserWithMemberships]:
    """One page of users with their membership rows, both in ``user_id`` order, merged.

    Runs once per user and membership of every plan: one index walks the rows (no iterator per
    user), and records are yielded one at a time (a page built into a list first costs more in
    garbage collection).
    """
    i, n = 0, len(rows)
    for u in page:
        user_id = u[0]
        while i < n and rows[i][0] < user_id:
            i += 1  # a membership of no user in the page (not with foreign keys on)
        mine: list[Membership] = []
        bad = None
        while i < n:
            r = rows[i]
            if r[0] != user_id:
                break
            i += 1
            ms, unreadable = _membership(r)
            if unreadable is not None:  # a timestamp another job wrote: the user is rejected
                bad = unreadable
            mine.append(ms)
        user = _described(u, users, User)  # user_from_row() without its call
        yield UserWithMemberships(user if bad is None else marked(user, bad), tuple(mine))


def accounts_page(
    page: list[tuple[Any, ...]], rows: Iterable[Any], read: RowsRead | None
) -> Iterator[AccountWithMembers]:
    """One page of accounts with their member rows, both in ``account_id`` order, merged.

    Runs once per member row of every plan: one loop over the rows (no call per row to fetch
    the next), each account yielded once its rows are over.
    """
    accounts_left = iter(page)
    a = next(accounts_left, None)
    if a is None:
        return
    key = a[0]
    members: list[MemberRow] = []
    bad: Unreadable | None = None
    for r in rows:
        if r[1] != key:
            if r[1] < key:
                continue  # no such account row: nothing to attach to
            while a is not None and key < r[1]:
                yield _account(a, members, bad, read)
                a = next(accounts_left, None)
                key = a[0] if a is not None else None
                members, bad = [], None
            if a is None:
                return
            if r[1] != key:
                continue  # the row's account is not in the page (not with foreign keys on)
        ms, unreadable = _membership(r)
        if unreadable is not None:  # a timestamp another job wrote: the account is rejected
            bad = unreadable
        members.append(MemberRow(ms, r[6], r[7], r[8]))
    while a is not None:
        yield _account(a, members, bad, read)
        a = next(accounts_left, None)
        members, bad = [], None


def _account(
    a: tuple[Any, ...], members: list[MemberRow], bad: Unreadable | None, read: RowsRead | None
) -> AccountWithMembers:
    if read is not None:
        read.memberships += len(members)
    account = account_from_row(a)
    return AccountWithMembers(account if bad is None else marked(account, bad), tuple(members))


def member_rows(
    rows: Iterable[Any], wanted: Mapping[str, Collection[str]]
) -> tuple[dict[str, list[MemberRow]], set[str]]:
    """Account-side member rows (the account reader's columns) of the pairs ``wanted``
    (``account_id → user_ids``) by account, in the rows' order; and the accounts of which one
    such row is unreadable (their members are read whole instead: the account is rejected)."""
    found: dict[str, list[MemberRow]] = {}
    bad: set[str] = set()
    for r in rows:
        users = wanted.get(r[1])
        if users is None or r[0] not in users:
            continue
        ms, unreadable = _membership(r)
        if unreadable is not None:
            bad.add(r[1])
        found.setdefault(r[1], []).append(MemberRow(ms, r[6], r[7], r[8]))
    return found, bad
