"""Streaming readers of the canonical store: model records in key order, bounded memory.

Users and accounts are read by keyset pagination (``WHERE key > :last ORDER BY key LIMIT n``)
and each page's membership rows with one range query, so memory holds one page at a time and no
query ever sorts more than a page's worth of rows through an index. Rows are SQLAlchemy Core
rows turned straight into the frozen records of :mod:`syncer.model` (no ORM objects).

Every ordering and range comparison on a key goes through :func:`syncer.db.key_order`, so the
order is code-point order (Python's ``sorted()``) on every database.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from itertools import chain
from typing import Any

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
    IN_CHUNK,
    IndexedBy,
    KeyRange,
    RawType,
    key_order,
    stream_pages,
    stream_rows,
)
from syncer.model import (
    Account,
    AccountWithMembers,
    Identity,
    MemberRow,
    User,
    UserWithMemberships,
)
from syncer.store.keys import KeySet, RowsRead
from syncer.store.rows import (  # the row builders moved there; still importable from here
    StoreRow,
    account_from_row,
    accounts_page,
    json_value,
    member_rows,
    membership_from_row,
    user_from_row,
    users_page,
)
from syncer.store.schema import (
    USER_NAMES,
    accounts,
    data_columns,
    identities,
    memberships,
    users,
)
from syncer.store.stats import store_stats  # moved there; still importable here
from syncer.store.unreadable import marked, read_each

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "Keys",
    "Members",
    "StoreRow",
    "account_from_row",
    "iter_accounts",
    "iter_all_accounts",
    "iter_identities",
    "iter_users",
    "json_value",
    "members_of",
    "membership_from_row",
    "read_account",
    "read_all_accounts",
    "read_user",
    "read_user_rows",
    "store_stats",
    "user_from_row",
    "user_member_rows",
]

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
            yield from users_page(page, rows)


#: The ``users`` table as the account-side reader joins it, by ``user_id``, for what an account
#: shows of each member: on SQLite it names the covering index (:data:`USER_NAMES`) the planner
#: would pass over for the primary key's, one B-tree descent per member row instead of two.
_member_names = IndexedBy(users, USER_NAMES, ("user_id", "email", "first_name", "last_name"))


def _account_members_query(conn: Connection) -> Select[Any]:
    ma, mu = memberships.c.account_id, memberships.c.user_id
    u = _member_names.c
    return (
        select(*_raw(memberships), u.email, u.first_name, u.last_name)
        .join(_member_names, u.user_id == mu)
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
            # Driver tuples, not Rows (stream_pages): a member row costs a third as much, and
            # every plan reads each membership once per account it belongs to.
            pages = stream_pages(
                conn, member_query.where(_page_members(conn, ma, page, keys)), chunk_size
            )
            try:  # closed even when the consumer stops early (a server-side cursor on PG)
                yield from accounts_page(page, chain.from_iterable(pages), read)
            finally:
                pages.close()


#: Member rows of some (account, user) pairs: by account (each list by user_id), and the
#: accounts of which one such row is unreadable (:func:`read_members`).
Members = tuple[dict[str, list[MemberRow]], set[str]]


def user_member_rows(
    conn: Connection, keys: Iterable[str], *, read: RowsRead | None = None
) -> Iterator[list[tuple[Any, ...]]]:
    """Every membership row of the users ``keys``, a chunk of users at a time, as the account
    reader reads it (its own columns, then its user's email and names), then its user's id:
    ``None`` when the store has no such user row (the membership names its account, yet is no
    member of it). Read by user, through the primary keys. ``read`` counts the rows."""
    mu = memberships.c.user_id
    u = _member_names.c
    query = select(*_raw(memberships), u.email, u.first_name, u.last_name, u.user_id).outerjoin(
        _member_names, u.user_id == mu
    )
    for part in KeySet.of(keys).chunks(IN_CHUNK):
        rows = _tuples(conn.execute(query.where(mu.in_(part))))
        if read is not None:
            read.memberships += len(rows)
        yield rows


def members_of(rows: Iterable[tuple[Any, ...]], wanted: Mapping[str, Collection[str]]) -> Members:
    """Of rows :func:`user_member_rows` read: the member rows of the pairs ``wanted``
    (``account_id → user_ids``) whose user row exists."""
    found, bad = member_rows((r for r in rows if r[-1] is not None), wanted)
    for members in found.values():
        members.sort(key=lambda m: m.membership.user_id)
    return found, bad


def read_members(
    engine: Engine, wanted: Mapping[str, Collection[str]], *, read: RowsRead | None = None
) -> Members:
    """The member rows of the pairs ``wanted`` (``account_id → user_ids``), as
    :func:`iter_accounts` reads them (a membership whose user row is missing is no member),
    by account and user_id; and the accounts of which one such row is unreadable. Read by
    user, through the primary key: a few members, whatever their accounts' sizes. ``read``
    counts the membership rows read."""
    users = {user for members in wanted.values() for user in members}
    with engine.connect() as conn:
        rows = [r for part in user_member_rows(conn, users, read=read) for r in part]
    return members_of(rows, wanted)


def read_user_rows(
    engine: Engine, keys: Collection[str], *, read: RowsRead | None = None
) -> dict[str, User]:
    """The users of ``keys`` the store has, by user_id: their own rows alone, no membership.
    A row another job wrote badly comes with its attributes marked (:func:`user_from_row`), as
    :func:`iter_users` reads it. ``read`` counts the rows read."""
    found: dict[str, User] = {}
    query = select(*_raw(users))
    with engine.connect() as conn:
        for part in KeySet.of(keys).chunks(IN_CHUNK):
            rows = _tuples(conn.execute(query.where(users.c.user_id.in_(part))))
            if read is not None:
                read.users += len(rows)
            for row in rows:
                user = user_from_row(row)
                found[user.user_id] = user
    return found


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
