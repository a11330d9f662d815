"""The store's change feed: what changed since a position, read without ever skipping a change.

Every write to the store's tables — ``syncer load``, Segment events, identities,
``syncer store delete``, and the product's own jobs writing plain SQL — goes through the
database's triggers (:mod:`syncer.store.triggers`), which stamp each row they insert or update
with a store-wide change number (``change_seq``) and write a tombstone (``store_tombstones``)
for each row deleted. A reader keeps a *position*: every change stamped at or below it has been
read. :func:`current_position` is the safe position to read up to now; :func:`changes_since`
reads the keys changed after a position, up to that safe position.

**The watermark.** A position may only pass changes that are committed: a reader that recorded
``max(change_seq)`` would skip a change stamped lower by a transaction that commits later.

* SQLite has one writer at a time: a write transaction holds the write lock from its first
  write until it commits, and each trigger takes the next value of a one-row counter
  (``store_feed.seq``) inside that transaction. So values are handed out in commit order, the
  counter as committed is the position (every value at or below it is committed), and a
  value above it belongs to a transaction that has not committed yet (it will be read next
  time).
* PostgreSQL runs writers concurrently, and any number a writer takes (a SEQUENCE's or a
  transaction id) becomes visible only at its commit, in commit order, not number order. So the
  stamp is the writing transaction's id itself, ``pg_current_xact_id()`` (64 bits with the
  epoch: it never wraps), and the position is ``xmin - 1`` of the reader's snapshot
  (``pg_snapshot_xmin(pg_current_snapshot())``): every transaction with a lower id has finished
  — committed and visible, or rolled back — and every transaction still running or yet to
  start has an id at or above ``xmin``. A change stamped above the position is read next time,
  once its writer has finished. A SEQUENCE would need the transaction id beside it for this
  argument anyway, so the id *is* the change number. Writers pay nothing (no lock, no shared
  row); the price is that a long-running write transaction anywhere in the cluster holds the
  position back until it ends (its changes and later ones are read after it, not lost).

Changes stamped at or below the position but rewritten since carry their newer stamp: a reader
sees them in the window of that stamp. Each row holds only its latest stamp, so the feed says
*which* keys changed, not how; readers then read those keys' current rows (a record changed
again after the position is read at its newer state, and again at the next run: harmless).

A store restored from a backup, or re-created, can number lower than a recorded position: then
:func:`changes_since` reports ``full`` (the caller re-reads everything), as it does after a
``TRUNCATE`` of a store table (PostgreSQL; no row triggers fire for it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection, Engine

from syncer.db import is_postgres
from syncer.errors import ConfigError
from syncer.store.keys import RowsRead
from syncer.store.schema import (
    accounts,
    identities,
    memberships,
    store_feed,
    store_tombstones,
    users,
)

MembershipKey = tuple[str, str]
IdentityKey = tuple[str, str, str]
"""``(entity, entity_id, system)`` of an identity."""


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A row that left the store (or an account's old parent edge): see ``store_tombstones``."""

    entity: str  # user | account | membership | identity | parent | table
    key: str
    other: str | None
    change_seq: int


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """The keys changed after ``since`` up to ``position`` (the new position to record once
    what they imply is acknowledged), each tuple sorted.

    ``structural`` holds the changed accounts whose place in the forest changed (inserted or
    re-parented). ``full`` (with ``reason``) says the feed cannot tell: read everything.
    """

    since: int
    position: int
    users: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    structural: tuple[str, ...] = ()
    memberships: tuple[MembershipKey, ...] = ()
    identities: tuple[IdentityKey, ...] = ()
    tombstones: tuple[Tombstone, ...] = ()
    full: bool = False
    reason: str = ""
    rows_read: int = field(default=0, compare=False)

    def __bool__(self) -> bool:
        """Whether anything changed (or everything must be re-read)."""
        return self.full or any(
            (self.users, self.accounts, self.memberships, self.identities, self.tombstones)
        )

    def gone(self, entity: str) -> list[Tombstone]:
        """The tombstones of one ``entity``, in stamp order."""
        return [t for t in self.tombstones if t.entity == entity]


