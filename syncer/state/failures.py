"""Records a destination (or the formatter) refused: the ``sync_errors`` dead-letter list.

A rejected record is retried on later runs (its state was never committed, so the plan sends it
again) until it has been refused ``max_attempts`` times; then it is *set aside* and the plan skips
it until an operator runs ``syncer retry`` — or, if the plan chooses, until its payload changes
(the hash of the refused payload is kept for that). A record the destination later accepts is
cleared from the list.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import or_, select, update
from sqlalchemy.engine import Engine

from syncer.db import dialect_insert, key_order
from syncer.state.database import as_utc, chunked, delete_keys, to_db, utcnow
from syncer.state.schema import sync_errors

__all__ = ["Failure", "FailureLog", "Rejection"]

_T = sync_errors


class Rejection(NamedTuple):
    """One refused record: its key, the destination's reason, the field it names (if known) and
    the hash of the refused payload (if known)."""

    key: str
    reason: str
    field: str | None = None
    payload_hash: str | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """A row of the dead-letter list, as ``syncer errors`` shows it."""

    destination: str
    object: str
    key: str
    reason: str
    field: str | None
    attempts: int
    set_aside: bool
    payload_hash: str | None
    first_seen: datetime
    last_seen: datetime
    run_id: str | None


class FailureLog:
    """Reads and writes ``sync_errors`` on one state database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record_rejections(
        self,
        destination: str,
        object_name: str,
        rejections: Sequence[Rejection | tuple[str, str, str | None]],
        run_id: str,
        max_attempts: int,
        *,
        now: datetime | None = None,
    ) -> list[str]:
        """Count one more refusal for each record, in one transaction; set aside those refused
        ``max_attempts`` times. Returns the keys among ``rejections`` now set aside, sorted."""
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if not rejections:
            return []
        at = to_db(now or utcnow())
        rows: dict[str, dict[str, Any]] = {}
        for item in rejections:
            rej = item if isinstance(item, Rejection) else Rejection(*item)
            rows[rej.key] = {  # one refusal per key per call, the last reason wins
                "destination": destination,
                "object": object_name,
                "key": rej.key,
                "reason": rej.reason,
                "field": rej.field,
                "payload_hash": rej.payload_hash,
                "attempts": 1,
                "set_aside": max_attempts <= 1,
                "first_seen": at,
                "last_seen": at,
                "run_id": run_id,
            }
        ins = dialect_insert(self.engine, _T)
        excluded = ins.excluded
        attempts = _T.c.attempts + 1
        stmt = ins.on_conflict_do_update(
            index_elements=[_T.c.destination, _T.c.object, _T.c.key],
            set_={
                "reason": excluded.reason,
                "field": excluded.field,
                "payload_hash": excluded.payload_hash,
                "attempts": attempts,
                "set_aside": or_(_T.c.set_aside, attempts >= max_attempts),
                "last_seen": excluded.last_seen,
                "run_id": excluded.run_id,
            },
        )
        keys = sorted(rows)
        set_aside: list[str] = []
        with self.engine.begin() as conn:
            conn.execute(stmt, list(rows.values()))
            for chunk in chunked(keys):
                query = select(_T.c.key).where(
                    _T.c.destination == destination,
                    _T.c.object == object_name,
                    _T.c.key.in_(chunk),
                    _T.c.set_aside.is_(True),
                )
                set_aside.extend(conn.execute(query).scalars())
        return sorted(set_aside)

    def clear(self, destination: str, object_name: str, keys: Iterable[str]) -> int:
        """Remove records the destination has now accepted. Returns how many were listed."""
        return delete_keys(self.engine, _T, destination, object_name, keys)

    def iter_failures(
        self,
        destination: str | None = None,
        *,
        object_name: str | None = None,
        include_set_aside: bool = True,
    ) -> Iterator[Failure]:
        """The dead-letter list ordered by destination, object and key, streamed."""
        stmt = select(
            _T.c.destination,
            _T.c.object,
            _T.c.key,
            _T.c.reason,
            _T.c.field,
            _T.c.attempts,
            _T.c.set_aside,
            _T.c.payload_hash,
            _T.c.first_seen,
            _T.c.last_seen,
            _T.c.run_id,
        ).order_by(_T.c.destination, _T.c.object, key_order(_T.c.key, self.engine))
        if destination is not None:
            stmt = stmt.where(_T.c.destination == destination)
        if object_name is not None:
            stmt = stmt.where(_T.c.object == object_name)
        if not include_set_aside:
            stmt = stmt.where(_T.c.set_aside.is_(False))
        with self.engine.connect() as conn:
            for row in conn.execution_options(yield_per=1000).execute(stmt):
                yield Failure(
                    destination=row[0],
                    object=row[1],
                    key=row[2],
                    reason=row[3],
                    field=row[4],
                    attempts=int(row[5]),
                    set_aside=bool(row[6]),
                    payload_hash=row[7],
                    first_seen=as_utc(row[8]),
                    last_seen=as_utc(row[9]),
                    run_id=row[10],
                )

    def keys_to_retry(self, destination: str, object_name: str) -> set[str]:
        """Keys refused before and not set aside: the next run sends them again."""
        return set(self._keys(destination, object_name, set_aside=False))

    def set_aside_keys(self, destination: str, object_name: str) -> dict[str, str | None]:
        """Set-aside keys → hash of the payload that was refused (None if not recorded).

        The plan skips these records; comparing the hash lets it retry one whose data changed.
        """
        return self._keys(destination, object_name, set_aside=True)

    def _keys(
        self, destination: str, object_name: str, *, set_aside: bool
    ) -> dict[str, str | None]:
        stmt = select(_T.c.key, _T.c.payload_hash).where(
            _T.c.destination == destination,
            _T.c.object == object_name,
            _T.c.set_aside.is_(set_aside),
        )
        with self.engine.connect() as conn:
            return {row.key: row.payload_hash for row in conn.execute(stmt)}

    def retry(
        self,
        destination: str,
        keys: Iterable[str] | None = None,
        *,
        object_name: str | None = None,
    ) -> int:
        """Operator's retry: put set-aside records (all of ``destination``'s, or those among
        ``keys``) back in line with their attempts reset. Returns how many were set aside.

        A record that is listed but not set aside keeps its attempts: it is retried on the next
        run anyway, and counting it would overstate what the operator brought back.
        """
        base = update(_T).where(_T.c.destination == destination, _T.c.set_aside.is_(True))
        if object_name is not None:
            base = base.where(_T.c.object == object_name)
        base = base.values(set_aside=False, attempts=0)
        with self.engine.begin() as conn:
            if keys is None:
                return int(conn.execute(base).rowcount)
            changed = 0
            for chunk in chunked(list(dict.fromkeys(keys))):
                changed += conn.execute(base.where(_T.c.key.in_(chunk))).rowcount
            return changed
