"""User records made from their rows and their last payloads, when only the email or names
changed.

An email change of 1% of the users puts those users in an incremental run's closure, and
rebuilding a user reads its memberships, the accounts they show, those accounts' ancestors and
its marks: six rows and more for a change of one. A user whose every change in the run's window
was to its email or names (:meth:`ChangeSet.own_changes
<syncer.store.feed.ChangeSet.own_changes>`, in the closure for nothing else:
``RemakeScope.users``) is made instead from:

* its row, read alone, for every field (and hint) that reads the row
  (:class:`~syncer.mapping.user_row.UserRowFields`);
* and every other field of its last acknowledged payload: its stage, memberships and primary
  account are made from rows that did not change (or it would be in the closure for them), by
  policies that do not read those columns.

It is rebuilt instead, apart (:func:`.remake.merged`), when the object does not qualify, when
it has no acknowledged record with a remote id, waits for a retry or is set aside, when its row
is gone or another job wrote it badly, or when a row field's value is refused by the formatter
(the rebuild says why). Nothing is kept for it: a plan and a run make the same records, and the
associations (planned from resolved users) have nothing to plan for a user whose memberships
did not change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from syncer.mapping import Formatted, ObjectMapping
from syncer.mapping.user_row import UserRowFields
from syncer.rejections import UnreadableAttributes, UnreadableTimestamp
from syncer.store.keys import KeySet, RowsRead
from syncer.store.readers import read_user_rows

from .remake import Formatter, RemakeScope, View, acknowledged, merged

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .incremental import Keys
    from .sync import Destination, Sync

__all__ = ["user_row_records"]


def user_row_records(
    sync: Sync,
    dest: Destination,
    obj: ObjectMapping,
    scope: RemakeScope | None,
    *,
    keys: Keys,
    read: RowsRead | None,
    on_view: Callable[[View], None] | None,
    rebuild: Formatter,
) -> Iterator[Formatted]:
    """``obj``'s formatted records of ``keys`` in key order: those of ``scope.users`` that can
    be made from their rows and last payloads made so, the others by ``rebuild`` (the
    mapping's format of resolved views)."""
    if scope is None or not scope.users or not isinstance(keys, KeySet):
        return rebuild(keys, on_view, None)
    candidates = [k for k in keys if k in scope.users]
    fields = UserRowFields.of(obj, dest.connector_cls.capabilities.update_hints)
    if not candidates or fields is None:
        return rebuild(keys, on_view, None)
    made = _made(sync, dest, obj, fields, candidates, read=read)
    done = {f.key for f in made}
    rest = KeySet(tuple(k for k in keys if k not in scope.users))
    apart = [k for k in candidates if k not in done]
    return merged(sync, obj, made, rest, apart, rebuild=rebuild, on_view=on_view, read=read)


def _made(
    sync: Sync,
    dest: Destination,
    obj: ObjectMapping,
    fields: UserRowFields,
    candidates: list[str],
    *,
    read: RowsRead | None,
) -> list[Formatted]:
    """The records of those of ``candidates`` that can be made from their rows."""
    stored = acknowledged(sync, dest, obj, candidates)
    if not stored:
        return []
    rows = read_user_rows(sync.store, list(stored), read=read)
    out: list[Formatted] = []
    for key in sorted(rows):
        user = rows[key]
        if type(user.attributes) in (UnreadableAttributes, UnreadableTimestamp):
            continue  # the rebuild refuses it, saying why
        payload = stored[key].payload
        try:
            hints = dict(fields.render(user, payload))
        except Exception:  # the mapping's reference path, in the rebuild, says why
            continue
        payload[obj.key_field] = key  # the product id always wins, as in the format
        out.append(Formatted(key, payload, hints))
    return out
