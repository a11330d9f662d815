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
  (``store_feed.seq``) inside that transaction. So values are handed out in commit order: the
  counter as committed is the position (every value at or below it is committed), and a value
  above it belongs to a transaction that has not committed yet (read next time).
* PostgreSQL runs writers concurrently, and a number taken at statement time (a SEQUENCE's, or
  a transaction id) becomes visible at commit, in commit order, not number order. So a row's
  stamp is the writing transaction's id (``pg_current_xact_id()``), and the position is a
  *commit* number: the transaction's first stamp registers its id in ``store_commits``, and a
  deferred trigger on that row — run at commit — takes an advisory lock (held until the commit
  is visible) and the next value of the SEQUENCE ``store_commit_seq``. Commit numbers are
  therefore handed out in the order commits become visible, and the highest visible one is the
  position: every transaction numbered at or below it is visible. A transaction still running
  has no number yet; it takes a higher one when it commits, and is read next time. Readers
  take no lock and are never held back by a running writer (however long: a load of millions
  of rows), and the numbers survive a dump and restore. The price: the commits of store
  writers are serialised (each holds the lock from its commit trigger to the end of its commit,
  one WAL flush) — fine for loads and the product's writes of users and accounts, a ceiling of
  one commit per flush for thousands of tiny concurrent transactions. (The low-water mark of
  running transactions, ``pg_snapshot_xmin``, needs no lock, but is held back by every writing
  transaction in the whole cluster, any table, any database: one long batch job stalls every
  sync's view of the store.)

Changes stamped at or below the position but rewritten since carry their newer stamp: a reader
sees them in the window of that stamp. Each row holds only its latest stamp, so the feed says
*which* keys changed, not how; readers then read those keys' current rows (a record changed
again after the position is read at its newer state, and again at the next run: harmless).

A store restored from a backup, or re-created, can number lower than a recorded position: then
:func:`changes_since` reports ``full`` (the caller re-reads everything), as it does after a
``TRUNCATE`` of a store table (PostgreSQL; no row triggers fire for it). Writes with triggers
disabled (``session_replication_role = replica``, ``pg_restore --disable-triggers``) are not
seen: run every destination with ``--full`` after them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, delete, func, select
from sqlalchemy.engine import Connection, Engine

from syncer.db import is_postgres
from syncer.store.keys import RowsRead
from syncer.store.schema import (
    accounts,
    identities,
    memberships,
    store_commits,
    store_tombstones,
    users,
)
from syncer.store.triggers import (
    MEMBER_COLUMNS,
    columns_feed_installed,
    member_feed_installed,
    sqlite_counter,
)

