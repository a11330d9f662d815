"""The canonical store's tables: the product's own ids are the keys.

"All roads lead to account_id": CRM, billing and support ids map to them through ``identities``.

``attributes`` columns hold JSON objects (plan, status, contract value, renewal date, licenses,
usage figures, Segment traits that have no column of their own). Key columns are plain strings so
any product id (numeric, UUID, slug) fits; ordering uses code-point order (see
:func:`syncer.db.key_order`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    event,
)

metadata = MetaData()

# Keys compare in code-point order everywhere. On PostgreSQL the column collation is "C" so
# that primary-key indexes serve `ORDER BY key COLLATE "C"` and keyset ranges (see
# syncer.db.key_order); with the locale's default collation every chunk would re-sort the table.
KEY = String(255).with_variant(String(255, collation="C"), "postgresql")


def _described(stage: str) -> tuple[Column[Any], ...]:
    """The columns every described record (account, user) ends with, in this order: its stage,
    its free attributes and its timestamps. The readers unpack rows positionally."""
    return (
        Column(stage, String(64)),
        Column("attributes", JSON, nullable=False, default=dict),
        Column("created_at", DateTime(timezone=True)),
        Column("updated_at", DateTime(timezone=True)),
    )


#: The change feed's columns (see :mod:`syncer.store.feed`): written by the database's triggers
#: only, never by a loader, and never part of a record. ``parent_seq`` (accounts) is the stamp of
#: the account's insertion or last change of parent: a change to the hierarchy's shape.
FEED_COLUMNS: frozenset[str] = frozenset({"change_seq", "parent_seq"})


def _change_seq() -> Column[Any]:
    # Always last but for ``parent_seq``: readers take the data columns, which come first.
    return Column("change_seq", BigInteger, index=True)


#: The covering index the account-side reader walks on SQLite (schema version 3); it replaced
#: :data:`MEMBERS_BY_ACCOUNT_KEYS` there, which PostgreSQL keeps (see ``memberships``).
MEMBERS_BY_ACCOUNT = "ix_memberships_by_account"
MEMBERS_BY_ACCOUNT_KEYS = "ix_memberships_account_user"


def data_columns(table: Table) -> list[Column[Any]]:
    """``table``'s columns without the feed's, in table order: what readers and loaders see."""
    return [c for c in table.c if c.name not in FEED_COLUMNS]


accounts = Table(
    "accounts",
    metadata,
    Column("account_id", KEY, primary_key=True),
    Column("name", String(1024)),
    Column("domain", String(1024)),
    # No foreign key: a child may be loaded before its parent; the hierarchy policy reports
    # missing parents and cycles by account id, which a constraint error could not.
    Column("parent_account_id", KEY, index=True),
    *_described("stage"),
    _change_seq(),
    Column("parent_seq", BigInteger),
)

users = Table(
    "users",
    metadata,
    Column("user_id", KEY, primary_key=True),
    Column("email", String(320), index=True),
    Column("first_name", String(1024)),
    Column("last_name", String(1024)),
    *_described("lead_stage"),
    _change_seq(),
)

#: SQLite only (schema version 3): what an account shows of each member, by ``user_id``. The
#: account-side reader looks every member row's user up here, one B-tree descent instead of two
#: (the primary key's index, then the table by rowid), and names the index (``INDEXED BY``:
#: SQLite's planner prefers the unique one). Not on PostgreSQL, which plans that join itself and
#: limits an index entry to about 2.7 kB, which long names could pass.
USER_NAMES = "ix_users_names"
USER_NAMES_DDL = DDL(
    f"CREATE INDEX IF NOT EXISTS {USER_NAMES} ON users (user_id, email, first_name, last_name)"
)
event.listen(users, "after_create", USER_NAMES_DDL.execute_if(dialect="sqlite"))

memberships = Table(
    "memberships",
    metadata,
    Column("user_id", KEY, ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True),
    Column(
        "account_id", KEY, ForeignKey("accounts.account_id", ondelete="CASCADE"), primary_key=True
    ),
    Column("role", String(255)),
    Column("stage", String(64)),
    Column("joined_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
    _change_seq(),
    # The account-side reader walks memberships by account. On SQLite every column it reads is
    # in the index (a covering index), so a member row costs one index step, not a step and a
    # lookup of the row in the table by rowid (random: rows are stored in insertion order).
    # PostgreSQL keeps the index of the two keys: it limits an index entry to 2,704 bytes, which
    # two 255-character keys and a 255-character role in 4-byte UTF-8 pass (3,104 bytes: the
    # load would fail), and it plans that read itself.
    Index(
        MEMBERS_BY_ACCOUNT, "account_id", "user_id", "role", "stage", "joined_at", "updated_at"
    ).ddl_if(dialect="sqlite"),
    Index(MEMBERS_BY_ACCOUNT_KEYS, "account_id", "user_id").ddl_if(dialect="postgresql"),
)

identities = Table(
    "identities",
    metadata,
    Column("entity", String(32), primary_key=True),  # "account" | "user"
    Column("entity_id", KEY, primary_key=True),
    Column("system", String(64), primary_key=True),  # "hubspot", "salesforce", "stripe", ...
    Column("external_id", String(255), nullable=False),
    _change_seq(),
    Index("ix_identities_lookup", "system", "entity", "external_id"),
)

#: The tables whose rows the change feed stamps.
FEED_TABLES: tuple[Table, ...] = (accounts, users, memberships, identities)

# What left the store (and the edges of the account forest that moved), until every
# destination's position has passed it (``prune_tombstones``). Written by the DELETE (and
# key-changing UPDATE) triggers. ``entity`` and the keys:
#   user         user_id
#   account      account_id, its parent_account_id when it was deleted
#   membership   user_id, account_id
#   identity     entity_id, "entity:system" (e.g. "user:hubspot")
#   parent       account_id, its previous parent_account_id (NULL: it was a root): re-parented
#   table        the table's name: TRUNCATEd (PostgreSQL), every destination needs a full run
#   member       user_id, the member columns that changed ("email,first_name"; "*": all): not a
#                deletion, what a user's accounts show of it changed (syncer.store.triggers)
#   feed         "member": the member trigger was installed here (windows before it cannot tell)
# ``change_seq`` is the stamp of the deleting write, as on the tables' rows.
store_tombstones = Table(
    "store_tombstones",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("entity", String(32), nullable=False),
    Column("entity_key", KEY, nullable=False),
    Column("other_key", String(600)),
    Column("change_seq", BigInteger, nullable=False, index=True),
)

# SQLite's change counter: one row, incremented by every trigger (writers are serialised, so
# the counter's order is commit order). PostgreSQL leaves it alone (see store_commits).
store_feed = Table(
    "store_feed",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
)

# PostgreSQL's commit order: one row per transaction that wrote the store, its transaction id
# (the stamp its rows carry) and the commit sequence number it took at commit, under a lock
# that orders commits (see syncer.store.feed). Unused on SQLite.
store_commits = Table(
    "store_commits",
    metadata,
    Column("xid", BigInteger, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, index=True),
)

#: The store's schema version. ``syncer init`` records it; a run refuses a store at another one
#: (a store made by another syncer release, or never initialised) instead of guessing.
#: Version 2 added the change feed, version 3 the covering indexes the account-side reader walks
#: (``syncer init`` upgrades a store at an older version in place: :mod:`syncer.store.upgrade`).
STORE_SCHEMA_VERSION = 3

# One row: the version ``init_store`` created the tables at. A table (not SQLite's
# ``PRAGMA user_version``) so that SQLite and PostgreSQL read it the same way.
store_version = Table(
    "syncer_store_version",
    metadata,
    Column("version", Integer, primary_key=True),
)
