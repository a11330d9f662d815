"""Upgrading a store in place to this syncer's schema version (``syncer init`` does it).

Version 1 → 2 adds the change feed: :func:`add_feed_columns` adds the ``change_seq`` columns
(and ``parent_seq`` on accounts) with their indexes; ``init_store`` then creates the feed's new
tables and triggers, as on a new store, and stamps every existing row as one change
(:func:`syncer.store.triggers.stamp_existing`), so that a destination that has never read the
feed reads them all. Each step checks first, so an upgrade cut short (SQLite runs DDL outside
the transaction) completes when ``syncer init`` runs again.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, inspect
from sqlalchemy.engine import Connection

from syncer.store.schema import FEED_COLUMNS, FEED_TABLES

#: The schema versions ``syncer init`` upgrades from.
UPGRADABLE: frozenset[int] = frozenset({1})


def add_feed_columns(conn: Connection) -> None:
    """Add the feed's columns and their indexes to a version-1 store's tables (the triggers,
    installed next, fill them: :func:`syncer.store.triggers.stamp_existing`)."""
    bigint = BigInteger().compile(dialect=conn.dialect)
    for table in FEED_TABLES:
        present = {c["name"] for c in inspect(conn).get_columns(table.name)}
        for column in table.c:
            if column.name in FEED_COLUMNS and column.name not in present:
                conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {bigint}")
        for index in table.indexes:
            if any(c.name in FEED_COLUMNS for c in index.columns):
                index.create(conn, checkfirst=True)