def current_position(engine: Engine) -> int:
    """The safe position: every change stamped at or below it is committed and visible.

    Take it *before* reading the store for a plan (a full one too), and record it only once the
    plan's writes are acknowledged: what changed while the plan read is read again next time.
    """
    with engine.connect() as conn:
        return _position(conn)


def _position(conn: Connection) -> int:
    if is_postgres(conn):
        xmin = conn.exec_driver_sql("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
        return int(xmin.scalar_one()) - 1
    seq = conn.execute(select(store_feed.c.seq).where(store_feed.c.id == 1)).scalar()
    if seq is None:
        raise ConfigError(
            "the store has no change feed counter (store_feed); run `syncer init --store …`"
        )
    return int(seq)


def changes_since(engine: Engine, position: int, *, read: RowsRead | None = None) -> ChangeSet:
    """The keys stamped after ``position``, up to the current safe position.

    ``position`` 0 reads every row (a store's first stamps are above 0). ``read`` counts the
    feed rows read (under ``extra["feed"]``).
    """
    with engine.connect() as conn:
        upto = _position(conn)
        if position > upto:
            return ChangeSet(
                position,
                upto,
                full=True,
                reason=f"the recorded position {position} is past the store's feed ({upto}): "
                "the store was restored or re-created",
            )

        def window(table: Any, *columns: Any) -> list[Any]:
            seq = table.c.change_seq
            query = select(*columns).where(seq > position, seq <= upto)
            return [tuple(r) for r in conn.execute(query)]

        a = accounts.c
        changed_accounts = window(accounts, a.account_id, a.parent_seq)
        user_rows = window(users, users.c.user_id)
        member_rows = window(memberships, memberships.c.user_id, memberships.c.account_id)
        i = identities.c
        identity_rows = window(identities, i.entity, i.entity_id, i.system)
        t = store_tombstones.c
        tomb_rows = conn.execute(
            select(t.entity, t.entity_key, t.other_key, t.change_seq)
            .where(t.change_seq > position, t.change_seq <= upto)
            .order_by(t.change_seq, t.id)
        ).all()
    tombstones = tuple(Tombstone(e, k, o, int(s)) for e, k, o, s in tomb_rows)
    truncated = sorted({tb.key for tb in tombstones if tb.entity == "table"})
    rows = (
        len(changed_accounts)
        + len(user_rows)
        + len(member_rows)
        + len(identity_rows)
        + len(tombstones)
    )
    if read is not None:
        read.extra["feed"] = read.extra.get("feed", 0) + rows
    return ChangeSet(
        position,
        upto,
        users=tuple(sorted(r[0] for r in user_rows)),
        accounts=tuple(sorted(r[0] for r in changed_accounts)),
        structural=tuple(
            sorted(r[0] for r in changed_accounts if r[1] is not None and r[1] > position)
        ),
        memberships=tuple(sorted(member_rows)),
        identities=tuple(sorted(identity_rows)),
        tombstones=tombstones,
        full=bool(truncated),
        reason=f"table(s) {', '.join(truncated)} truncated" if truncated else "",
        rows_read=rows,
    )


def prune_tombstones(engine: Engine, position: int) -> int:
    """Delete the tombstones stamped at or below ``position`` — call it with the lowest
    position every destination has recorded — and return how many went.

    A destination with no recorded position runs in full (it reads the whole store and needs no
    tombstones), so it does not count towards the lowest.
    """
    with engine.begin() as conn:
        result = conn.execute(
            delete(store_tombstones).where(store_tombstones.c.change_seq <= position)
        )
        return int(result.rowcount or 0)


__all__ = [
    "ChangeSet",
    "IdentityKey",
    "MembershipKey",
    "Tombstone",
    "changes_since",
    "current_position",
    "prune_tombstones",
]
