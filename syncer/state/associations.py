"""The ledger of associations syncer created in a destination (HubSpot contact → company).

Destinations hold associations people made by hand too. Recording the ones syncer created, after
the destination acknowledged them, lets the engine remove only its own when a membership ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.engine import Engine

from syncer.db import dialect_insert
from syncer.state.database import chunked, to_db, utcnow
from syncer.state.schema import sync_associations

__all__ = ["AssociationLedger", "AssociationLike", "Link"]

_T = sync_associations


class AssociationLike(Protocol):
    """What the ledger reads from an association; ``AssociationChange`` of the connector
    contract has these attributes, so the engine passes its changes as they are."""

    @property
    def from_object(self) -> str: ...
    @property
    def from_key(self) -> str: ...
    @property
    def to_object(self) -> str: ...
    @property
    def to_key(self) -> str: ...
    @property
    def kind(self) -> str: ...


class Link(NamedTuple):
    """The far end of an association syncer created: object, key and kind (``"primary"`` or
    ``""``)."""

    to_object: str
    to_key: str
    kind: str = ""


class AssociationLedger:
    """Reads and writes ``sync_associations`` on one state database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def for_sources(
        self, destination: str, from_object: str, from_keys: Iterable[str]
    ) -> dict[str, set[Link]]:
        """The associations syncer created from each of ``from_keys`` (keys with none are
        absent from the result)."""
        found: dict[str, set[Link]] = {}
        with self.engine.connect() as conn:
            for chunk in chunked(sorted(set(from_keys))):
                stmt = select(_T.c.from_key, _T.c.to_object, _T.c.to_key, _T.c.kind).where(
                    _T.c.destination == destination,
                    _T.c.from_object == from_object,
                    _T.c.from_key.in_(chunk),
                )
                for from_key, to_object, to_key, kind in conn.execute(stmt):
                    found.setdefault(from_key, set()).add(Link(to_object, to_key, kind or ""))
        return found

    def record_created(
        self,
        destination: str,
        created: Sequence[AssociationLike],
        run_id: str,
        *,
        now: datetime | None = None,
    ) -> None:
        """Record associations the destination acknowledged creating (or relabelling: the kind
        of an existing entry is updated), in one transaction."""
        if not created:
            return
        at = to_db(now or utcnow())
        rows: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        for a in created:
            rows[(a.from_object, a.from_key, a.to_object, a.to_key)] = {
                "destination": destination,
                "from_object": a.from_object,
                "from_key": a.from_key,
                "to_object": a.to_object,
                "to_key": a.to_key,
                "kind": a.kind or "",
                "run_id": run_id,
                "created_at": at,
            }
        ins = dialect_insert(self.engine, _T)
        stmt = ins.on_conflict_do_update(
            index_elements=[
                _T.c.destination,
                _T.c.from_object,
                _T.c.from_key,
                _T.c.to_object,
                _T.c.to_key,
            ],
            set_={"kind": ins.excluded.kind, "run_id": ins.excluded.run_id},
        )
        with self.engine.begin() as conn:
            conn.execute(stmt, list(rows.values()))

    def record_removed(self, destination: str, removed: Sequence[AssociationLike]) -> int:
        """Forget associations the destination acknowledged removing. Returns how many of them
        were in the ledger."""
        params = [
            {"fo": a.from_object, "fk": a.from_key, "to": a.to_object, "tk": a.to_key}
            for a in removed
        ]
        if not params:
            return 0
        stmt = delete(_T).where(
            _T.c.destination == destination,
            _T.c.from_object == bindparam("fo"),
            _T.c.from_key == bindparam("fk"),
            _T.c.to_object == bindparam("to"),
            _T.c.to_key == bindparam("tk"),
        )
        with self.engine.begin() as conn:
            return int(conn.execute(stmt, params).rowcount)

    def count(self, destination: str) -> int:
        """How many associations syncer created in ``destination`` are in the ledger."""
        stmt = select(func.count()).select_from(_T).where(_T.c.destination == destination)
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def reset(self, destination: str) -> int:
        """Forget the whole ledger of ``destination`` (a full refresh). Returns rows dropped."""
        with self.engine.begin() as conn:
            return int(conn.execute(delete(_T).where(_T.c.destination == destination)).rowcount)
