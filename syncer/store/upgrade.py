"""Upgrading a store in place to this syncer's schema version (``syncer init`` does it).

Version 1 → 2 adds the change feed: :func:`add_feed_columns` adds the ``change_seq`` columns
(and ``parent_seq`` on accounts) with their indexes; ``init_store`` then creates the feed's new
tables and triggers, as on a new store, and stamps every existing row as one change
(:func:`syncer.store.triggers.stamp_existing`), so that a destination that has never read the
feed reads them all.

Version 2 → 3 replaces the index of memberships by account with a covering one, and on SQLite
adds the index of users' names by id (:func:`cover_members_by_account`): the data and the feed
are untouched, and nothing is re-sent. Building them reads the memberships and users tables once
(seconds per million rows).

Each step checks first, so an upgrade cut short (SQLite runs DDL outside the transaction)
completes when ``syncer init`` runs again.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, inspect
from sqlalchemy.engine import Connection

from syncer.store.schema import (
    FEED_COLUMNS,
    FEED_TABLES,
    MEMBERS_BY_ACCOUNT,
    MEMBERS_BY_ACCOUNT_KEYS,
    USER_NAMES_DDL,
    memberships,
)

#: The schema versions ``syncer init`` upgrades from.
UPGRADABLE: frozenset[int] = frozenset({1, 2})

#: What an upgrade from each version adds, for the message that asks for one.
UPGRADE_ADDS: dict[int, str] = {
    1: "it adds the change feed and indexes; the data stays",
    2: "it adds indexes that make reading accounts faster; the data stays",
}


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


def cover_members_by_account(conn: Connection) -> None:
    """Create the covering indexes of schema version 3 on SQLite (memberships by account,
    users' names by id) and drop the index of the two keys they replace (a version-1 or -2
    store's). PostgreSQL keeps that index (``schema.memberships`` says why): nothing to do."""
    if conn.dialect.name != "sqlite":
        return
    (index,) = (i for i in memberships.indexes if i.name == MEMBERS_BY_ACCOUNT)
    index.create(conn, checkfirst=True)
    conn.execute(USER_NAMES_DDL)
    present = {i["name"] for i in inspect(conn).get_indexes(memberships.name)}
    if MEMBERS_BY_ACCOUNT_KEYS in present:
        conn.exec_driver_sql(f"DROP INDEX {MEMBERS_BY_ACCOUNT_KEYS}")
