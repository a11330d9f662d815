"""One lease per destination, so two runs never write the same destination at once.

Taking the lease is one atomic statement on both databases::

    INSERT INTO sync_locks (destination, holder, acquired_at, expires_at, host, pid) VALUES (...)
    ON CONFLICT (destination) DO UPDATE SET ...
      WHERE sync_locks.expires_at <= <now> OR sync_locks.holder = <me>
    RETURNING holder, acquired_at, expires_at, host, pid

A row comes back only if the lease was free, expired, or already ours; PostgreSQL locks the
conflicting row for the statement and SQLite runs it under its single writer lock, so of two
runs racing exactly one gets it. A lease that expired (its holder died or stopped renewing) is
taken over. The clock is the database's on PostgreSQL (workers on several hosts agree on it) and
this process's on SQLite (one host by construction).

A lease lives only as long as its holder keeps renewing it, so its time-to-live is short (the
engine's is 45 s) and a **heartbeat** renews it: a daemon thread of the holding process
(:meth:`Lease.start_heartbeat`, or ``acquire(..., heartbeat=True)``) that renews every quarter
of the TTL, in its own short transaction, and stops when the lease is released, found lost, or the
process ends. A killed run therefore blocks its destination for at most one TTL, while a live one
keeps its lease through any pause (a scheduler's retry delay, a long backoff). The engine's own
:meth:`Lease.renew` / :meth:`Lease.renew_if_due` calls stay as checkpoints: they raise
:class:`syncer.errors.LeaseLostError` once the lease is no longer ours, so the run stops writing.

The row names the holder's host and process, so an operator can tell a dead holder from a live
one (:mod:`syncer.state.lease_holders`, ``syncer lease release``).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Interval, case, delete, func, literal, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from syncer.db import dialect_insert, is_postgres
from syncer.errors import LeaseHeldError, LeaseLostError
from syncer.state.database import as_utc, to_db, utcnow
from syncer.state.schema import sync_locks

__all__ = [
    "Lease",
    "LeaseInfo",
    "acquire",
    "current_lease",
    "leases",
    "sql_now",
    "this_holder",
]

log = logging.getLogger("syncer.lease")

_T = sync_locks
_POLL_SECONDS = 0.5
# After a failed beat (the state database unreachable or busy) try again this much sooner.
_RETRY_FRACTION = 4
# How long releasing waits for a beat in flight to end before deleting the row anyway.
_JOIN_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """Who holds a destination's lease, since when and until when, and where it runs.

    ``host`` and ``pid`` are None for a lease taken by a syncer that did not record them."""

    destination: str
    holder: str
    acquired_at: datetime
    expires_at: datetime
    host: str | None = None
    pid: int | None = None


def this_holder() -> tuple[str, int]:
    """This process's host name and id, as a lease row records them."""
    return socket.gethostname(), os.getpid()


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
        self._heartbeat: _Heartbeat | None = None
        # Set by the heartbeat when it finds the lease gone; the next renew raises.
        self._lost = False

    def renew(self, ttl_seconds: float | None = None) -> None:
        """Extend the lease to ``ttl_seconds`` (default: the TTL it was taken with) from now.

        Raises :class:`LeaseLostError` if it is no longer ours (it expired and another run took
        it, or an operator released it): the caller must stop writing.
        """
        ttl = self.ttl_seconds if ttl_seconds is None else ttl_seconds
        if not self._extend(ttl):
            self._lost = True
            self.stop_heartbeat()
            current = current_lease(self.engine, self.destination)
            raise LeaseLostError(
                self.destination,
                self.holder,
                current.holder if current else None,
                current.expires_at if current else None,
            )
        self.ttl_seconds = ttl

    def renew_if_due(self) -> bool:
        """Renew when a third of the TTL has passed since the last renewal; True if it did.

        Costs a clock read otherwise, so the engine may call it once per batch. A lease the
        heartbeat found lost raises :class:`LeaseLostError` here at once.
        """
        if not self._lost and time.monotonic() - self._renewed_at < self.ttl_seconds / 3:
            return False
        self.renew()
        return True

    def _extend(self, ttl: float) -> bool:
        """One renewal in its own transaction; False if the row is no longer ours."""
        with self.engine.begin() as conn:
            _, expires = _times(conn, ttl)
            row = conn.execute(
                update(_T)
                .where(_T.c.destination == self.destination, _T.c.holder == self.holder)
                .values(expires_at=expires)
                .returning(_T.c.expires_at)
            ).first()
        if row is None:
            return False
        self.expires_at = as_utc(row[0])
        self._renewed_at = time.monotonic()
        return True

    # --- heartbeat ------------------------------------------------------------------------------

    def start_heartbeat(self, interval: float | None = None) -> None:
        """Renew the lease from a daemon thread every ``interval`` seconds (a quarter of the TTL by
        default) until it is released, found lost, or the process ends. Idempotent.

        Each beat borrows a pooled connection for one short transaction and gives it back. A beat
        that fails (the database unreachable or busy) is logged and tried again sooner; a beat
        that finds the lease taken marks it lost, so the holder's next :meth:`renew` or
        :meth:`renew_if_due` raises :class:`LeaseLostError`. An in-memory SQLite database gets
        no heartbeat: it has one connection per thread, and it dies with the process anyway.
        """
        if interval is not None and interval <= 0:
            raise ValueError(f"heartbeat interval must be positive, got {interval}")
        if self.released or self._lost or self.heartbeat_running or _in_memory(self.engine):
            return
        self._heartbeat = _Heartbeat(self, interval)
        self._heartbeat.thread.start()

    def stop_heartbeat(self) -> None:
        """Stop renewing in the background (the lease stays until it is released or expires)."""
        beat, self._heartbeat = self._heartbeat, None
        if beat is not None:
            beat.stop()

    @property
    def heartbeat_running(self) -> bool:
        """Whether a heartbeat thread renews this lease."""
        return self._heartbeat is not None and self._heartbeat.thread.is_alive()

    @property
    def lost(self) -> bool:
        """Whether this lease was found taken or released by someone else."""
        return self._lost

    def _beat(self) -> bool:
        """One heartbeat; False when the heartbeat should stop."""
        if self.released or self._lost:
            return False
        if self._extend(self.ttl_seconds):
            return True
        if not self.released:  # a release racing this beat is not a loss
            self._lost = True
            log.warning(
                "run %s lost its lease on destination %r (another run took it or an operator "
                "released it); the run stops writing at its next step",
                self.holder,
                self.destination,
            )
        return False

    # --- release --------------------------------------------------------------------------------

    def release(self) -> None:
        """Give the lease up (a no-op if it is no longer ours) and stop its heartbeat."""
        if self.released:
            return
        self.released = True
        self.stop_heartbeat()
        with self.engine.begin() as conn:
            conn.execute(
                delete(_T).where(_T.c.destination == self.destination, _T.c.holder == self.holder)
            )

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return (
            f"Lease(destination={self.destination!r}, holder={self.holder!r}, "
            f"expires_at={self.expires_at.isoformat()})"
        )


