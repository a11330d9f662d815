"""What each destination holds: (destination, object, key) → remote id, payload hash, payload.

The plan merge-joins :meth:`RecordState.iter_records` (in key order, streamed page by page) with
the sorted stream of planned records, so memory stays bounded however many records there are. The
engine calls :meth:`RecordState.commit_acknowledged` once per batch, only with records the
destination acknowledged: that is the whole of the at-least-once guarantee on this side.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Text, bindparam, cast, delete, func, select, update
from sqlalchemy.engine import Engine

from syncer.db import ALL_KEYS, KeyRange, dialect_insert, key_order
from syncer.state.database import (
    StateKeys,
    as_utc,
    chunked,
    delete_keys,
    key_chunks,
    to_db,
    utcnow,
)
from syncer.state.feed import FeedPositions
from syncer.state.hashing import payload_hash
from syncer.state.member_tokens import MemberTokenStore
from syncer.state.schema import sync_records

__all__ = ["Ack", "RecordState", "StoredRecord"]

_T = sync_records
_DEFAULT_PAGE = 5000


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One record as the destination last acknowledged it.

    ``payload`` is decoded from ``payload_json`` on each access: most records in a plan are
    unchanged and only their hash is compared, so decoding every payload up front would be wasted
    work. Keep the result if you need it twice.
    """

    key: str
    remote_id: str | None
    payload_hash: str
    payload_json: str = field(repr=False)
    removed: bool
    run_id: str | None
    synced_at: datetime | None

    @property
    def payload(self) -> dict[str, Any]:
        """The last acknowledged payload (all fields, not only the last change)."""
        value: dict[str, Any] = json.loads(self.payload_json)
        return value


@dataclass(frozen=True, slots=True)
class Ack:
    """A record the destination acknowledged, as it now holds it.

    ``payload`` is the full formatted payload (not only the fields that were sent): the next plan
    diffs against it. ``payload_hash`` is computed from it when not given. ``remote_id=None``
    keeps the remote id already known (an update that did not echo it). ``removed`` marks a record
    that left the source and was cleared or archived in the destination.
    """

    key: str
    payload: Mapping[str, object]
    remote_id: str | None = None
    payload_hash: str | None = None
    removed: bool = False


