"""Upgrading a store in place to this syncer's schema version (``syncer init`` does it).

Version 1 → 2 adds the change feed: the ``change_seq`` columns (and ``parent_seq`` on accounts)
with their indexes, and stamps every existing row with one first value, so that a destination
that has never read the feed reads them all. The feed's new tables and triggers are created by
``init_store`` around this, as on a new store. Each step checks first, so an upgrade cut short
(SQLite runs DDL outside the transaction) completes when ``syncer init`` runs again.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, inspect, update
from sqlalchemy.engine import Connection

from syncer.db import is_postgres
from syncer.store.schema import FEED_COLUMNS, FEED_TABLES, store_feed

#: The schema versions ``syncer init`` upgrades from.
UPGRADABLE: frozenset[int] = frozenset({1})


def upgrade_to_2(conn: Connection) -> None:
    """Add the feed's columns and indexes to a version-1 store and stamp its rows."""
    bigint = BigInteger().compile(dialect=conn.dialect)
    first: int = 1
    if is_postgres(conn):
        first = int(conn.exec_driver_sql("SELECT pg_current_xact_id()::text::bigint").scalar_one())
    else:
        conn.exec_driver_sql(f"INSERT OR IGNORE INTO {store_feed.name} (id, seq) VALUES (1, 0)")
        conn.execute(update(store_feed).where(store_feed.c.seq < first).values(seq=first))
    for table in FEED_TABLES:
        present = {c["name"] for c in inspect(conn).get_columns(table.name)}
        added = [c for c in table.c if c.name in FEED_COLUMNS and c.name not in present]
        for column in added:
            conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {bigint}")
        if added:
            conn.execute(update(table).values({c.name: first for c in added}))
        for index in table.indexes:
            if any(c.name in FEED_COLUMNS for c in index.columns):
                index.create(conn, checkfirst=True)
