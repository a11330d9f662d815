"""Opening the sync state database, and the small helpers every state module shares.

The state may live in the store's database (the default) or in its own (any SQLAlchemy URL
syncer supports). ``init_state`` creates the tables; everything else uses ``open_state``, which
refuses a database that was never initialised instead of creating tables behind the user's back.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Table, delete, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

# dialect_insert is the store's too: re-exported here for the state modules.
from syncer.db import IN_CHUNK, KeyRange, as_utc, chunked, create_db_engine
from syncer.errors import ConfigError
from syncer.state.schema import metadata
from syncer.state.upgrade import add_new_columns

__all__ = ["as_utc", "init_state", "open_state", "utcnow"]


#: State tables added after the first release: their absence does not make a state uninitialised.
_LATER = frozenset({"sync_feed_positions", "sync_member_tokens", "sync_member_token_accounts"})


def init_state(url: str | Engine) -> Engine:
    """Create the sync state tables at ``url`` (those that are missing) and return an engine.

    Idempotent: running it again, or on a database that already holds the store, changes nothing
    that exists. This is what ``syncer init`` calls.
    """
    engine = url if isinstance(url, Engine) else create_db_engine(url)
    metadata.create_all(engine)
    add_new_columns(engine)  # to tables made by an earlier syncer
    return engine


def open_state(url: str | Engine) -> Engine:
    """An engine on an initialised sync state database.

    Raises :class:`ConfigError` naming the database and telling the user to run ``syncer init``
    when the database or any state table is missing; a SQLite file is never created here.
    """
    if isinstance(url, Engine):
        engine, shown = url, url.url.render_as_string(hide_password=True)
    else:
        shown = _shown(url)
        _require_sqlite_file(url, shown)
        engine = create_db_engine(url)
    try:
        present = set(inspect(engine).get_table_names())
    except OperationalError as exc:
        raise ConfigError(
            f"cannot open the sync state database {shown}: {exc.orig}",
        ) from None
    # A table added after a state was made is created by the next run (init_state); until then
    # a read-only caller treats it as empty.
    missing = [name for name in metadata.tables if name not in present and name not in _LATER]
    if missing:
        raise ConfigError(
            f"the sync state database {shown} has no sync state tables "
            f"(missing: {', '.join(missing)}); run `syncer init` to create them",
        )
    return engine


def _shown(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(url)  # create_db_engine reports it properly


def _require_sqlite_file(url: str, shown: str) -> None:
    try:
        parsed = make_url(url)
    except ArgumentError:
        return
    if parsed.get_backend_name() != "sqlite":
        return
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    if not Path(database).exists():
        raise ConfigError(
            f"the sync state database {shown} does not exist; run `syncer init` to create it",
        )


def utcnow() -> datetime:
    """Now, timezone-aware UTC (what every state timestamp is)."""
    return datetime.now(UTC)


def to_db(value: datetime) -> datetime:
    """A timestamp about to be written: converted to UTC, because SQLite drops the zone."""
    if value.tzinfo is None:
        raise ValueError(f"naive timestamp {value!r}: syncer writes timezone-aware UTC only")
    return value.astimezone(UTC)


StateKeys = KeyRange | Collection[str]
"""Which keys a state reader streams: a key range, or exactly a collection of keys (an incremental
run's closure, :class:`syncer.store.keys.KeySet`)."""


def key_chunks(keys: Collection[str], size: int = IN_CHUNK) -> Iterator[Sequence[str]]:
    """``keys`` in code-point order, ``size`` at a time: a reader that queries each chunk in
    key order streams the whole collection in key order."""
    return chunked(sorted(keys), size)


def delete_keys(
    engine: Engine, table: Table, destination: str, object_name: str, keys: Iterable[str]
) -> int:
    """Delete the rows of ``keys`` of one destination object from a per-record table
    (``sync_records``, ``sync_errors``) in one transaction. Returns how many there were."""
    wanted = list(dict.fromkeys(keys))
    c = table.c
    deleted = 0
    with engine.begin() as conn:
        for chunk in chunked(wanted):
            stmt = delete(table).where(
                c.destination == destination, c.object == object_name, c.key.in_(chunk)
            )
            deleted += conn.execute(stmt).rowcount
    return deleted
