"""Durable policy marks: the high-water marks that make the stage policy monotonic across runs.

Rows of ``policy_marks`` (:mod:`syncer.state.schema`) as :class:`~syncer.model.Mark` records:

* ``("membership", user_id, account_id)`` — a membership's high-water mark or tombstone;
* ``("lead", user_id, "")`` — the high-water mark of a user's own lead stage;
* ``("primary", user_id, account_id)`` — the user's primary account (``churned``: a former one);
* ``("account", "", account_id)`` — an account's own stage.

Readers stream in code-point key order (:func:`syncer.db.key_order`) so the resolver can
merge-join them with the store's streams; :meth:`MarkStore.save` is an idempotent batched upsert.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Column, Select, inspect, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from syncer.db import (
    ALL_KEYS,
    IndexedBy,
    KeyRange,
    as_utc,
    key_order,
    raw_columns,
    stream_rows,
    upsert,
)
from syncer.model import ACCOUNT_MARK, LEAD_MARK, MEMBERSHIP_MARK, PRIMARY_MARK, Mark
from syncer.state.database import StateKeys, key_chunks
from syncer.state.schema import MARKS_BY_ACCOUNT, MARKS_BY_ACCOUNT_DDL, metadata, policy_marks

USER_SUBJECTS: tuple[str, ...] = (MEMBERSHIP_MARK, LEAD_MARK, PRIMARY_MARK)
"""The subjects user resolution reads and writes."""

_ACCOUNT_SUBJECTS = (ACCOUNT_MARK, MEMBERSHIP_MARK)
_KEY = ("subject", "user_id", "account_id")


# The table's columns, in its order, without result processors: SQLite's stored text and
# integers as they are (as_utc and bool() in _mark convert them, several times cheaper than the
# processors' regex parse), PostgreSQL's driver values unchanged.
_COLUMNS = raw_columns(policy_marks)
#: The table read by a list of accounts, through ``ix_policy_marks_by_account``, named: SQLite's
#: planner would take the primary key's index (its leading ``subject`` an equality), read every
#: membership mark and sort the matches (at 1M users, 2.5M rows per chunk of 500 accounts).
_BY_ACCOUNT = IndexedBy(policy_marks, MARKS_BY_ACCOUNT)

log = logging.getLogger("syncer.state")


def _mark(row: Sequence[Any]) -> Mark:
    subject, user_id, account_id, stage, churned, updated_at = row
    return Mark(subject, user_id, account_id, stage, bool(churned), as_utc(updated_at))


def marks_query(
    subjects: Sequence[str], by: str, conn: Connection, *, indexed: bool = False
) -> Select[Any]:
    """The marks of ``subjects`` ordered by ``by`` (``"user_id"`` or ``"account_id"``), then
    the other key, then subject; the caller adds which ``by`` keys. ``indexed``: through
    ``ix_policy_marks_by_account``, for a read by account (the index must exist)."""
    if indexed:
        query = select(*_BY_ACCOUNT.c).where(_BY_ACCOUNT.c.subject.in_(subjects))
    else:
        query = select(*_COLUMNS).where(policy_marks.c.subject.in_(subjects))
    then = "account_id" if by == "user_id" else "user_id"
    c = query.selected_columns
    return query.order_by(
        key_order(c[by], conn), key_order(c[then], conn), key_order(c.subject, conn)
    )


class MarkStore:
    """The ``policy_marks`` table of one sync-state database."""

    def __init__(self, engine: Engine, *, chunk_size: int = 5000) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
        self.engine = engine
        self.chunk_size = chunk_size
        self._by_account: bool | None = None  # whether ix_policy_marks_by_account is there

    def init(self) -> None:
        """Create the sync-state tables that are missing (idempotent)."""
        metadata.create_all(self.engine)

    def exists(self) -> bool:
        """Whether the marks table exists: a read-only caller treats "no" as "no marks yet"."""
        return inspect(self.engine).has_table(policy_marks.name)

    def _stream(self, subjects: Sequence[str], by: str, keys: StateKeys) -> Iterator[Mark]:
        """Marks of ``subjects`` whose ``by`` column is in ``keys``, ordered by ``(by, the
        other key, subject)`` (:func:`marks_query`), streamed: memory holds one chunk however
        many marks there are. A steady-state run reads every mark of every user, about four per
        user: the columns come raw (no result processors)."""
        # A list of accounts is read through the marks' index by account; a range (a full
        # run) as it was before that index, which it does not need.
        indexed = by == "account_id" and not isinstance(keys, KeyRange) and self._account_index()
        with self.engine.connect() as conn:
            query = marks_query(subjects, by, conn, indexed=indexed)
            column = query.selected_columns[by]
            if isinstance(keys, KeyRange):
                for row in stream_rows(
                    conn, query.where(*keys.conditions(column, conn)), self.chunk_size
                ):
                    yield _mark(row)
                return
            for chunk in key_chunks(keys):  # exactly these keys, chunk after chunk in order
                for row in conn.execute(query.where(column.in_(chunk))):
                    yield _mark(row)

    def _account_index(self) -> bool:
        """Whether the marks' index by account is there, built first if not (once, by the
        first read of a list of accounts: a first run, which writes a mark per membership, does
        not pay for inserting each one into it; later runs write few). False when it cannot be
        built (a state this process may not change): the marks are read without it."""
        if self._by_account is None:
            self._by_account = self._has_account_index()
            if not self._by_account:
                try:
                    with self.engine.begin() as conn:  # IF NOT EXISTS: another run may race
                        conn.execute(text(MARKS_BY_ACCOUNT_DDL))
                    self._by_account = True
                except DBAPIError as exc:
                    # PostgreSQL's IF NOT EXISTS can still lose a race with another builder.
                    self._by_account = self._has_account_index()
                    if not self._by_account:
                        log.warning(
                            "the policy marks' index by account cannot be built (%s): an "
                            "incremental run reads them more slowly",
                            exc.orig,
                        )
        return self._by_account

    def _has_account_index(self) -> bool:
        indexes = inspect(self.engine).get_indexes(policy_marks.name)
        return any(i["name"] == MARKS_BY_ACCOUNT for i in indexes)

    def iter_marks(
        self, subjects: Iterable[str] = USER_SUBJECTS, *, keys: StateKeys = ALL_KEYS
    ) -> Iterator[Mark]:
        """Marks of ``subjects`` (of users in ``keys``) in ``(user_id, account_id, subject)``
        code-point order."""
        return self._stream(list(subjects), "user_id", keys)

    def iter_account_marks(
        self, *, include_memberships: bool = True, keys: StateKeys = ALL_KEYS
    ) -> Iterator[Mark]:
        """Account marks (and membership marks), of accounts in ``keys``, in ``(account_id,
        user_id, subject)`` order.

        The account's own mark (``user_id`` ``""``) comes first in each account, then its
        members' membership marks, which give the account view each member's high-water mark.
        """
        subjects = _ACCOUNT_SUBJECTS if include_memberships else (ACCOUNT_MARK,)
        return self._stream(subjects, "account_id", keys)

    def membership_marks(self, wanted: Mapping[str, Collection[str]]) -> dict[str, dict[str, Mark]]:
        """The membership marks of the pairs ``wanted`` (``account_id → user_ids``), by account
        and user id: what :meth:`iter_account_marks` gives an account view of those members.
        Read by user, through the primary key: a few users' marks, whatever their accounts'
        sizes (by account, SQLite walks every member of each account)."""
        found: dict[str, dict[str, Mark]] = {}
        if not wanted or not self.exists():
            return found
        c = policy_marks.c
        users = {u for members in wanted.values() for u in members}
        with self.engine.connect() as conn:
            for part in key_chunks(users):
                query = select(*_COLUMNS).where(c.subject == MEMBERSHIP_MARK, c.user_id.in_(part))
                for row in conn.execute(query):
                    mark = _mark(row)
                    if mark.user_id in wanted.get(mark.account_id, ()):
                        found.setdefault(mark.account_id, {})[mark.user_id] = mark
        return found

    def get_user_marks(self, user_id: str) -> list[Mark]:
        """Every user-side mark of one user, in ``(account_id, subject)`` order."""
        c = policy_marks.c
        return self._marks_of(c.user_id, user_id, USER_SUBJECTS, c.account_id)

    def get_account_marks(self, account_id: str) -> list[Mark]:
        """One account's own mark and its members' membership marks, in ``user_id`` order."""
        c = policy_marks.c
        return self._marks_of(c.account_id, account_id, _ACCOUNT_SUBJECTS, c.user_id)

    def _marks_of(
        self, by: Column[Any], value: str, subjects: Sequence[str], then: Column[Any]
    ) -> list[Mark]:
        c = policy_marks.c
        with self.engine.connect() as conn:
            query = (
                select(*_COLUMNS)
                .where(by == value, c.subject.in_(subjects))
                .order_by(key_order(then, conn), key_order(c.subject, conn))
            )
            return [_mark(r) for r in conn.execute(query)]

    def save(self, marks: Iterable[Mark], *, batch_size: int = 10_000) -> int:
        """Upsert ``marks`` in batches, one transaction per batch; returns how many were given.

        A run saves what it buffered (up to a few thousand marks) in one transaction: each
        commit writes every page it dirtied, and once ``ix_policy_marks_by_account`` exists its
        inserts land on scattered pages, so fewer, larger commits write less (400,000 marks
        saved with the index: 8.7 s in transactions of 1,000, 5.7 s in transactions of 10,000).

        Idempotent: saving the same marks again changes nothing. A crash between batches leaves
        the earlier batches saved, which is safe: a mark only ever records what a run decided.
        """
        total = 0
        batch: list[dict[str, Any]] = []
        for m in marks:
            batch.append(
                {
                    "subject": m.subject,
                    "user_id": m.user_id,
                    "account_id": m.account_id,
                    "stage": m.stage,
                    "churned": m.churned,
                    "updated_at": m.updated_at,
                }
            )
            if len(batch) >= batch_size:
                total += self._write(batch)
                batch = []
        if batch:
            total += self._write(batch)
        return total

    def _write(self, batch: list[dict[str, Any]]) -> int:
        # Later marks for the same key win (a batch never needs two rows per key, and PostgreSQL
        # refuses an upsert that touches one row twice).
        unique = list({(r["subject"], r["user_id"], r["account_id"]): r for r in batch}.values())
        with self.engine.begin() as conn:
            upsert(conn, policy_marks, unique, _KEY)
        return len(batch)
