"""Columns added to the state tables after their first release, added to databases made before.

There is no migration framework: ``metadata.create_all`` creates missing tables but leaves an
existing table as it is. A column added later is therefore nullable (rows written before it read
as NULL) and listed in :data:`ADDED_COLUMNS`; :func:`add_new_columns` (run by ``init_state``)
adds those an existing table lacks. Idempotent and safe to race: two processes upgrading at once
both end with the column.
"""

from __future__ import annotations

from sqlalchemy import Column, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from syncer.db import is_postgres
from syncer.state.schema import sync_locks

__all__ = ["ADDED_COLUMNS", "add_new_columns"]

#: Every column added to a state table after the table first shipped.
ADDED_COLUMNS: tuple[Column[object], ...] = (
    sync_locks.c.host,  # the lease holder's host and process (syncer.state.lease_holders)
    sync_locks.c.pid,
)


def add_new_columns(engine: Engine) -> list[str]:
    """Add the :data:`ADDED_COLUMNS` an existing table lacks; returns ``table.column`` of each
    column added."""
    tables = {column.table.name for column in ADDED_COLUMNS}
    present = {name: _columns(engine, name) for name in tables}
    added = []
    for column in ADDED_COLUMNS:
        table = column.table.name
        if column.name in present[table]:
            continue
        if not column.nullable:  # pragma: no cover - a guard for whoever adds the next column
            raise ValueError(f"{table}.{column.name}: an added column must be nullable")
        kind = column.type.compile(dialect=engine.dialect)
        # SQLite has no IF NOT EXISTS for a column: a racing process shows as an error below.
        guard = "IF NOT EXISTS " if is_postgres(engine) else ""
        try:
            with engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {guard}{column.name} {kind}"))
        except (OperationalError, ProgrammingError):
            if column.name not in _columns(engine, table):
                raise
            continue  # another process added it between our look and our ALTER
        added.append(f"{table}.{column.name}")
    return added


def _columns(engine: Engine, table: str) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns(table)}
