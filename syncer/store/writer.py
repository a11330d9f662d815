"""The write pass of ``syncer load``: patches upserted in batches, counting what changed.

Each batch reads the stored rows of its keys, applies the patches (see
:mod:`syncer.store.values`) and writes only the rows that are new or changed, so loading the
same files twice writes nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, ColumnElement, and_, select, tuple_
from sqlalchemy.engine import Connection

from syncer.db import as_utc, is_postgres, upsert
from syncer.store.reports import FileReport
from syncer.store.schema import data_columns
from syncer.store.triggers import PreStamp
from syncer.store.values import Patch, TableSpec


def stored_keys(conn: Connection, column: Column[Any], keys: set[str]) -> set[str]:
    """Those of ``keys`` that the store holds."""
    ordered = sorted(keys)
    found: set[str] = set()
    for i in range(0, len(ordered), 500):
        chunk = ordered[i : i + 500]
        found.update(conn.execute(select(column).where(column.in_(chunk))).scalars())
    return found


class BatchWriter:
    """Upserts one file's patches for one table in batches, counting what changed."""

    def __init__(
        self,
        conn: Connection,
        spec: TableSpec,
        report: FileReport,
        counts: dict[str, int],
        batch_size: int,
        *,
        stamp: PreStamp | None = None,
    ) -> None:
        self.conn = conn
        self.spec = spec
        self.report = report
        self.counts = counts
        self.batch_size = batch_size
        self.pending: dict[tuple[str, ...], Patch] = {}
        self.key_cols = [spec.table.c[k] for k in spec.key]
        self.stamp = stamp if stamp is not None and stamp.active else None
        # A stamping loader keeps an account's parent_seq unless its parent changes: read it
        # with the row, so every row of a batch has the same columns.
        self.parented = self.stamp is not None and "parent_seq" in spec.table.c

    def add(self, patch: Patch) -> int:
        """Queue ``patch`` (folding it into an earlier one for the same key); 1 for progress."""
        earlier = self.pending.get(patch.key)
        if earlier is None:
            self.pending[patch.key] = patch
        else:
            earlier.fold(patch)
        if len(self.pending) >= self.batch_size:
            self.flush()
        return 1

    def flush(self) -> None:
        if not self.pending:
            return
        stored = self._stored_rows(list(self.pending))
        changed: list[dict[str, Any]] = []
        seq = self.stamp.next() if self.stamp is not None else None
        for key, patch in self.pending.items():
            before = stored.get(key)
            after = patch.apply(self.spec, before)
            if before is None:
                outcome = "inserted"
            elif after == before:
                outcome = "unchanged"
            else:
                outcome = "updated"
            if outcome != "unchanged":
                changed.append(after)
                if seq is not None:
                    _stamped(after, before, seq, parented=self.parented)
            setattr(self.report, outcome, getattr(self.report, outcome) + 1)
            self.counts[outcome] += 1
        upsert(self.conn, self.spec.table, changed, self.spec.key)
        self.pending.clear()

    def _stored_rows(self, keys: list[tuple[str, ...]]) -> dict[tuple[str, ...], dict[str, Any]]:
        table = self.spec.table
        where: ColumnElement[bool]
        if len(self.key_cols) == 1:
            where = self.key_cols[0].in_([k[0] for k in keys])
        elif is_postgres(self.conn):
            # One IN list per key column (a superset of the keys; the rest are dropped below):
            # a row-value IN list of thousands of pairs makes PostgreSQL plan and scan for
            # seconds per batch, while per-column lists use the primary key index.
            where = and_(
                *(col.in_(sorted({k[i] for k in keys})) for i, col in enumerate(self.key_cols))
            )
        else:
            # SQLite looks row values up in the primary key; per-column lists made it walk the
            # account index through every member of a batch's popular accounts.
            where = tuple_(*self.key_cols).in_(keys)
        wanted = set(keys)
        rows: dict[tuple[str, ...], dict[str, Any]] = {}
        columns = data_columns(table) + ([table.c.parent_seq] if self.parented else [])
        for r in self.conn.execute(select(*columns).where(where)):
            if (
                len(self.key_cols) > 1
                and tuple(r._mapping[c.name] for c in self.key_cols) not in wanted
            ):
                continue
            row = dict(r._mapping)
            for column in self.spec.timestamps:
                row[column] = as_utc(row[column])
            if self.spec.has_attributes and row["attributes"] is None:
                row["attributes"] = {}
            rows[tuple(row[k] for k in self.spec.key)] = row
        return rows


def _stamped(
    row: dict[str, Any], before: dict[str, Any] | None, seq: int, *, parented: bool
) -> None:
    """Stamp a changed row for the change feed (see :class:`PreStamp`): ``change_seq``, and an
    account's ``parent_seq`` when it is new or its parent changed (a change of the forest)."""
    row["change_seq"] = seq
    if parented and (before is None or before["parent_account_id"] != row["parent_account_id"]):
        row["parent_seq"] = seq
