"""Whether a lease's holder is still there, and the operator's release (``syncer lease``).

A lease row names its holder's host and process id (see :mod:`syncer.state.lease`). From the
holder's own host syncer can tell a dead holder from a live one; from anywhere else it only knows
whether the lease has lapsed, and a lease still within its TTL is being renewed by a heartbeat,
so its holder was alive moments ago. Hence the release rule: a lapsed lease, or one whose holder
is gone from this host, is released; any other needs ``force``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Connection, Engine

from syncer.db import is_postgres
from syncer.errors import LeaseReleaseRefused
from syncer.state.database import as_utc, utcnow
from syncer.state.lease import LeaseInfo, leases, sql_now, this_holder
from syncer.state.schema import sync_locks

__all__ = [
    "HolderState",
    "LeaseStatus",
    "lease_statuses",
    "pid_alive",
    "release_lease",
]


class HolderState(StrEnum):
    """What is known of a lease's holder."""

    LAPSED = "lapsed"  # its TTL passed: nobody renews it, any run may take it
    DEAD = "dead"  # within its TTL, but its process is gone from this host
    ALIVE = "alive"  # its process runs on this host
    REMOTE = "elsewhere"  # within its TTL, held from another host (or by an older syncer)


@dataclass(frozen=True, slots=True)
class LeaseStatus:
    """A lease row and what is known of its holder."""

    lease: LeaseInfo
    holder: HolderState
    seconds_left: float  # until the lease lapses; 0 once it has

    @property
    def releasable(self) -> bool:
        """Whether :func:`release_lease` releases it without ``force``."""
        return self.holder in (HolderState.LAPSED, HolderState.DEAD)


def lease_statuses(engine: Engine, destination: str | None = None) -> list[LeaseStatus]:
    """Every lease (of one destination, or all) with what is known of its holder."""
    with engine.connect() as conn:
        now = db_now(conn)
    host, _ = this_holder()
    statuses = []
    for info in leases(engine, destination):
        left = max((info.expires_at - now).total_seconds(), 0.0)
        if left <= 0:
            state = HolderState.LAPSED
        elif info.host != host or info.pid is None:
            state = HolderState.REMOTE
        else:
            state = HolderState.ALIVE if pid_alive(info.pid) else HolderState.DEAD
        statuses.append(LeaseStatus(info, state, left))
    return statuses


def release_lease(engine: Engine, destination: str, *, force: bool = False) -> LeaseStatus | None:
    """Release ``destination``'s lease if its holder is dead or its TTL lapsed (any holder with
    ``force``); returns what was released, None if there was no lease or it changed hands.

    Raises :class:`LeaseReleaseRefused` for a holder that may be alive: its process runs on this
    host, or it runs elsewhere and its lease is still being renewed. Only the row that was looked
    at is deleted: a lease another run took meanwhile is left alone.
    """
    found = lease_statuses(engine, destination)
    if not found:
        return None
    status = found[0]
    info = status.lease
    if not force and not status.releasable:
        if status.holder is HolderState.ALIVE:
            reason = f"its process (pid {info.pid}) is running on this host"
        elif info.host is None:
            reason = "its host is not recorded (an older syncer took it), so it cannot be checked"
        else:
            reason = (
                f"runs on host {info.host} (pid {info.pid}), where syncer cannot check it; "
                f"it was renewed within the last {status.seconds_left:.0f} s"
            )
        raise LeaseReleaseRefused(destination, info.holder, info.expires_at, reason)
    t = sync_locks
    stmt = delete(t).where(t.c.destination == destination, t.c.holder == info.holder)
    with engine.begin() as conn:
        if status.holder is HolderState.LAPSED and not force:
            # A stalled holder that came back and renewed meanwhile keeps its lease.
            stmt = stmt.where(t.c.expires_at <= sql_now(conn))
        deleted = conn.execute(stmt).rowcount
    return status if deleted else None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie (a killed child that its
    parent has not reaped yet is dead for our purpose)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    stat = Path(f"/proc/{pid}/stat")
    try:
        # The state letter follows the command name, which is in parentheses and may hold spaces.
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): the signal said it exists


def db_now(conn: Connection) -> datetime:
    """The clock leases are compared against: the database's on PostgreSQL, ours on SQLite."""
    if is_postgres(conn):
        return as_utc(conn.execute(select(func.now())).scalar_one())
    return utcnow()
