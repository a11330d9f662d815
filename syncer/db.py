"""Database plumbing shared by the canonical store and the sync state.

Both live behind any SQLAlchemy URL whose dialect supports the schema; SQLite (the embedded
default) and PostgreSQL (production) are tested. This module holds what both need and nothing
about either's tables: engine creation, key ordering, and dialect-aware upserts.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, overload

from sqlalchemy import (
    Column,
    ColumnElement,
    Executable,
    Table,
    TableClause,
    column,
    event,
    func,
    select,
    type_coerce,
)
from sqlalchemy.engine import Connection, Engine, Row, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal, _TraverseInternalsType
from sqlalchemy.types import NullType

from syncer.errors import ConfigError

T = TypeVar("T")

DEFAULT_STORE_URL = "sqlite:///syncer.db"
STORE_URL_ENV = "SYNCER_STORE_URL"
STATE_URL_ENV = "SYNCER_STATE_URL"


_UTC_SUFFIX = "+00:00"
_fromiso = datetime.fromisoformat


@overload
def as_utc(value: datetime | str) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | str | None) -> datetime | None:
    """A stored timestamp as timezone-aware UTC.

    syncer writes UTC everywhere. SQLite keeps no zone, so its naive values are UTC; readers on
    the hot path select SQLite timestamps as their stored text (``2024-01-31 12:00:00.000000``),
    which is parsed here in one step instead of SQLAlchemy's regex parse plus a second
    conversion. PostgreSQL returns aware values in the session's zone. Anything else (text
    that is not ISO 8601, a number) raises ``ValueError``.
    """
    if value is None:
        return None
    # Exact class first: this runs once per timestamp of every plan, and the type check plus a
    # pre-bound fromisoformat halve the call (a str subclass still takes the isinstance path).
    if value.__class__ is str or isinstance(value, str):
        try:
            # Naive text, the SQLite case: appending the zone is 9x cheaper than replace().
            return _fromiso(value + _UTC_SUFFIX)
        except ValueError:
            parsed = _fromiso(value)  # text with its own offset
            return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    try:
        tz = value.tzinfo
    except AttributeError:  # a number (or bytes) another job wrote into SQLite: not a timestamp
        raise ValueError(f"not a timestamp: {value!r}") from None
    if tz is None:
        # The constructor is a third of the cost of ``value.replace(tzinfo=UTC)`` (whose
        # keyword parsing dominates), and this runs for every timestamp a plan reads.
        v = value
        return datetime(v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond, UTC)
    if tz is UTC:
        return value
    return value.astimezone(UTC)


class RawType(NullType):
    """A column type without a result processor: the driver's value as it comes."""

    cache_ok = True


class IndexedBy(TableClause):
    """A table as a FROM entry that, on SQLite, names the index to search (``INDEXED BY``).

    For the few reads where SQLite's planner, with no statistics, takes the primary key's index
    and filters or sorts a table's worth of rows, when another index serves the query directly:
    a list of keys ``IN (...)`` weighs more for it than an equality on a leading column. Other
    databases get the plain table (PostgreSQL's planner has statistics). SQLAlchemy's
    ``with_hint`` renders nothing on SQLite. Columns come raw (:class:`RawType`)."""

    inherit_cache = True
    # The index is part of the statement cache key: two indexes, two compiled statements.
    _traverse_internals: _TraverseInternalsType = [  # noqa: RUF012 - SQLAlchemy's own shape
        *TableClause._traverse_internals,
        ("index", InternalTraversal.dp_string),
    ]

    def __init__(self, table: Table, index: str, names: Sequence[str] | None = None) -> None:
        chosen = [c.name for c in table.columns] if names is None else list(names)
        super().__init__(table.name, *(column(name, RawType()) for name in chosen))
        self.index = index


@compiles(IndexedBy)
def _indexed_by_from(element: IndexedBy, compiler: SQLCompiler, **kw: Any) -> str:
    text: str = compiler.visit_table(element, **kw)
    if kw.get("asfrom") and compiler.dialect.name == "sqlite":
        text += f" INDEXED BY {element.index}"
    return text


def raw_columns(table: Table) -> list[ColumnElement[Any]]:
    """``table``'s columns, in table order, typed so that no result processor runs on them.

    For :func:`stream_rows` and other hot readers that convert values themselves: SQLite's
    DateTime, Boolean and JSON processors (a regex parse, ``bool()``, ``json.loads``) cost more
    than the conversions syncer does itself (:func:`as_utc`, the C JSON scanner).
    """
    return [type_coerce(c, RawType()).label(c.name) for c in table.columns]


def stream_rows(
    conn: Connection, statement: Executable, chunk_size: int
) -> Generator[tuple[Any, ...] | Row[Any], None, None]:
    """The rows of ``statement``, streamed with memory for about ``chunk_size`` rows (the rows
    of :func:`stream_pages`, one at a time)."""
    pages = stream_pages(conn, statement, chunk_size)
    try:
        for page in pages:
            yield from page
    finally:
        pages.close()