class _Heartbeat:
    """The thread that renews one lease. It holds the lease weakly: a lease object nobody holds
    any more (dropped without release) is not kept alive, in the database or in memory."""

    def __init__(self, lease: Lease, interval: float | None) -> None:
        self._lease = weakref.ref(lease)
        self._stopped = threading.Event()
        self._interval = interval
        self.thread = threading.Thread(
            target=self._run, name=f"syncer-lease-{lease.destination}", daemon=True
        )

    def stop(self) -> None:
        self._stopped.set()
        if self.thread is not threading.current_thread() and self.thread.is_alive():
            self.thread.join(_JOIN_SECONDS)

    def _every(self, lease: Lease) -> float:
        # A quarter of the lease's current TTL unless told (a renew() with another TTL moves it):
        # more often than renew_if_due's third, so the engine's checkpoints rarely renew too.
        return self._interval or lease.ttl_seconds / 4

    def _run(self) -> None:
        lease = self._lease()
        delay = self._every(lease) if lease is not None else 0.0
        del lease
        while not self._stopped.wait(delay):
            lease = self._lease()
            if lease is None:
                return
            try:
                if not lease._beat():
                    return
                delay = self._every(lease)
            except SQLAlchemyError as exc:
                # The state database is down or busy: keep trying, sooner, while the TTL lasts.
                log.warning(
                    "could not renew the lease on destination %r: %s", lease.destination, exc
                )
                delay = self._every(lease) / _RETRY_FRACTION
            finally:
                del lease


