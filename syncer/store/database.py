"""Creating and opening the canonical store."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from syncer.db import create_db_engine
from syncer.errors import ConfigError
from syncer.store.schema import metadata

STORE_TABLES: tuple[str, ...] = tuple(metadata.tables)


def display_url(url: str) -> str:
    """``url`` with any password masked, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # create_db_engine reports the bad URL; show it as given meanwhile
        return url


def init_store(url: str) -> Engine:
    """Create the store's tables at ``url`` (those that are missing) and return an engine.

    Idempotent: running it on an initialised store changes nothing.
    """
    engine = create_db_engine(url)
    try:
        metadata.create_all(engine)
    except OperationalError as exc:
        engine.dispose()
        raise ConfigError(
            f"cannot create the store at {display_url(url)}: {exc.orig}",
        ) from None
    return engine


def open_store(url: str) -> Engine:
    """An engine on an initialised store; :class:`ConfigError` if its tables are missing."""
    shown = display_url(url)
    not_initialised = ConfigError(
        f"store at {shown} is not initialised; run `syncer init --store {shown}`"
    )
    try:
        parsed = make_url(url)
    except ArgumentError:
        parsed = None  # create_db_engine below raises the ConfigError that explains it
    if parsed is not None and parsed.get_backend_name() == "sqlite":
        # Connecting would create an empty file as a side effect of a typo; check first.
        database = parsed.database or ""
        if database not in ("", ":memory:") and not Path(database).exists():
            raise not_initialised
    engine = create_db_engine(url)
    try:
        present = set(inspect(engine).get_table_names())
    except OperationalError as exc:
        engine.dispose()
        raise ConfigError(f"cannot open the store at {shown}: {exc.orig}") from None
    if not set(STORE_TABLES) <= present:
        engine.dispose()
        raise not_initialised
    return engine