def stream_pages(
    conn: Connection, statement: Executable, chunk_size: int
) -> Generator[Sequence[tuple[Any, ...] | Row[Any]], None, None]:
    """The rows of ``statement`` in lists of at most ``chunk_size``, streamed with memory for
    about one list (hot readers loop over the rows of a list, or of
    ``itertools.chain.from_iterable`` over the lists, without a generator step per row).

    On SQLite the result is left unbuffered (pysqlite steps its cursor as rows are fetched, so
    it streams as it is) and read from the DBAPI cursor as plain tuples, without SQLAlchemy's
    Row objects or result processors: select raw columns (``type_coerce``) where a processor
    would run. Elsewhere ``yield_per`` streams through a server-side cursor and gives Rows.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
    if conn.dialect.name == "sqlite":
        result = conn.execute(statement)
        try:
            fetch = result.cursor.fetchmany
            while rows := fetch(chunk_size):
                yield rows
        finally:
            result.close()
        return
    result = conn.execute(statement, execution_options={"yield_per": chunk_size})
    try:
        yield from result.partitions()
    finally:
        result.close()


def resolve_store_url(url: str | None) -> str:
    """The store URL from the argument, ``SYNCER_STORE_URL``, or the SQLite default."""
    return url or os.environ.get(STORE_URL_ENV) or DEFAULT_STORE_URL


def create_db_engine(url: str) -> Engine:
    """An engine for ``url`` with the settings syncer relies on.

    SQLite gets WAL (readers do not block the single writer), foreign keys on, and a busy timeout
    so a second process waits for the writer instead of failing with "database is locked".
    ``postgresql://`` is read as psycopg 3, the driver syncer installs.
    """
    from sqlalchemy import create_engine

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(
            f"database URL {url!r} is not a valid SQLAlchemy URL: {exc}",
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = create_engine(parsed, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(parsed, pool_pre_ping=True)
    except NoSuchModuleError as exc:
        raise ConfigError(
            f"database URL {url!r}: no SQLAlchemy dialect for {parsed.drivername!r} ({exc}); "
            "use sqlite:///path.db or postgresql+psycopg://user@host/db",
        ) from None
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def is_postgres(bind: Engine | Connection) -> bool:
    return bind.dialect.name == "postgresql"


def key_order(col: Column[Any] | ColumnElement[Any], bind: Engine | Connection) -> Any:
    """Order by ``col`` in code-point order, the order Python's ``sorted`` gives.

    PostgreSQL's default collation follows the locale (``a10`` vs ``a9``, case folding), which
    would break merge-joins between two sorted streams; ``COLLATE "C"`` makes it byte order.
    SQLite's default BINARY collation already is. UTF-8 byte order equals code-point order.
    """
    if is_postgres(bind):
        return col.collate("C")
    return col


@dataclass(frozen=True, slots=True)
class KeyRange:
    """A contiguous slice of a key space in code-point order: ``start <= key < stop``, either
    end open when ``None``. Shards of a plan are key ranges that together cover every key."""

    start: str | None = None
    stop: str | None = None

    def conditions(
        self, col: Column[Any] | ColumnElement[Any], bind: Engine | Connection
    ) -> list[ColumnElement[bool]]:
        """WHERE conditions keeping ``col`` inside this range (none for the whole space)."""
        ordered = key_order(col, bind)
        out: list[ColumnElement[bool]] = []
        if self.start is not None:
            out.append(ordered >= self.start)
        if self.stop is not None:
            out.append(ordered < self.stop)
        return out


ALL_KEYS = KeyRange()


def split_key_space(
    engine: Engine, col: Column[Any], parts: int, *, per_key: float = 0.0
) -> list[KeyRange]:
    """``parts`` key ranges of about equal cost covering all of ``col``'s key space (fewer
    when the table has fewer distinct keys): the first starts open, the last ends open.

    A key costs its rows in ``col``'s table, plus ``per_key`` (work done once per key, such as
    formatting an account, beside the per-row work on its members): without it the ranges hold
    about equal row counts. A key without rows there is not seen and costs nothing."""
    if parts < 1:
        raise ValueError(f"parts must be at least 1, not {parts}")
    with engine.connect() as conn:
        cuts = _weighted_cuts(conn, col, parts, per_key) if per_key else _row_cuts(conn, col, parts)
    bounds: list[str | None] = [None, *cuts, None]
    return [KeyRange(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


def _row_cuts(conn: Connection, col: Column[Any], parts: int) -> list[str]:
    # One indexed OFFSET per cut: cheap for a few cuts of a unique key.
    total = conn.execute(select(func.count()).select_from(col.table)).scalar_one()
    cuts: list[str] = []
    for i in range(1, parts):
        cut = conn.execute(
            select(col).order_by(key_order(col, conn)).offset(total * i // parts).limit(1)
        ).scalar()
        if cut is not None and (not cuts or cut > cuts[-1]):
            cuts.append(cut)
    return cuts


def _weighted_cuts(conn: Connection, col: Column[Any], parts: int, per_key: float) -> list[str]:
    # One pass over the keys with their row counts, streamed in key order (an index scan).
    rows = conn.execute(select(func.count()).select_from(col.table)).scalar_one()
    # Distinct keys counted over a DISTINCT subquery: SQLite reads it off the index in key
    # order, where count(DISTINCT col) sorts every row in a temporary B-tree (2.5M memberships:
    # 0.3 s against 1.5 s).
    keys = conn.execute(
        select(func.count()).select_from(select(col).distinct().subquery())
    ).scalar_one()
    query = select(col, func.count()).group_by(col).order_by(key_order(col, conn))
    counted = conn.execution_options(yield_per=10_000).execute(query)
    costs = ((key, count + per_key) for key, count in counted)
    return _even_cuts(costs, rows + per_key * keys, parts)


def split_keys(
    engine: Engine, col: Column[Any], keys: Sequence[str], parts: int, *, per_key: float = 0.0
) -> list[int]:
    """Where to cut ``keys`` (distinct, in key order) into at most ``parts`` slices of about
    equal cost, as :func:`split_key_space` weighs a key: the index in ``keys`` where each slice
    after the first starts. One grouped count per :data:`IN_CHUNK` keys."""
    if parts < 1:
        raise ValueError(f"parts must be at least 1, not {parts}")
    counts: dict[str, int] = {}
    with engine.connect() as conn:
        for chunk in chunked(keys):
            query = select(col, func.count()).where(col.in_(chunk)).group_by(col)
            counts.update(conn.execute(query).tuples().all())
    costs = [counts.get(key, 0) + per_key for key in keys]
    return _even_cuts(enumerate(costs), sum(costs), parts)


# Keys per IN (...) list: well under SQLite's bound-parameter limit and PostgreSQL's 65535.
IN_CHUNK = 500


def chunked(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _even_cuts(costs: Iterable[tuple[T, float]], total: float, parts: int) -> list[T]:
    """The keys (of ``(key, cost)`` in key order) where each range after the first starts."""
    cuts: list[T] = []
    seen = 0.0  # the cost of the keys before this one
    target = total / parts  # where the next range starts
    for key, cost in costs:
        if seen >= target and len(cuts) < parts - 1:
            cuts.append(key)
            # What is left is shared by the ranges left: after a key that cost more than a
            # range, the next ranges are even, not one small one.
            target = seen + (total - seen) / (parts - len(cuts))
        seen += cost
    return cuts


def dialect_insert(bind: Engine | Connection, table: Table) -> Any:
    """The dialect's ``INSERT`` construct, which has ``on_conflict_do_update`` and ``excluded``."""
    if is_postgres(bind):
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    if bind.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    raise ConfigError(  # pragma: no cover - other dialects are not tested
        f"syncer stores data in SQLite or PostgreSQL, not {bind.dialect.name}"
    )


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    key: Iterable[str],
    *,
    update: Iterable[str] | None = None,
    only_if_changed: bool = True,
) -> None:
    """Insert ``rows`` into ``table``, updating the ``update`` columns where ``key`` exists.

    With ``only_if_changed`` the update applies only where some column differs, so upserting the
    same rows twice leaves the table (including ``updated_at``-style columns) untouched.
    """
    if not rows:
        return
    key_cols = list(key)
    if update is None:
        update = [c for c in rows[0] if c not in key_cols]
    update_cols = list(update)
    stmt = dialect_insert(conn, table)
    if not update_cols:
        conn.execute(stmt.on_conflict_do_nothing(index_elements=key_cols), list(rows))
        return
    excluded = stmt.excluded
    where = None
    if only_if_changed:
        from sqlalchemy import or_

        where = or_(*[_distinct(conn, table.c[c], excluded[c]) for c in update_cols])
    stmt = stmt.on_conflict_do_update(
        index_elements=key_cols,
        set_={c: excluded[c] for c in update_cols},
        where=where,
    )
    conn.execute(stmt, list(rows))


def _distinct(conn: Connection, current: Column[Any], incoming: Any) -> Any:
    """``current IS DISTINCT FROM incoming``, comparing JSON by value.

    PostgreSQL's ``json`` type has no equality operator at all; ``jsonb`` compares by value
    (key order and whitespace do not matter), which is what "changed" means for attributes.
    """
    from sqlalchemy import JSON, cast
    from sqlalchemy.dialects.postgresql import JSONB

    if is_postgres(conn) and isinstance(current.type, JSON):
        return cast(current, JSONB).is_distinct_from(cast(incoming, JSONB))
    return current.is_distinct_from(incoming)
