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
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
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
)

users = Table(
    "users",
    metadata,
    Column("user_id", KEY, primary_key=True),
    Column("email", String(320), index=True),
    Column("first_name", String(1024)),
    Column("last_name", String(1024)),
    *_described("lead_stage"),
)

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
    # The account-side reader walks memberships by account.
    Index("ix_memberships_account_user", "account_id", "user_id"),
)

identities = Table(
    "identities",
    metadata,
    Column("entity", String(32), primary_key=True),  # "account" | "user"
    Column("entity_id", KEY, primary_key=True),
    Column("system", String(64), primary_key=True),  # "hubspot", "salesforce", "stripe", ...
    Column("external_id", String(255), nullable=False),
    Index("ix_identities_lookup", "system", "entity", "external_id"),
)

#: The store's schema version. ``syncer init`` records it; a run refuses a store at another one
#: (a store made by another syncer release, or never initialised) instead of guessing.
STORE_SCHEMA_VERSION = 1

# One row: the version ``init_store`` created the tables at. A table (not SQLite's
# ``PRAGMA user_version``) so that SQLite and PostgreSQL read it the same way.
store_version = Table(
    "syncer_store_version",
    metadata,
    Column("version", Integer, primary_key=True),
)
