"""Read → resolve → format → plan, for one object of one destination, streamed in key order.

One pass over the store: :func:`views` merge-joins a store reader with the policy marks and
resolves each record; :func:`changes` formats each view with the object's mapping and diffs it
against the sync state (:func:`syncer.plan.plan_changes`). The formatted record is what the plan
diffs, as it comes (no copy). A real run sees each view too (``on_view``: the associations are
planned from the same views) and collects the marks that changed (``on_marks``); a plan passes
neither and so leaves the state untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from syncer.db import ALL_KEYS
from syncer.mapping import Formatted, ObjectMapping
from syncer.model import Mark, ResolvedAccount, ResolvedUser
from syncer.plan import Change, plan_changes
from syncer.policies.hierarchy import Hierarchy
from syncer.policies.resolve import Resolver
from syncer.state import FailureLog, RecordState
from syncer.state.marks import MarkStore
from syncer.store.readers import iter_accounts, iter_users

from .incremental import Keys, KeySet, RowsRead
from .member_tokens import member_token_records
from .remake import RemakeScope
from .reports import ObjectReport
from .user_rows import user_row_records

if TYPE_CHECKING:
    from .sync import Destination, Sync

__all__ = ["View", "changes", "formatted", "plan_object", "views"]

View = ResolvedUser | ResolvedAccount
MarkSink = Callable[[list[Mark]], None]


def views(
    sync: Sync,
    source: str,
    *,
    on_marks: MarkSink | None = None,
    keys: Keys = ALL_KEYS,
    read: RowsRead | None = None,
    hierarchy: Hierarchy | None = None,
) -> Iterator[View]:
    """Resolved users or accounts (those whose key is in ``keys``: a range, or exactly a set of
    keys) in key order. ``on_marks`` receives the marks that changed; without it they are not
    kept (a plan writes nothing). ``read`` counts the store rows read. ``hierarchy``: the part
    of the forest these keys need, when not ``sync.hierarchy``.

    The store, the marks and (in :func:`changes`) the sync state are read for the same keys:
    marks of a user that was not read are neither seen nor touched."""
    forest = sync.hierarchy if hierarchy is None else hierarchy
    resolver = Resolver(sync.settings, forest, now=sync.now or datetime.now(UTC))
    marks = MarkStore(sync.state)
    stream: Iterator[tuple[View, list[Mark]]]
    if source == "users":
        stream = resolver.resolve_users(
            iter_users(sync.store, keys=keys, read=read),
            marks.iter_marks(keys=keys),
            on_vanished=on_marks,
        )
    else:
        stream = resolver.resolve_accounts(
            iter_accounts(sync.store, keys=keys, read=read),
            marks.iter_account_marks(keys=keys),
            on_vanished=on_marks,
        )
    for view, changed in stream:
        if changed and on_marks is not None:
            on_marks(changed)
        yield view


def formatted(
    sync: Sync,
    obj: ObjectMapping,
    *,
    on_marks: MarkSink | None = None,
    on_view: Callable[[View], None] | None = None,
    keys: Keys = ALL_KEYS,
    read: RowsRead | None = None,
    hierarchy: Hierarchy | None = None,
) -> Iterator[Formatted]:
    """The object's source records, formatted for the destination, in key order; ``on_view``
    sees each resolved view first."""
    stream = views(sync, obj.source, on_marks=on_marks, keys=keys, read=read, hierarchy=hierarchy)
    for view in stream:
        if on_view is not None:
            on_view(view)
        yield obj.format(view)


def changes(
    sync: Sync,
    dest: Destination,
    obj: ObjectMapping,
    *,
    on_marks: MarkSink | None = None,
    on_view: Callable[[View], None] | None = None,
    on_change: Callable[[Change], None] | None = None,
    keys: Keys = ALL_KEYS,
    read: RowsRead | None = None,
    remake: RemakeScope | None = None,
) -> Generator[Change, None, None]:
    """The plan of one object: one :class:`Change` per key (in ``keys``) of the source or
    the state. With a key set (an incremental run), a key of the state that is in the set but
    no longer in the source is a removal; a key outside the set is not looked at. ``remake``:
    what the scope lets the pass make without resolving (:mod:`.remake`): accounts from
    member tokens (kept too, in a run), users from their rows."""
    if isinstance(keys, KeySet) and not keys:
        return _nothing()  # an incremental run with no change: not even the forest is read
    aside = FailureLog(sync.state).set_aside_keys(dest.name, obj.name)
    stored = RecordState(sync.state).iter_records(dest.name, obj.name, keys=keys)

    def rebuild(
        part: Keys, see: Callable[[View], None] | None, forest: Hierarchy | None
    ) -> Iterator[Formatted]:
        return formatted(
            sync, obj, on_marks=on_marks, on_view=see, keys=part, read=read, hierarchy=forest
        )

    make = member_token_records if obj.source == "accounts" else user_row_records
    records = make(sync, dest, obj, remake, keys=keys, read=read, on_view=on_view, rebuild=rebuild)
    return plan_changes(
        obj.name,
        obj.key_field,
        records,
        stored,
        removal=dest.config.removal,
        required=dest.connector_cls.object_spec(obj.name).required_fields,
        set_aside=aside,
        on_change=on_change,
    )


def _nothing() -> Generator[Change, None, None]:
    yield from ()


def plan_object(
    sync: Sync,
    dest: Destination,
    obj: ObjectMapping,
    *,
    shard: Keys,
    samples: int,
    keys: Sequence[str] | None,
    on_change: Callable[[Change], None] | None = None,
    remake: RemakeScope | None = None,
) -> ObjectReport:
    """Counts and samples of one object's plan over the keys in ``shard`` (a key range, or an
    incremental run's key set), with the store rows its pass read."""
    rep = ObjectReport(obj.name)
    wanted = set(keys) if keys is not None else None
    read = RowsRead()
    stream = changes(sync, dest, obj, on_change=on_change, keys=shard, read=read, remake=remake)
    with closing(stream):
        for change in stream:
            rep.counts.add(change.action)
            if wanted is not None:
                if change.key in wanted:
                    rep.samples.append(change)
            elif change.action not in ("unchanged", "skipped") and len(rep.samples) < samples:
                rep.samples.append(change)
    rep.read = read.as_dict()
    return rep
