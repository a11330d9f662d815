"""Creating and opening the canonical store.

:func:`init_store` (``syncer init``) is the only function that creates anything: the tables and
the schema version record. :func:`open_store` (every other command, and every plan and run)
refuses, with a :class:`ConfigError` that names the command to run, a store that is missing, not
initialised, at another schema version, or (when the caller will write to it) read-only, so that
a run that cannot succeed stops before it writes anything anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import insert, inspect, select, update
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from syncer.db import create_db_engine
from syncer.errors import ConfigError
from syncer.store.schema import STORE_SCHEMA_VERSION, metadata, store_version
from syncer.store.triggers import install_feed, stamp_existing
from syncer.store.upgrade import (
    UPGRADABLE,
    UPGRADE_ADDS,
    add_feed_columns,
    cover_members_by_account,
)

STORE_TABLES: tuple[str, ...] = tuple(metadata.tables)


def display_url(url: str) -> str:
    """``url`` with any password masked, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # create_db_engine reports the bad URL; show it as given meanwhile
        return url


def init_store(url: str) -> Engine:
    """Create the store's tables at ``url`` (those that are missing) and the change feed's
    triggers, record the schema version, and return an engine.

    Idempotent: running it on an initialised store changes nothing. A store at an older
    version (before the change feed, or its covering index) is upgraded in place
    (:mod:`syncer.store.upgrade`). A store
    at a newer schema version is refused (:class:`ConfigError`).
    """
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            # One transaction (PostgreSQL's DDL is transactional): a failed upgrade leaves the
            # store at the version it was at.
            found = _version(conn)
            if found is not None and found > STORE_SCHEMA_VERSION:
                raise _other_version(display_url(url), found)
            metadata.create_all(conn)
            adds_feed = found == 1
            if adds_feed:
                add_feed_columns(conn)
            if found in UPGRADABLE:
                cover_members_by_account(conn)
            install_feed(conn)
            if adds_feed:
                stamp_existing(conn)
            if found is None:
                conn.execute(insert(store_version).values(version=STORE_SCHEMA_VERSION))
            elif found < STORE_SCHEMA_VERSION:
                conn.execute(update(store_version).values(version=STORE_SCHEMA_VERSION))
    except ConfigError:
        engine.dispose()
        raise
    except OperationalError as exc:
        engine.dispose()
        raise ConfigError(
            f"cannot create the store at {display_url(url)}: {exc.orig}",
        ) from None
    return engine


def open_store(url: str, *, writable: bool = False) -> Engine:
    """An engine on the initialised store at ``url``, at this syncer's schema version.

    Never creates anything. :class:`ConfigError` (what, where, what to do) when the SQLite file
    is missing, the store's tables or version record are missing, the version is another one,
    or — with ``writable`` (a run keeps its sync state in the store unless ``state`` says
    otherwise) — the store cannot be written.
    """
    shown = display_url(url)
    not_initialised = ConfigError(
        f"store at {shown} is not initialised; run `syncer init --store {shown}` first"
    )
    try:
        parsed: URL | None = make_url(url)
    except ArgumentError:
        parsed = None  # create_db_engine below raises the ConfigError that explains it
    sqlite_file = _sqlite_file(parsed)
    if sqlite_file is not None and not sqlite_file.exists():
        # Connecting would create an empty file as a side effect of a typo; check first.
        raise ConfigError(
            f"store at {shown}: no such file {str(sqlite_file)!r}; check the path, or create "
            f"the store with `syncer init --store {shown}`"
        )
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            found = _version(conn)
            if found is None:
                raise not_initialised
            if found != STORE_SCHEMA_VERSION:
                raise _other_version(shown, found)
            present = set(inspect(conn).get_table_names())
            if not set(STORE_TABLES) <= present:
                raise not_initialised
            if writable:
                _check_writable(conn, shown, sqlite_file)
    except ConfigError:
        engine.dispose()
        raise
    except OperationalError as exc:
        engine.dispose()
        raise ConfigError(f"cannot open the store at {shown}: {exc.orig}") from None
    return engine


def _version(conn: Connection) -> int | None:
    """The recorded schema version (the highest, should there be several rows), or ``None``."""
    if not inspect(conn).has_table(store_version.name):
        return None
    newest = select(store_version.c.version).order_by(store_version.c.version.desc())
    return conn.execute(newest).scalar()


def _other_version(shown: str, found: int) -> ConfigError:
    newer = found > STORE_SCHEMA_VERSION
    if found in UPGRADABLE:
        return ConfigError(
            f"store at {shown} is at schema version {found}; this syncer reads version "
            f"{STORE_SCHEMA_VERSION}; run `syncer init --store {shown}` to upgrade it in place "
            f"({UPGRADE_ADDS[found]})"
        )
    return ConfigError(
        f"store at {shown} is at schema version {found}; this syncer reads version "
        f"{STORE_SCHEMA_VERSION}; "
        + (
            "upgrade syncer to the release that created the store"
            if newer
            else "re-create it with `syncer init --store …` on a new database and load it again"
        )
    )


def _sqlite_file(parsed: URL | None) -> Path | None:
    """The file of a SQLite URL (plain path or ``file:`` URI), ``None`` for other databases
    and in-memory SQLite."""
    if parsed is None or parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if str(parsed.query.get("uri", "")).lower() in ("true", "1") and database.startswith("file:"):
        database = database.removeprefix("file:").split("?", 1)[0]
    if database in ("", ":memory:") or database.startswith(":memory:"):
        return None
    return Path(database)


def _check_writable(conn: Connection, shown: str, sqlite_file: Path | None) -> None:
    """:class:`ConfigError` unless a write transaction can start (SQLite only: a PostgreSQL
    role without write grants fails at its first write, inside the run's transaction)."""
    if sqlite_file is None:
        return
    reason: str | None = None
    # Another process writing (a run in progress) holds the lock: that proves the store
    # writable, and waiting out the busy timeout would only delay this command.
    waits = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
    conn.exec_driver_sql("PRAGMA busy_timeout = 0")
    try:
        # A write rolled back: the cheapest proof that a write would work (file and directory
        # permissions, a read-only mount or a ``mode=ro`` URI alike; BEGIN IMMEDIATE alone
        # succeeds on a read-only connection).
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            conn.execute(update(store_version).values(version=store_version.c.version))
        finally:
            conn.exec_driver_sql("ROLLBACK")
    except OperationalError as exc:
        reason = str(exc.orig)
        if "locked" in reason or "busy" in reason:
            reason = None
    finally:
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(waits or 0)}")
    if reason is None and not _os_writable(sqlite_file):
        reason = "the file or its directory is not writable"
    if reason is not None:
        raise ConfigError(
            f"store at {shown} is read-only ({reason}); a run writes its sync state there. "
            f"Make {str(sqlite_file)!r} and its directory writable (SQLite writes a -wal file "
            "beside it), or keep the state elsewhere with `state:` in the config"
        )


def _os_writable(path: Path) -> bool:
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