def acquire(
    engine: Engine,
    destination: str,
    holder: str,
    ttl_seconds: float,
    *,
    wait_seconds: float = 0,
    poll_seconds: float = _POLL_SECONDS,
    heartbeat: bool = False,
) -> Lease:
    """Take ``destination``'s lease for ``holder`` (the run id) for ``ttl_seconds``.

    If another live holder has it, retry for up to ``wait_seconds``, then raise
    :class:`LeaseHeldError` naming the holder, where it runs and when its lease expires. Taking
    a lease this holder already has renews it. With ``heartbeat`` the lease is renewed in the
    background (:meth:`Lease.start_heartbeat`) from the moment it is taken.
    """
    if ttl_seconds <= 0:
        raise ValueError(f"lease TTL must be positive, got {ttl_seconds}")
    deadline = time.monotonic() + max(wait_seconds, 0)
    while True:
        info = _try_acquire(engine, destination, holder, ttl_seconds)
        if info is not None:
            lease = Lease(engine, info, ttl_seconds)
            if heartbeat:
                lease.start_heartbeat()
            return lease
        current = current_lease(engine, destination)
        remaining = deadline - time.monotonic()
        if current is not None and remaining <= 0:
            raise LeaseHeldError(
                destination, current.holder, current.expires_at, host=current.host, pid=current.pid
            )
        if current is None:
            continue  # released between our attempt and the look: try again at once
        # Jitter spreads waiters so they do not retry in lockstep.
        time.sleep(min(remaining, poll_seconds * random.uniform(0.5, 1.0)))


_COLUMNS = (_T.c.holder, _T.c.acquired_at, _T.c.expires_at, _T.c.host, _T.c.pid)


def _try_acquire(engine: Engine, destination: str, holder: str, ttl: float) -> LeaseInfo | None:
    host, pid = this_holder()
    with engine.begin() as conn:
        now, expires = _times(conn, ttl)
        ins = dialect_insert(conn, _T).values(
            destination=destination,
            holder=holder,
            acquired_at=now,
            expires_at=expires,
            host=host,
            pid=pid,
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
                "host": ins.excluded.host,
                "pid": ins.excluded.pid,
            },
            where=(_T.c.expires_at <= ins.excluded.acquired_at) | (_T.c.holder == holder),
        ).returning(*_COLUMNS)
        row = conn.execute(stmt).first()
    if row is None:
        return None
    return _info(destination, row)


def current_lease(engine: Engine, destination: str) -> LeaseInfo | None:
    """The lease row of ``destination``, live or expired, or None if nobody has taken it."""
    found = leases(engine, destination)
    return found[0] if found else None


def leases(engine: Engine, destination: str | None = None) -> list[LeaseInfo]:
    """Every lease row (of one destination, or all), live or expired, by destination."""
    stmt = select(_T.c.destination, *_COLUMNS).order_by(_T.c.destination)
    if destination is not None:
        stmt = stmt.where(_T.c.destination == destination)
    with engine.connect() as conn:
        return [_info(row[0], row[1:]) for row in conn.execute(stmt)]


def sql_now(conn: Connection) -> Any:
    """``now`` as a SQL expression on the clock leases are compared against (see :func:`_times`)."""
    return _times(conn, 0)[0]


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


def _info(destination: str, row: Any) -> LeaseInfo:
    holder, acquired, expires, host, pid = row
    return LeaseInfo(destination, holder, as_utc(acquired), as_utc(expires), host, pid)


def _in_memory(engine: Engine) -> bool:
    database = engine.url.database or ""
    return engine.dialect.name == "sqlite" and (
        database in ("", ":memory:") or "mode=memory" in database
    )
