"""The plan: formatted records merge-joined with the sync state into changes.

Both streams arrive in key code-point order (the store readers and
:meth:`syncer.state.records.RecordState.iter_records` sort the same way on SQLite and PostgreSQL),
so a plan holds one record at a time whatever the store's size. Each source record becomes
exactly one :class:`Change`:

* ``create`` — the destination has never acknowledged this key: the whole payload is sent
  (fields without a value are left out: there is nothing to clear yet);
* ``update`` — the payload's hash differs from the last acknowledged one: only the fields whose
  value changed are sent (a token list is one value, so it is always sent whole);
* ``unchanged`` — same hash: nothing is sent;
* ``rejected`` — formatting refused the record (an invalid email, a value over its budget):
  nothing is sent, the reason is recorded;
* ``skipped`` — the destination refused this very payload too many times and an operator set it
  aside (``syncer errors``); it is tried again as soon as its payload changes;

and each key the state holds but the source no longer has becomes a ``remove`` (the
destination's removal mode says what that means: nothing, clear the fields, or archive).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Literal, Protocol

from syncer.connectors.base import RemovalMode
from syncer.errors import RecordRejected
from syncer.model import fast_init
from syncer.state.hashing import payload_hash
from syncer.state.records import StoredRecord

Action = Literal["create", "update", "unchanged", "remove", "rejected", "skipped"]
ACTIONS: tuple[Action, ...] = ("create", "update", "unchanged", "remove", "rejected", "skipped")

__all__ = ["ACTIONS", "Action", "Change", "Formatted", "PlanCounts", "plan_changes"]


class Formatted(Protocol):
    """One formatted source record, as a mapping's ``format`` returns it
    (:class:`syncer.mapping.Formatted`): the plan diffs it as it comes, no copy."""

    @property
    def key(self) -> str: ...
    @property
    def payload(self) -> Mapping[str, str | None]: ...
    @property
    def hints(self) -> Mapping[str, Any]: ...
    @property
    def rejected(self) -> RecordRejected | None: ...


@fast_init  # one per key of every plan: half the cost of the frozen dataclass's __init__
@dataclass(frozen=True, slots=True)
class Change:
    """What the plan decided for one key of one object."""

    object: str
    key: str
    action: Action
    payload: Mapping[str, str | None]  # the full new payload (the cleared one for a removal)
    changes: Mapping[str, str | None]  # what is sent: the fields that differ
    digest: str  # hash of ``payload``, stored once the destination acknowledged it
    before: Mapping[str, Any] | None = None  # the last acknowledged payload, when known
    remote_id: str | None = None
    hints: Mapping[str, Any] = field(default_factory=dict)
    reason: str | None = None  # why a record was rejected or skipped
    field: str | None = None

    @property
    def sends(self) -> bool:
        """True when applying this change writes to the destination."""
        return self.action in ("create", "update") or (
            self.action == "remove" and bool(self.changes)
        )


@dataclass(slots=True)
class PlanCounts:
    """How many changes of each action one object's plan holds."""

    create: int = 0
    update: int = 0
    unchanged: int = 0
    remove: int = 0
    rejected: int = 0
    skipped: int = 0

    def add(self, action: Action) -> None:
        setattr(self, action, getattr(self, action) + 1)

    def __add__(self, other: PlanCounts) -> PlanCounts:
        return PlanCounts(**{a: getattr(self, a) + getattr(other, a) for a in ACTIONS})

    def as_dict(self) -> dict[str, int]:
        return {a: getattr(self, a) for a in ACTIONS}

    @property
    def to_send(self) -> int:
        return self.create + self.update + self.remove


