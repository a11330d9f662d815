"""Sync state tables: what each destination holds, runs, errors, policy marks, leases, feed
positions and member tokens.

The state may live in the store's database (the default) or its own (``state_url``). What a
destination holds is written only after it acknowledged the records, batch by batch; the member
tokens, derived from the store alone, are written as a run computes them
(:mod:`syncer.state.member_tokens`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

KEY = String(255)
# A key that is read back in key order: byte ("C") collation on PostgreSQL so the primary key index
# serves ``ORDER BY key COLLATE "C"`` (syncer.db.key_order) and keyset pages are index range
# scans. SQLite's default BINARY collation already is code-point order.
ORDERED_KEY = String(255).with_variant(String(255, collation="C"), "postgresql")
#: A destination's name, as every table that records something per destination keys it.
DESTINATION = String(128)


def _per_object(name: str, *columns: Column[Any], **options: Any) -> Table:
    """A table keyed by (destination, object, …): the rest of the key is in ``columns``."""
    return Table(
        name,
        metadata,
        Column("destination", DESTINATION, primary_key=True),
        Column("object", String(128), primary_key=True),
        *columns,
        **options,
    )


def _per_record(name: str, key: String, *columns: Column[Any]) -> Table:
    """A table with one row per (destination, object, key) record, and a ``run_id``."""
    return _per_object(
        name, Column("key", key, primary_key=True), *columns, Column("run_id", String(64))
    )


def _when(name: str, *, nullable: bool = True) -> Column[Any]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


# (destination, object, key) -> what the destination holds for that record.
sync_records = _per_record(
    "sync_records",
    ORDERED_KEY,
    Column("remote_id", String(255)),
    Column("payload_hash", String(64), nullable=False),
    Column("payload", JSON, nullable=False),  # last acknowledged payload, for field-level diffs
    Column("removed", Boolean, nullable=False, default=False),
    _when("synced_at"),
)

sync_runs = Table(
    "sync_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("destination", DESTINATION, nullable=False, index=True),
    Column("status", String(32), nullable=False),  # running | succeeded | failed | partial
    Column("dry_run", Boolean, nullable=False, default=False),
    _when("started_at", nullable=False),
    _when("finished_at"),
    Column("counts", JSON, nullable=False, default=dict),  # planned/unchanged/sent/rejected/...
    Column("message", Text),
)

sync_errors = _per_record(
    "sync_errors",
    KEY,
    Column("reason", Text, nullable=False),
    Column("field", String(255)),
    Column("attempts", Integer, nullable=False, default=1),
    Column("set_aside", Boolean, nullable=False, default=False),
    # Hash of the payload the destination refused: a set-aside record whose source data changed
    # since (a different hash) can be retried without waiting for an operator.
    Column("payload_hash", String(64)),
    _when("first_seen", nullable=False),
    _when("last_seen", nullable=False),
)

# High-water marks of the monotonic stage policy. subject "membership": (user_id, account_id);
# subject "account": ("", account_id). stage NULL + churned = tombstone of a churned subject.
policy_marks = Table(
    "policy_marks",
    metadata,
    Column("subject", String(16), primary_key=True),
    Column("user_id", KEY, primary_key=True),
    Column("account_id", KEY, primary_key=True),
    Column("stage", String(64)),
    Column("churned", Boolean, nullable=False, default=False),
    _when("updated_at"),
)

#: The marks by account: an account's own mark and its members' marks, which an incremental
#: run reads for the few accounts it resolves (without it, SQLite scanned every membership mark
#: for each chunk of 500 accounts). Covering: no table lookup per mark; its widest entry
#: (255-character keys in 4-byte UTF-8) stays under PostgreSQL's 2,704-byte limit. Not made with
#: the table: the first read that needs it builds it (:class:`syncer.state.marks.MarkStore`), so
#: a first run, which writes a mark per membership, does not also insert each one here.
MARKS_BY_ACCOUNT = "ix_policy_marks_by_account"
MARKS_BY_ACCOUNT_DDL = (
    f"CREATE INDEX IF NOT EXISTS {MARKS_BY_ACCOUNT} "
    "ON policy_marks (account_id, user_id, subject, stage, churned, updated_at)"
)

# Associations syncer created in a destination (e.g. HubSpot contact -> company), so that it
# removes only its own when a membership ends.
sync_associations = Table(
    "sync_associations",
    metadata,
    Column("destination", DESTINATION, primary_key=True),
    Column("from_object", String(64), primary_key=True),
    Column("from_key", KEY, primary_key=True),
    Column("to_object", String(64), primary_key=True),
    Column("to_key", KEY, primary_key=True),
    Column("kind", String(64), nullable=False, default=""),
    Column("run_id", String(64)),
    _when("created_at"),
    Index("ix_sync_associations_to", "destination", "to_object", "to_key"),
)

# One lease per destination so two runs never write the same destination at once. host and pid
# name the holding process (NULL in rows of a syncer that did not record them); init_state adds
# them to a table made before they existed (syncer.state.upgrade).
sync_locks = Table(
    "sync_locks",
    metadata,
    Column("destination", DESTINATION, primary_key=True),
    Column("holder", String(64), nullable=False),
    _when("acquired_at", nullable=False),
    _when("expires_at", nullable=False),
    Column("host", String(255)),
    Column("pid", Integer),
)


# Each member's contribution to an account record's member token fields (``members | tokens``,
# ``members | emails``), kept so that an account whose members changed only in the user columns
# it shows is re-rendered from these rows and the changed members instead of rebuilt from every
# member (syncer.engine.member_tokens). Derived from the store, never from what a destination
# acknowledged; an account's rows count only with its ``sync_member_token_accounts`` stamp of
# the run's config hash (syncer.state.member_tokens says why). Clustered by account on SQLite
# (WITHOUT ROWID): an account's rows are read together.
sync_member_tokens = _per_object(
    "sync_member_tokens",
    Column("account_id", ORDERED_KEY, primary_key=True),
    Column("user_id", KEY, primary_key=True),
    Column("tokens", Text, nullable=False),
    sqlite_with_rowid=False,
)

# When an account's member tokens were taken: the store's feed position of the run that wrote
# them (they reflect the store at or after it), and a hash of the run's config hash (mapping,
# policies, config) and of the encoding of the rows' text.
sync_member_token_accounts = _per_object(
    "sync_member_token_accounts",
    Column("account_id", ORDERED_KEY, primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("config_hash", String(64), nullable=False),
)

# The store's change-feed position per destination: the position its last *completed* run planned
# from (every store change stamped at or below it is reflected in the destination), and the hash
# of the mapping, policies and config that run planned with (a different hash means a full run).
sync_feed_positions = Table(
    "sync_feed_positions",
    metadata,
    Column("destination", DESTINATION, primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("config_hash", String(64), nullable=False),
    Column("run_id", String(64)),
    _when("updated_at", nullable=False),
)
