"""One lease per destination, so two runs never write the same destination at once.

Taking the lease is one atomic statement on both databases::

    INSERT INTO sync_locks (destination, holder, acquired_at, expires_at) VALUES (...)
    ON CONFLICT (destination) DO UPDATE SET ...
      WHERE sync_locks.expires_at <= <now> OR sync_locks.holder = <me>
    RETURNING holder, acquired_at, expires_at

A row comes back only if the lease was free, expired, or already ours; PostgreSQL locks the
conflicting row for the statement and SQLite runs it under its single writer lock, so of two
runs racing exactly one gets it. A lease that expired (its holder died or stopped renewing) is
taken over. The clock is the database's on PostgreSQL (workers on several hosts agree on it) and
this process's on SQLite (one host by construction).

The engine renews the lease as it goes (:meth:`Lease.renew_if_due`, cheap to call per batch) and
stops writing if it finds the lease lost (:class:`syncer.errors.LeaseLostError`).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from sqlalchemy import Interval, case, delete, func, literal, select, update
from sqlalchemy.engine import Connection, Engine

from syncer.db import is_postgres
from syncer.errors import LeaseHeldError, LeaseLostError
from syncer.state.database import as_utc, dialect_insert, to_db, utcnow
from syncer.state.schema import sync_locks

__all__ = ["Lease", "LeaseInfo", "acquire", "current_lease", "force_release"]

_T = sync_locks
_POLL_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """Who holds a destination's lease, since when and until when."""

    destination: str
    holder: str
    acquired_at: datetime
    expires_at: datetime


class Lease:
    """A held lease. Use it as a context manager (released on exit), renew it while working."""

    def __init__(self, engine: Engine, info: LeaseInfo, ttl_seconds: float) -> None:
        self.engine = engine
        self.destination = info.destination
        self.holder = info.holder
        self.acquired_at = info.acquired_at
        self.expires_at = info.expires_at
        self.ttl_seconds = ttl_seconds
        self._renewed_at = time.monotonic()
        self.released = False

    def renew(self, ttl_seconds: float | None = None) -> None:
        """Extend the lease to ``ttl_seconds`` (default: the TTL it was taken with) from now.

        Raises :class:`LeaseLostError` if it is no longer ours (it expired and another run took
        it, or an operator released it): the caller must stop writing.
        """
        ttl = self.ttl_seconds if ttl_seconds is None else ttl_seconds
        with self.engine.begin() as conn:
            _, expires = _times(conn, ttl)
            row = conn.execute(
                update(_T)
                .where(_T.c.destination == self.destination, _T.c.holder == self.holder)
                .values(expires_at=expires)
                .returning(_T.c.expires_at)
            ).first()
        if row is None:
            current = current_lease(self.engine, self.destination)
            raise LeaseLostError(
                self.destination,
                self.holder,
                current.holder if current else None,
                current.expires_at if current else None,
            )
        self.expires_at = _aware(row[0])
        self.ttl_seconds = ttl
        self._renewed_at = time.monotonic()

    def renew_if_due(self) -> bool:
        """Renew when a third of the TTL has passed since the last renewal; True if it did.

        Costs a clock read otherwise, so the engine may call it once per batch.
        """
        if time.monotonic() - self._renewed_at < self.ttl_seconds / 3:
            return False
        self.renew()
        return True

    def release(self) -> None:
        """Give the lease up (a no-op if it is no longer ours)."""
        if self.released:
            return
        with self.engine.begin() as conn:
            conn.execute(
                delete(_T).where(_T.c.destination == self.destination, _T.c.holder == self.holder)
            )
        self.released = True

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return (
            f"Lease(destination={self.destination!r}, holder={self.holder!r}, "
            f"expires_at={self.expires_at.isoformat()})"
        )