def plan_changes(
    object_name: str,
    key_field: str,
    planned: Iterable[Formatted],
    stored: Iterable[StoredRecord],
    *,
    removal: RemovalMode = "none",
    required: Collection[str] = (),
    set_aside: Mapping[str, str | None] | None = None,
    on_change: Callable[[Change], None] | None = None,
) -> Generator[Change, None, None]:
    """Merge ``planned`` (source records) with ``stored`` (sync state), both in key order.

    ``required`` names the fields the destination will not empty
    (:attr:`syncer.connectors.base.ObjectSpec.required_fields`): a ``clear`` removal leaves
    them with their last value, like the key.

    ``set_aside`` maps keys an operator set aside to the payload hash that failed (``None``: any
    payload). ``on_change`` sees every change (counting, sampling) before it is yielded.
    Raises ``ValueError`` if either stream is out of order or repeats a key: a plan on a
    misordered stream would send creates for records that exist.
    """
    aside = set_aside or {}
    kept = frozenset(required) | {key_field}  # what a clear leaves as it is
    stored_iter = _in_order(object_name, stored)
    current: StoredRecord | None = next(stored_iter, None)
    last_key: str | None = None

    def emit(change: Change) -> Change:
        if on_change is not None:
            on_change(change)
        return change

    for item in planned:
        if last_key is not None and item.key <= last_key:
            raise ValueError(
                f"{object_name}: source keys out of order or repeated: {item.key!r} after "
                f"{last_key!r}"
            )
        last_key = item.key
        while current is not None and current.key < item.key:  # the source no longer has it
            if (gone := _removal(object_name, key_field, kept, current, removal)) is not None:
                yield emit(gone)
            current = next(stored_iter, None)
        previous: StoredRecord | None = None
        if current is not None and current.key == item.key:
            previous = current
            current = next(stored_iter, None)
        yield emit(_diff(object_name, item, previous, aside))
    for rest in chain((current,) if current is not None else (), stored_iter):
        if (gone := _removal(object_name, key_field, kept, rest, removal)) is not None:
            yield emit(gone)


def _in_order(object_name: str, stored: Iterable[StoredRecord]) -> Iterator[StoredRecord]:
    """``stored`` as it comes; ValueError at the first key out of order or repeated."""
    last: str | None = None
    for record in stored:
        if last is not None and record.key <= last:
            raise ValueError(f"{object_name}: state keys out of order at {record.key!r}")
        last = record.key
        yield record


def _diff(
    object_name: str,
    item: Formatted,
    previous: StoredRecord | None,
    aside: Mapping[str, str | None],
) -> Change:
    remote_id = previous.remote_id if previous is not None else None
    if item.rejected is not None:
        return Change(
            object_name,
            item.key,
            "rejected",
            item.payload,
            {},
            "",
            remote_id=remote_id,
            reason=item.rejected.reason,
            field=item.rejected.field,
        )
    digest = payload_hash(item.payload)
    if previous is not None and not previous.removed and previous.payload_hash == digest:
        return Change(
            object_name, item.key, "unchanged", item.payload, {}, digest, remote_id=remote_id
        )
    if item.key in aside and aside[item.key] in (None, digest):
        return Change(
            object_name,
            item.key,
            "skipped",
            item.payload,
            {},
            digest,
            remote_id=remote_id,
            reason="set aside after repeated rejections; `syncer retry` sends it again",
        )
    if previous is None:
        payload = item.payload
        # A payload without an empty field (the common create) is copied whole, in C.
        created: dict[str, str | None] = (
            {k: v for k, v in payload.items() if v is not None}
            if None in payload.values()
            else dict(payload)
        )
        return Change(
            object_name,
            item.key,
            "create",
            item.payload,
            created,
            digest,
            hints=item.hints,
        )
    before = previous.payload
    if previous.removed:
        # Cleared or archived earlier and back in the source: everything is sent again.
        changes = dict(item.payload)
    else:
        changes = {k: v for k, v in item.payload.items() if before.get(k) != v}
        # A field that vanished from the mapping is no longer syncer's to write: leave it.
    return Change(
        object_name,
        item.key,
        "update",
        item.payload,
        changes,
        digest,
        before=before,
        remote_id=remote_id,
        hints=item.hints,
    )


def _removal(
    object_name: str,
    key_field: str,
    kept: frozenset[str],
    record: StoredRecord,
    mode: RemovalMode,
) -> Change | None:
    """The change for a key the state holds and the source no longer has; a clear leaves the
    fields in ``kept`` as they are."""
    if record.removed:
        return None
    before = record.payload
    if mode == "none":
        # Nothing is sent; the count tells the operator how many records left the source.
        return Change(object_name, record.key, "remove", before, {}, "", before, record.remote_id)
    if mode == "clear":
        # A required field keeps its last value and is not sent: the destination refuses to
        # empty it (docs/api-fidelity.md, "a clear leaves required fields").
        cleared: dict[str, str | None] = {k: (v if k in kept else None) for k, v in before.items()}
        changes = {k: None for k, v in before.items() if k not in kept and v is not None}
    else:
        cleared = dict(before)
        changes = {key_field: before.get(key_field, record.key)}
    return Change(
        object_name,
        record.key,
        "remove",
        cleared,
        changes,
        payload_hash(cleared),
        before,
        record.remote_id,
    )
