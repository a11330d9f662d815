"""Store rows with a timestamp the readers cannot read (text such as ``'yesterday'`` another job
wrote into SQLite): rebuilt value by value, off the readers' hot path, into records whose
attributes carry the rejection (:class:`syncer.rejections.UnreadableTimestamp`), so the resolver
rejects the user or account they affect and the run goes on — docs/loading.md, "Bad values
written outside `syncer load`".

The readers build records with one :func:`syncer.db.as_utc` call per timestamp and no check; a
``ValueError`` there sends the row here. Called from the readers' ``except ValueError`` blocks:
a row with no unreadable timestamp re-raises the error being handled (a bug, not bad data).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

from syncer.db import as_utc
from syncer.model import Account, Membership, User
from syncer.rejections import UnreadableAttributes, UnreadableTimestamp

__all__ = ["Unreadable", "marked", "read_each", "unreadable_membership", "unreadable_record"]

Unreadable = tuple[str, str, object]
"""An unreadable timestamp: its ``table.column``, the row it is in (``user 'u04'``), the value."""

_R = TypeVar("_R", Account, User)
_M = TypeVar("_M")
_SINGULAR = {"users": "user", "accounts": "account"}


def _read(value: Any) -> tuple[datetime | None, bool]:
    """``value`` as a UTC timestamp, and whether it was readable (unreadable: ``None``)."""
    try:
        return as_utc(value), True
    except ValueError:
        return None, False


def unreadable_record(table: str, record: type[_R], values: Any, attrs: Any) -> _R:
    """A user or account from ``values`` (its row, in table order) and its ``attrs`` already
    read, with ``None`` for an unreadable ``created_at``/``updated_at``, marked for rejection."""
    key, a, b, c, stage, _, created, updated = values
    (created_at, ok_created), (updated_at, ok_updated) = _read(created), _read(updated)
    if ok_created and ok_updated:
        raise  # noqa: PLE0704  # the error being handled came from elsewhere: a bug
    column, value = ("created_at", created) if not ok_created else ("updated_at", updated)
    built = record(key, a, b, c, stage, attrs, created_at, updated_at)
    return marked(built, (f"{table}.{column}", f"{_SINGULAR[table]} {key!r}", value))


def unreadable_membership(row: Any) -> tuple[Membership, Unreadable]:
    """A membership from a row whose first columns are the ``memberships`` columns (in table
    order), with ``None`` for its unreadable timestamp, and which one it was."""
    uid, aid, role, stage, joined, updated = tuple(row)[:6]
    (joined_at, ok_joined), (updated_at, ok_updated) = _read(joined), _read(updated)
    if ok_joined and ok_updated:
        raise  # noqa: PLE0704  # the error being handled came from elsewhere: a bug
    column, value = ("joined_at", joined) if not ok_joined else ("updated_at", updated)
    where = f"user {uid!r}, account {aid!r}"
    return Membership(uid, aid, role, stage, joined_at, updated_at), (
        f"memberships.{column}",
        where,
        value,
    )


def read_each(
    rows: Iterable[Any], build: Callable[[Any], _M], rebuild: Callable[[Membership, Any], _M]
) -> tuple[tuple[_M, ...], Unreadable | None]:
    """Membership rows ``build`` makes into records, off the hot path (one user or account):
    a row with an unreadable timestamp is made by ``rebuild`` from the membership read slowly,
    and the last such timestamp is returned for :func:`marked`."""
    built: list[_M] = []
    bad: Unreadable | None = None
    for row in rows:
        try:
            built.append(build(row))
        except ValueError:
            membership, bad = unreadable_membership(row)
            built.append(rebuild(membership, row))
    return tuple(built), bad


def marked(record: _R, bad: Unreadable | None) -> _R:
    """``record`` with attributes that reject it for ``bad`` (if any); attributes that are
    unreadable already keep their own rejection (this one shows once that is fixed)."""
    attrs = record.attributes
    if bad is None or isinstance(attrs, (UnreadableAttributes, UnreadableTimestamp)):
        return record
    return dataclasses.replace(record, attributes=UnreadableTimestamp(attrs, *bad))
