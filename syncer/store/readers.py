"""Streaming readers of the canonical store: model records in key order, bounded memory.

Users and accounts are read by keyset pagination (``WHERE key > :last ORDER BY key LIMIT n``)
and each page's membership rows with one range query, so memory holds one page at a time and no
query ever sorts more than a page's worth of rows through an index. Rows are SQLAlchemy Core
rows turned straight into the frozen records of :mod:`syncer.model` (no ORM objects).

Every ordering and range comparison on a key goes through :func:`syncer.db.key_order`, so the
order is code-point order (Python's ``sorted()``) on every database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Select,
    Table,
    and_,
    select,
    type_coerce,
)
from sqlalchemy.engine import Connection, Engine, Row

from syncer.db import (
    ALL_KEYS,
    KeyRange,
    RawType,
    as_utc,
    key_order,
    stream_rows,
)
from syncer.model import (
    Account,
    AccountWithMembers,
    Identity,
    MemberRow,
    Membership,
    User,
    UserWithMemberships,
)
from syncer.rejections import UnreadableAttributes
from syncer.store.keys import KeySet, RowsRead
from syncer.store.schema import accounts, data_columns, identities, memberships, users
from syncer.store.stats import store_stats  # noqa: F401  # moved there; still importable here
from syncer.store.unreadable import marked, read_each, unreadable_membership, unreadable_record

DEFAULT_CHUNK_SIZE = 2000


def _tuples(result: CursorResult[Any]) -> list[tuple[Any, ...]]:
    """All rows of an executed, unbuffered query as the driver's plain tuples.

    SQLAlchemy has compiled and bound the query; reading the DBAPI cursor directly skips Row
    objects and result processors, a third of the cost of a page on the hot path of every plan.
    Values come as the driver gives them: timestamps as SQLite's text or psycopg's datetimes
    (:func:`as_utc` takes both), JSON as SQLite's text or psycopg's decoded value
    (:func:`_attributes` takes both). Not for ``yield_per`` results, which pre-fetch a row.
    """
    try:
        options = result.context.execution_options
        if options.get("yield_per") or options.get("stream_results"):
            raise ValueError("_tuples() needs an unbuffered result, not a yield_per stream")
        return list(result.cursor.fetchall())
    finally:
        result.close()


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
        return record(key, a, b, c, stage, attributes, as_utc(created), as_utc(updated))
    except ValueError:  # a timestamp another job wrote as text: the record is rejected, not the run
        return unreadable_record(table.name, record, values, attributes)


def membership_from_row(row: StoreRow) -> Membership:
    """A :class:`Membership` from a row whose first columns are the ``memberships`` columns in
    table order (``select(memberships, ...)``)."""
    values = row if isinstance(row, (tuple, Row)) else _by_name(row, memberships)
    uid, aid, role, stage, joined, updated = values[:6]
    return Membership(uid, aid, role, stage, as_utc(joined), as_utc(updated))


def _raw(table: Table) -> list[ColumnElement[Any]]:
    """``table``'s data columns as the driver gives them (no result processor: a timestamp or
    JSON text another job wrote is read here, and a bad one rejects its record, not the run)."""
    return [type_coerce(c, RawType()).label(c.name) for c in data_columns(table)]


def _k(col: ColumnElement[Any], conn: Connection) -> Any:
    return key_order(col, conn)


Keys = KeyRange | KeySet
"""Which records a reader streams: a key range (all keys by default) or exactly a set of keys."""


def _pages(
    conn: Connection,
    key: ColumnElement[Any],
    query: Select[Any],
    chunk_size: int,
    keys: Keys = ALL_KEYS,
) -> Iterator[list[tuple[Any, ...]]]:
    """Keyset pages of ``query`` (whose first column is ``key``) ordered by ``key`` within
    ``keys``, each at most ``chunk_size`` driver tuples (a key set: one page per chunk of its
    keys that the store holds, looked up by primary key)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
    if isinstance(keys, KeySet):
        for chunk in keys.chunks(chunk_size):
            rows = _tuples(conn.execute(query.where(key.in_(chunk)).order_by(_k(key, conn))))
            if rows:
                yield rows
        return
    ordered = query.where(*keys.conditions(key, conn)).order_by(_k(key, conn)).limit(chunk_size)
    last: str | None = None
    while True:
        page_query = ordered if last is None else ordered.where(_k(key, conn) > last)
        rows = _tuples(conn.execute(page_query))
        if not rows:
            return
        yield rows
        if len(rows) < chunk_size:
            return
        last = rows[-1][0]