class RecordState:
    """Reads and writes ``sync_records`` on one state database."""

    def __init__(self, engine: Engine, *, page_size: int = _DEFAULT_PAGE) -> None:
        self.engine = engine
        self.page_size = page_size

    # --- reading -----------------------------------------------------------------------------

    def iter_records(
        self, destination: str, object_name: str, *, keys: StateKeys = ALL_KEYS
    ) -> Iterator[StoredRecord]:
        """Every record of ``destination``/``object_name`` (removed ones too) whose key is in
        ``keys`` (a range, or exactly a collection of keys), in key code-point order, streamed
        in keyset pages: no transaction or connection is held between pages, so the engine may
        commit acknowledgements while a plan iterates."""
        key = key_order(_T.c.key, self.engine)
        if not isinstance(keys, KeyRange):
            mine = _select_records().where(
                _T.c.destination == destination, _T.c.object == object_name
            )
            for chunk in key_chunks(keys):
                with self.engine.connect() as conn:
                    rows = conn.execute(mine.where(_T.c.key.in_(chunk)).order_by(key)).all()
                for row in rows:
                    yield _record(row)
            return
        base = (
            _select_records()
            .where(
                _T.c.destination == destination,
                _T.c.object == object_name,
                *keys.conditions(_T.c.key, self.engine),
            )
            .order_by(key)
            .limit(self.page_size)
        )
        after: str | None = None
        while True:
            stmt = base if after is None else base.where(key > after)
            with self.engine.connect() as conn:
                rows = conn.execute(stmt).all()
            for row in rows:
                yield _record(row)
            if len(rows) < self.page_size:
                return
            after = rows[-1][0]

    def get_many(
        self, destination: str, object_name: str, keys: Iterable[str]
    ) -> dict[str, StoredRecord]:
        """The stored records among ``keys`` (absent keys are simply not in the result)."""
        wanted = sorted(set(keys))
        found: dict[str, StoredRecord] = {}
        with self.engine.connect() as conn:
            for chunk in chunked(wanted):
                stmt = _select_records().where(
                    _T.c.destination == destination,
                    _T.c.object == object_name,
                    _T.c.key.in_(chunk),
                )
                for row in conn.execute(stmt):
                    found[row[0]] = _record(row)
        return found

    def count(self, destination: str, object_name: str | None = None) -> int:
        """How many records the state holds for ``destination`` (one object, or all)."""
        stmt = select(func.count()).select_from(_T).where(_T.c.destination == destination)
        if object_name is not None:
            stmt = stmt.where(_T.c.object == object_name)
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    # --- writing (only what the destination acknowledged) -------------------------------------

    def commit_acknowledged(
        self,
        destination: str,
        object_name: str,
        acks: Sequence[Ack],
        run_id: str,
        *,
        now: datetime | None = None,
    ) -> None:
        """Record one acknowledged batch, in one transaction (all of it or none of it).

        A key given twice keeps its last acknowledgement.
        """
        if not acks:
            return
        synced_at = to_db(now or utcnow())
        by_key: dict[str, dict[str, Any]] = {}
        for ack in acks:
            by_key[ack.key] = {
                "destination": destination,
                "object": object_name,
                "key": ack.key,
                "remote_id": ack.remote_id,
                "payload_hash": ack.payload_hash or payload_hash(ack.payload),
                "payload": dict(ack.payload),
                "removed": ack.removed,
                "run_id": run_id,
                "synced_at": synced_at,
            }
        ins = dialect_insert(self.engine, _T)
        excluded = ins.excluded
        stmt = ins.on_conflict_do_update(
            index_elements=[_T.c.destination, _T.c.object, _T.c.key],
            set_={
                # An update the destination answered without an id keeps the id we know.
                "remote_id": func.coalesce(excluded.remote_id, _T.c.remote_id),
                "payload_hash": excluded.payload_hash,
                "payload": excluded.payload,
                "removed": excluded.removed,
                "run_id": excluded.run_id,
                "synced_at": excluded.synced_at,
            },
        )
        with self.engine.begin() as conn:
            conn.execute(stmt, list(by_key.values()))

    def mark_removed(
        self,
        destination: str,
        object_name: str,
        keys: Iterable[str],
        run_id: str,
        *,
        now: datetime | None = None,
    ) -> int:
        """Flag records that left the source and were removed (archived) in the destination,
        keeping their payload. Returns how many rows were flagged."""
        values = [{"k": k} for k in dict.fromkeys(keys)]
        if not values:
            return 0
        stmt = (
            update(_T)
            .where(
                _T.c.destination == destination,
                _T.c.object == object_name,
                _T.c.key == bindparam("k"),
            )
            .values(removed=True, run_id=run_id, synced_at=to_db(now or utcnow()))
        )
        with self.engine.begin() as conn:
            return int(conn.execute(stmt, values).rowcount)

    def set_remote_id(
        self, destination: str, object_name: str, key: str, remote_id: str | None
    ) -> bool:
        """Replace (or with ``None`` drop) the remote id of one record; False if it is unknown."""
        stmt = (
            update(_T)
            .where(_T.c.destination == destination, _T.c.object == object_name, _T.c.key == key)
            .values(remote_id=remote_id)
        )
        with self.engine.begin() as conn:
            return bool(conn.execute(stmt).rowcount)

    def forget(self, destination: str, object_name: str, keys: Iterable[str]) -> int:
        """Drop records from the state, so the next plan sends them whole as new (e.g. after the
        destination reported the remote record deleted). Returns how many were dropped.

        The destination's feed position goes too: the next run reads everything (an
        incremental run would only read what changed in the store, not these records)."""
        dropped = delete_keys(self.engine, _T, destination, object_name, keys)
        if dropped:
            FeedPositions(self.engine).forget(destination)
        return dropped

    def reset(self, destination: str, object_name: str | None = None) -> int:
        """Forget everything about ``destination`` (one object, or all): a full refresh (its
        feed position goes too, so the next run reads the whole store)."""
        FeedPositions(self.engine).forget(destination)
        MemberTokenStore(self.engine).reset(destination, object_name)
        stmt = delete(_T).where(_T.c.destination == destination)
        if object_name is not None:
            stmt = stmt.where(_T.c.object == object_name)
        with self.engine.begin() as conn:
            return int(conn.execute(stmt).rowcount)


def _select_records() -> Any:
    # The payload comes back as text (CAST) so no row pays for JSON decoding it may not need.
    return select(
        _T.c.key,
        _T.c.remote_id,
        _T.c.payload_hash,
        cast(_T.c.payload, Text),
        _T.c.removed,
        _T.c.run_id,
        _T.c.synced_at,
    )


def _record(row: Any) -> StoredRecord:
    key, remote_id, digest, payload_json, removed, run_id, synced_at = row
    return StoredRecord(
        key=key,
        remote_id=remote_id,
        payload_hash=digest,
        payload_json=payload_json,
        removed=bool(removed),
        run_id=run_id,
        synced_at=as_utc(synced_at),
    )
