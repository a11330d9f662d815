"""Feed positions: where in the store's change feed each destination's last completed run stood.

A destination's position is the store change number its last *completed* run planned from:
every store change stamped at or below it is reflected in the destination (acknowledged, or on
the dead-letter list to be retried). It moves only when a run has gone through every object of
the mapping (see :meth:`syncer.engine.RunSession.finish`): a run that stops half-way leaves it
where it was, so the next run reads the same changes again and converges. Beside it, the hash of
the mapping, policies and config the run planned with: a run with another hash reads everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, inspect, select
from sqlalchemy.engine import Engine

from syncer.db import dialect_insert
from syncer.state.database import as_utc, to_db, utcnow
from syncer.state.schema import sync_feed_positions

__all__ = ["FeedPosition", "FeedPositions"]

_T = sync_feed_positions


@dataclass(frozen=True, slots=True)
class FeedPosition:
    """One destination's recorded position and the configuration hash it was planned with."""

    destination: str
    position: int
    config_hash: str
    run_id: str | None
    updated_at: datetime


class FeedPositions:
    """The ``sync_feed_positions`` table of one sync-state database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _exists(self) -> bool:
        return inspect(self.engine).has_table(_T.name)

    def get(self, destination: str) -> FeedPosition | None:
        """The destination's position, or ``None`` when no run of it has completed (or the
        state predates the table)."""
        if not self._exists():
            return None
        with self.engine.connect() as conn:
            row = conn.execute(
                select(_T.c.position, _T.c.config_hash, _T.c.run_id, _T.c.updated_at).where(
                    _T.c.destination == destination
                )
            ).first()
        if row is None:
            return None
        return FeedPosition(destination, int(row[0]), row[1], row[2], as_utc(row[3]))

    def position_of(self, destination: str) -> int:
        """The destination's position, 0 when none is recorded."""
        recorded = self.get(destination)
        return 0 if recorded is None else recorded.position

    def record(self, destination: str, position: int, config_hash: str, run_id: str) -> None:
        """Record the position a completed run planned from (call only once everything that run
        planned is acknowledged or on the dead-letter list)."""
        values = {
            "destination": destination,
            "position": position,
            "config_hash": config_hash,
            "run_id": run_id,
            "updated_at": to_db(utcnow()),
        }
        insert = dialect_insert(self.engine, _T).values(**values)
        stmt = insert.on_conflict_do_update(
            index_elements=[_T.c.destination],
            set_={k: v for k, v in values.items() if k != "destination"},
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def forget(self, destination: str) -> bool:
        """Drop the destination's position: its next run reads everything."""
        if not self._exists():
            return False
        with self.engine.begin() as conn:
            return bool(conn.execute(delete(_T).where(_T.c.destination == destination)).rowcount)

    def lowest(self) -> int | None:
        """The lowest position any destination recorded (tombstones at or below it are no
        longer needed by anyone), or ``None`` when none did."""
        if not self._exists():
            return None
        with self.engine.connect() as conn:
            value = conn.execute(select(func.min(_T.c.position))).scalar()
        return None if value is None else int(value)