def _user_memberships_query(conn: Connection) -> Select[Any]:
    mu, ma = memberships.c.user_id, memberships.c.account_id
    return select(*_raw(memberships)).order_by(_k(mu, conn), _k(ma, conn))


def _page_members(
    conn: Connection, col: ColumnElement[Any], page: list[tuple[Any, ...]], keys: Keys
) -> ColumnElement[bool]:
    """The membership rows of a page's records: its keys (a key set), else its key range."""
    if isinstance(keys, KeySet):
        return col.in_([r[0] for r in page])
    return and_(_k(col, conn) >= page[0][0], _k(col, conn) <= page[-1][0])


def iter_users(
    engine: Engine,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    keys: Keys = ALL_KEYS,
    read: RowsRead | None = None,
) -> Iterator[UserWithMemberships]:
    """Every user (whose ``user_id`` is in ``keys``) in ``user_id`` order, each with all of its
    memberships (by ``account_id``). ``read`` (if given) counts the rows read.

    Reads ``chunk_size`` users per query plus one query for their memberships; the connection
    (and so, on SQLite, one read snapshot) is held while the iterator is alive.
    """
    uid, mu = users.c.user_id, memberships.c.user_id
    with engine.connect() as conn:
        member_query = _user_memberships_query(conn)
        for page in _pages(conn, uid, select(*data_columns(users)), chunk_size, keys):
            rows = _tuples(conn.execute(member_query.where(_page_members(conn, mu, page, keys))))
            if read is not None:
                read.users += len(page)
                read.memberships += len(rows)
            yield from _users_page(page, rows)