def acquire(
    engine: Engine,
    destination: str,
    holder: str,
    ttl_seconds: float,
    *,
    wait_seconds: float = 0,
    poll_seconds: float = _POLL_SECONDS,
) -> Lease:
    """Take ``destination``'s lease for ``holder`` (the run id) for ``ttl_seconds``.

    If another live holder has it, retry for up to ``wait_seconds``, then raise
    :class:`LeaseHeldError` naming the holder and when its lease expires. Taking a lease this
    holder already has renews it.
    """
    if ttl_seconds <= 0:
        raise ValueError(f"lease TTL must be positive, got {ttl_seconds}")
    deadline = time.monotonic() + max(wait_seconds, 0)
    while True:
        info = _try_acquire(engine, destination, holder, ttl_seconds)
        if info is not None:
            return Lease(engine, info, ttl_seconds)
        current = current_lease(engine, destination)
        remaining = deadline - time.monotonic()
        if current is not None and remaining <= 0:
            raise LeaseHeldError(destination, current.holder, current.expires_at)
        if current is None:
            continue  # released between our attempt and the look: try again at once
        # Jitter spreads waiters so they do not retry in lockstep.
        time.sleep(min(remaining, poll_seconds * random.uniform(0.5, 1.0)))


def _try_acquire(engine: Engine, destination: str, holder: str, ttl: float) -> LeaseInfo | None:
    with engine.begin() as conn:
        now, expires = _times(conn, ttl)
        ins = dialect_insert(conn, _T).values(
            destination=destination, holder=holder, acquired_at=now, expires_at=expires
        )
        stmt = ins.on_conflict_do_update(
            index_elements=[_T.c.destination],
            set_={
                "holder": ins.excluded.holder,
                # Renewing our own lease keeps the time we first took it.
                "acquired_at": case(
                    (_T.c.holder == ins.excluded.holder, _T.c.acquired_at),
                    else_=ins.excluded.acquired_at,
                ),
                "expires_at": ins.excluded.expires_at,
            },
            where=(_T.c.expires_at <= ins.excluded.acquired_at) | (_T.c.holder == holder),
        ).returning(_T.c.holder, _T.c.acquired_at, _T.c.expires_at)
        row = conn.execute(stmt).first()
    if row is None:
        return None
    return LeaseInfo(destination, row[0], _aware(row[1]), _aware(row[2]))


def current_lease(engine: Engine, destination: str) -> LeaseInfo | None:
    """The lease row of ``destination``, live or expired, or None if nobody has taken it."""
    stmt = select(_T.c.holder, _T.c.acquired_at, _T.c.expires_at).where(
        _T.c.destination == destination
    )
    with engine.connect() as conn:
        row = conn.execute(stmt).first()
    if row is None:
        return None
    return LeaseInfo(destination, row[0], _aware(row[1]), _aware(row[2]))


def force_release(engine: Engine, destination: str) -> LeaseInfo | None:
    """Operator's release (``syncer status --release``): drop the lease whoever holds it.
    Returns the lease that was dropped, if any. The run holding it stops at its next renewal."""
    current = current_lease(engine, destination)
    if current is not None:
        with engine.begin() as conn:
            conn.execute(
                delete(_T).where(_T.c.destination == destination, _T.c.holder == current.holder)
            )
    return current


def _times(conn: Connection, ttl_seconds: float) -> tuple[Any, Any]:
    """``now`` and ``now + ttl`` as SQL expressions.

    PostgreSQL: the database clock (``now()``, the start of this one-statement transaction), so
    workers on several hosts agree. SQLite: this process's clock (one host by construction),
    bound as values because SQLite has no datetime arithmetic on SQLAlchemy's stored format.
    """
    ttl = timedelta(seconds=ttl_seconds)
    if is_postgres(conn):
        now = func.now()
        return now, now + literal(ttl, type_=Interval())
    at = to_db(utcnow())
    kind = _T.c.acquired_at.type
    return literal(at, type_=kind), literal(at + ttl, type_=kind)


def _aware(value: datetime) -> datetime:
    return as_utc(value)
