"""One row per run (plan or apply) of a destination: when, how it ended, and its counts.

A run starts as ``running`` and the engine finishes it with its outcome. A process that dies
leaves it ``running``; such a run is shown as *interrupted* once nobody holds the destination's
lease under its id (the engine takes the lease with the run id as holder), and
:meth:`RunLog.mark_interrupted` records that for good when the next run takes the lease.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.engine import Engine

from syncer.state.database import as_utc, to_db, utcnow
from syncer.state.schema import sync_locks, sync_runs

__all__ = ["FINAL_STATUSES", "RunInfo", "RunLog"]

RUNNING = "running"
#: How a run can end: all sent, stopped by an error, some records rejected, or found dead.
FINAL_STATUSES = frozenset({"succeeded", "failed", "partial", "interrupted"})


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A run as ``syncer status`` shows it."""

    run_id: str
    destination: str
    status: str
    dry_run: bool
    started_at: datetime
    finished_at: datetime | None
    counts: Mapping[str, int]
    message: str | None
    #: For a ``running`` apply run: whether a live lease is held under its id. None otherwise.
    lease_alive: bool | None = None

    @property
    def display_status(self) -> str:
        """``status``, except that a ``running`` apply run whose lease is gone is
        ``interrupted`` (its process died without finishing it)."""
        if self.status == RUNNING and self.lease_alive is False:
            return "interrupted"
        return self.status


class RunLog:
    """Reads and writes ``sync_runs`` on one state database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def start_run(self, destination: str, *, dry_run: bool, now: datetime | None = None) -> str:
        """Record a new ``running`` run and return its id (32 hexadecimal characters)."""
        run_id = uuid.uuid4().hex
        with self.engine.begin() as conn:
            conn.execute(
                sync_runs.insert().values(
                    run_id=run_id,
                    destination=destination,
                    status=RUNNING,
                    dry_run=dry_run,
                    started_at=to_db(now or utcnow()),
                    counts={},
                )
            )
        return run_id

    def update_counts(self, run_id: str, counts: Mapping[str, int]) -> None:
        """Store the counts so far of a run in progress (``syncer status`` shows them)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(sync_runs).where(sync_runs.c.run_id == run_id).values(counts=dict(counts))
            )

    def finish_run(
        self,
        run_id: str,
        status: str,
        counts: Mapping[str, int],
        message: str | None = None,
        *,
        now: datetime | None = None,
    ) -> None:
        """Record how run ``run_id`` ended (one of :data:`FINAL_STATUSES`)."""
        if status not in FINAL_STATUSES:
            raise ValueError(
                f"run status {status!r} is not one of {', '.join(sorted(FINAL_STATUSES))}"
            )
        stmt = (
            update(sync_runs)
            .where(sync_runs.c.run_id == run_id)
            .values(
                status=status,
                counts=dict(counts),
                message=message,
                finished_at=to_db(now or utcnow()),
            )
        )
        with self.engine.begin() as conn:
            if conn.execute(stmt).rowcount != 1:
                raise KeyError(f"no run {run_id!r} in the sync state")

    def mark_interrupted(self, destination: str, current_run_id: str) -> int:
        """Close every other ``running`` apply run of ``destination`` as ``interrupted``.

        Call it right after taking the destination's lease: while this run holds the lease no
        other apply run can be alive, so any still marked ``running`` died. Plans (dry runs) take
        no lease and are left alone. Returns how many runs were closed.
        """
        stmt = (
            update(sync_runs)
            .where(
                sync_runs.c.destination == destination,
                sync_runs.c.status == RUNNING,
                sync_runs.c.dry_run.is_(False),
                sync_runs.c.run_id != current_run_id,
            )
            .values(
                status="interrupted",
                message=f"the process ended without finishing; found by run {current_run_id}",
            )
        )
        with self.engine.begin() as conn:
            return int(conn.execute(stmt).rowcount)

    def get_run(self, run_id: str, *, now: datetime | None = None) -> RunInfo | None:
        """Run ``run_id``, or None if there is no such run."""
        stmt = _select_runs(now).where(sync_runs.c.run_id == run_id)
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else _run(row)

    def last_runs(
        self, destination: str | None = None, limit: int = 20, *, now: datetime | None = None
    ) -> list[RunInfo]:
        """The latest ``limit`` runs, newest first, of one destination or all."""
        stmt = _select_runs(now)
        if destination is not None:
            stmt = stmt.where(sync_runs.c.destination == destination)
        stmt = stmt.order_by(sync_runs.c.started_at.desc(), sync_runs.c.run_id).limit(limit)
        with self.engine.connect() as conn:
            return [_run(row) for row in conn.execute(stmt)]


def _select_runs(now: datetime | None) -> Any:
    # Join the lease held under the run's id, if any, to tell a live run from a dead one.
    at = to_db(now or utcnow())
    return select(
        sync_runs.c.run_id,
        sync_runs.c.destination,
        sync_runs.c.status,
        sync_runs.c.dry_run,
        sync_runs.c.started_at,
        sync_runs.c.finished_at,
        sync_runs.c.counts,
        sync_runs.c.message,
        sync_locks.c.expires_at,
    ).select_from(
        sync_runs.outerjoin(
            sync_locks,
            and_(
                sync_locks.c.destination == sync_runs.c.destination,
                sync_locks.c.holder == sync_runs.c.run_id,
                sync_locks.c.expires_at > at,
            ),
        )
    )


def _run(row: Any) -> RunInfo:
    run_id, destination, status, dry_run, started, finished, counts, message, expires = row
    alive = None
    if status == RUNNING and not dry_run:
        alive = expires is not None
    return RunInfo(
        run_id=run_id,
        destination=destination,
        status=status,
        dry_run=bool(dry_run),
        started_at=as_utc(started),
        finished_at=as_utc(finished),
        counts=dict(counts or {}),
        message=message,
        lease_alive=alive,
    )