MembershipKey = tuple[str, str]
IdentityKey = tuple[str, str, str]
"""``(entity, entity_id, system)`` of an identity."""


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A row that left the store (or an account's old parent edge): see ``store_tombstones``."""

    entity: str  # user | account | membership | identity | parent | table | member | feed
    key: str
    other: str | None
    change_seq: int


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """The keys changed after ``since`` up to ``position`` (the new position to record once
    what they imply is acknowledged), each tuple sorted.

    ``structural`` holds the changed accounts whose place in the forest changed (inserted or
    re-parented). ``members_known`` says the ``member`` rows (:meth:`shown`) cover the whole
    window (see :mod:`syncer.store.triggers`); ``columns_known``, that they name every column
    change of a user in it, the others as ``+`` (:meth:`own_changes`). ``full`` (with
    ``reason``) says the feed cannot tell: read everything.
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
    members_known: bool = False
    columns_known: bool = False

    def shown(self, columns: Iterable[str]) -> set[str]:
        """The users whose row changed in a way their accounts show: one of ``columns`` (of
        :data:`~syncer.store.triggers.MEMBER_COLUMNS`) changed, the user arrived after its
        memberships or was re-keyed, or it left. When the feed cannot tell (``members_known``
        false), every user whose row changed or went."""
        gone = {t.key for t in self.gone("user")}
        if not self.members_known:
            return {*self.users, *gone}
        wanted = set(columns)
        for t in self.gone("member"):
            changed = set((t.other or "*").split(","))
            if "*" in changed or changed & wanted:
                gone.add(t.key)
        return gone

    def column_changes(self, columns: Iterable[str]) -> set[str]:
        """Of :meth:`shown`: the users whose accounts see only new values of ``columns`` (the
        user neither arrived, nor was re-keyed, nor left). Empty when the feed cannot tell."""
        if not self.members_known:
            return set()
        return self._changed_columns(set(columns), only=False)

    def own_changes(self) -> set[str]:
        """The users whose every change in the window was to the columns of
        :data:`~syncer.store.triggers.MEMBER_COLUMNS` (the email, the names): their ``member``
        rows name only those, and the user neither arrived, nor was re-keyed, nor left, nor
        changed another column. Empty when the feed cannot tell (``columns_known`` false)."""
        if not self.columns_known:
            return set()
        return self._changed_columns(set(MEMBER_COLUMNS), only=True)

    def _changed_columns(self, wanted: set[str], *, only: bool) -> set[str]:
        """The users whose ``member`` rows name one of ``wanted`` (``only``: and nothing else,
        ``+`` included), and that neither arrived, nor were re-keyed (``*``), nor left."""
        changed: set[str] = set()
        other: set[str] = {t.key for t in self.gone("user")}
        for t in self.gone("member"):
            names = set((t.other or "*").split(","))
            if "*" in names or (only and not names <= wanted):
                other.add(t.key)
            elif names & wanted:
                changed.add(t.key)
        return changed - other

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
        # Commit numbers become visible in their order: the highest visible one is safe.
        c = store_commits.c
        return int(conn.execute(select(func.coalesce(func.max(c.seq), 0))).scalar_one())
    return sqlite_counter(conn)


def _window(
    conn: Connection, since: int, upto: int
) -> Callable[[Table, Sequence[Any]], list[tuple[Any, ...]]]:
    """A query function: the given columns of a table's rows stamped in ``(since, upto]``,
    with the stamp's position last.

    On SQLite a stamp is a position. On PostgreSQL a stamp is a transaction id, whose position
    is its commit number in ``store_commits``.
    """
    if is_postgres(conn):
        c = store_commits.c

        def on_postgres(table: Table, columns: Sequence[Any]) -> list[tuple[Any, ...]]:
            query = (
                select(*columns, c.seq)
                .join(store_commits, table.c.change_seq == c.xid)
                .where(c.seq > since, c.seq <= upto)
            )
            return [tuple(r) for r in conn.execute(query)]

        return on_postgres

    def on_sqlite(table: Table, columns: Sequence[Any]) -> list[tuple[Any, ...]]:
        seq = table.c.change_seq
        query = select(*columns, seq).where(seq > since, seq <= upto)
        return [tuple(r) for r in conn.execute(query)]

    return on_sqlite


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

        window = _window(conn, position, upto)
        a, m, i, t = accounts.c, memberships.c, identities.c, store_tombstones.c
        changed_accounts = window(accounts, [a.account_id, a.parent_seq])
        if is_postgres(conn):  # parent_seq is a transaction id: was it one of the window's?
            xids = set(
                conn.execute(
                    select(store_commits.c.xid).where(
                        store_commits.c.seq > position, store_commits.c.seq <= upto
                    )
                ).scalars()
            )
            moved = {r[0] for r in changed_accounts if r[1] in xids}
        else:
            moved = {r[0] for r in changed_accounts if r[1] is not None and r[1] > position}
        user_rows = window(users, [users.c.user_id])
        member_rows = [r[:2] for r in window(memberships, [m.user_id, m.account_id])]
        identity_rows = [r[:3] for r in window(identities, [i.entity, i.entity_id, i.system])]
        tomb_rows = sorted(
            window(store_tombstones, [t.id, t.entity, t.entity_key, t.other_key]),
            key=lambda r: (r[-1], r[0]),
        )
        members_known = member_feed_installed(conn)
        columns_known = members_known and columns_feed_installed(conn)
    tombstones = tuple(Tombstone(e, k, o, int(seq)) for _, e, k, o, seq in tomb_rows)
    # A trigger installed inside the window: the changes before it are not told.
    markers = {tb.key for tb in tombstones if tb.entity == "feed"}
    members_known = members_known and "member" not in markers
    columns_known = columns_known and members_known and "columns" not in markers
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
        structural=tuple(sorted(moved)),
        memberships=tuple(sorted(member_rows)),
        identities=tuple(sorted(identity_rows)),
        tombstones=tombstones,
        full=bool(truncated),
        reason=f"table(s) {', '.join(truncated)} truncated" if truncated else "",
        rows_read=rows,
        members_known=members_known,
        columns_known=columns_known,
    )


def prune_tombstones(engine: Engine, position: int) -> int:
    """Delete the tombstones stamped at or below ``position`` — call it with the lowest
    position every destination has recorded — and return how many went.

    A destination with no recorded position runs in full (it reads the whole store and needs no
    tombstones), so it does not count towards the lowest.
    """
    t, c = store_tombstones.c, store_commits.c
    with engine.begin() as conn:
        if not is_postgres(conn):
            return int(
                conn.execute(delete(store_tombstones).where(t.change_seq <= position)).rowcount or 0
            )
        passed = select(c.xid).where(c.seq <= position)
        gone = conn.execute(delete(store_tombstones).where(t.change_seq.in_(passed))).rowcount
        # Keep the newest commit: the position is read from it.
        newest = select(func.max(c.seq)).scalar_subquery()
        conn.execute(delete(store_commits).where(c.seq <= position, c.seq < newest))
        return int(gone or 0)


__all__ = [
    "ChangeSet",
    "IdentityKey",
    "MembershipKey",
    "Tombstone",
    "changes_since",
    "current_position",
    "prune_tombstones",
]