def _users_page(
    page: list[tuple[Any, ...]], rows: list[tuple[Any, ...]]
) -> Iterator[UserWithMemberships]:
    """One page of users with their membership rows, both in ``user_id`` order, merged.

    Runs once per user and membership of every plan: the memberships are built inline, and
    records are yielded one at a time (a page built into a list first costs more in garbage
    collection).
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
            try:
                mine.append(Membership(user_id, r[1], r[2], r[3], as_utc(r[4]), as_utc(r[5])))
            except ValueError:  # a timestamp another job wrote as text: the user is rejected
                ms, bad = unreadable_membership(r)
                mine.append(ms)
            i += 1
        user = user_from_row(u)
        yield UserWithMemberships(user if bad is None else marked(user, bad), tuple(mine))


def _account_members_query(conn: Connection) -> Select[Any]:
    ma, mu = memberships.c.account_id, memberships.c.user_id
    return (
        select(*_raw(memberships), users.c.email, users.c.first_name, users.c.last_name)
        .join(users, users.c.user_id == mu)
        .order_by(_k(ma, conn), _k(mu, conn))
    )


def _member_row(r: Row[Any]) -> MemberRow:
    return MemberRow(membership_from_row(r), r.email, r.first_name, r.last_name)


def iter_accounts(
    engine: Engine,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    keys: Keys = ALL_KEYS,
    read: RowsRead | None = None,
) -> Iterator[AccountWithMembers]:
    """Every account (whose ``account_id`` is in ``keys``) in ``account_id`` order with all of
    its members (by ``user_id``). ``read`` (if given) counts the rows read."""
    aid, ma = accounts.c.account_id, memberships.c.account_id
    with engine.connect() as conn:
        member_query = _account_members_query(conn)
        for page in _pages(conn, aid, select(*data_columns(accounts)), chunk_size, keys):
            if read is not None:
                read.accounts += len(page)
            # Members stream in (account_id, user_id) order and are merged with the page: a
            # page of accounts can hold most of the store's memberships (a few huge accounts),
            # so memory holds one account's members, never a page's.
            # Driver tuples, not Rows (stream_rows): a member row costs a third as much, and
            # every plan reads each membership once per account it belongs to.
            rows = stream_rows(
                conn, member_query.where(_page_members(conn, ma, page, keys)), chunk_size
            )
            try:  # closed even when the consumer stops early (a server-side cursor on PG)
                pending = next(rows, None)
                for a in page:
                    key = a[0]
                    while pending is not None and pending[1] < key:
                        pending = next(rows, None)  # no such account row: nothing to attach to
                    members: list[MemberRow] = []
                    bad = None
                    while pending is not None and pending[1] == key:
                        r = pending
                        try:
                            ms = Membership(r[0], key, r[2], r[3], as_utc(r[4]), as_utc(r[5]))
                        except ValueError:  # a timestamp another job wrote: the account is rejected
                            ms, bad = unreadable_membership(r)
                        members.append(MemberRow(ms, r[6], r[7], r[8]))
                        pending = next(rows, None)
                    if read is not None:
                        read.memberships += len(members)
                    account = account_from_row(a)
                    account = account if bad is None else marked(account, bad)
                    yield AccountWithMembers(account, tuple(members))
            finally:
                rows.close()


def read_user(engine: Engine, user_id: str) -> UserWithMemberships | None:
    """One user with all of its memberships, or ``None`` if the store has no such user."""
    with engine.connect() as conn:
        row = conn.execute(select(*_raw(users)).where(users.c.user_id == user_id)).first()
        if row is None:
            return None
        rows = conn.execute(
            _user_memberships_query(conn).where(memberships.c.user_id == user_id)
        ).all()
    mine, bad = read_each(rows, membership_from_row, lambda ms, _: ms)
    return UserWithMemberships(marked(user_from_row(row), bad), mine)


def read_account(engine: Engine, account_id: str) -> AccountWithMembers | None:
    """One account with all of its members, or ``None`` if the store has no such account."""
    with engine.connect() as conn:
        query = select(*_raw(accounts)).where(accounts.c.account_id == account_id)
        row = conn.execute(query).first()
        if row is None:
            return None
        rows = conn.execute(
            _account_members_query(conn).where(memberships.c.account_id == account_id)
        ).all()
    members, bad = read_each(rows, _member_row, lambda ms, r: MemberRow(ms, *tuple(r)[-3:]))
    return AccountWithMembers(marked(account_from_row(row), bad), members)


def iter_all_accounts(engine: Engine) -> Iterator[Account]:
    """Every account without its members, in key order, streamed (the hierarchy policy needs
    the whole forest, but only a few fields of each account)."""
    with engine.connect() as conn:
        query = select(*_raw(accounts)).order_by(_k(accounts.c.account_id, conn))
        for row in stream_rows(conn, query, DEFAULT_CHUNK_SIZE):
            yield account_from_row(row)


def read_all_accounts(engine: Engine) -> dict[str, Account]:
    """Every account by id, in key order."""
    return {a.account_id: a for a in iter_all_accounts(engine)}


def iter_identities(engine: Engine, *, system: str | None = None) -> Iterator[Identity]:
    """Identities ordered by (entity, entity_id, system), optionally of one ``system`` only."""
    c = identities.c
    with engine.connect() as conn:
        query = select(identities).order_by(
            _k(c.entity, conn), _k(c.entity_id, conn), _k(c.system, conn)
        )
        if system is not None:
            query = query.where(c.system == system)
        # yield_per streams (a server-side cursor on PostgreSQL) instead of fetching all rows.
        for r in conn.execution_options(yield_per=DEFAULT_CHUNK_SIZE).execute(query):
            yield Identity(r.entity, r.entity_id, r.system, r.external_id)
