"""What an incremental pass makes again without resolving, and the rebuild of everything else.

Two kinds of record in an incremental run's closure are made from what the state kept instead of
being read, resolved and formatted again:

* an account reached only because some members' shown columns changed, from its members' kept
  tokens (:mod:`.member_tokens`);
* a user whose email or names changed and nothing else, from its row and its last payload
  (:mod:`.user_rows`).

Neither needs the account forest, so the scope's part of it leaves them out
(:func:`syncer.engine.incremental.read_scope`). One that cannot be made so after all (no
acknowledged record, a retry pending, a value the formatter refuses…) is rebuilt *apart*: with
the part of the forest that resolving it needs, read for it alone (:func:`merged`).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from syncer.mapping import Formatted, ObjectMapping
from syncer.policies.hierarchy import Hierarchy
from syncer.state import FailureLog, RecordState
from syncer.state.records import StoredRecord
from syncer.store.closure import read_forest
from syncer.store.keys import KeySet, RowsRead
from syncer.store.readers import Members

if TYPE_CHECKING:
    from .incremental import Keys
    from .sync import Destination, Sync

__all__ = ["Formatter", "RemakeScope", "View", "acknowledged", "merged"]

View = Any
#: The mapping's format of resolved views of some keys: ``(keys, on_view, hierarchy)``, the
#: hierarchy ``None`` for the scope's.
Formatter = Callable[["Keys", Callable[[View], None] | None, Hierarchy | None], Iterator[Formatted]]


@dataclass(frozen=True, slots=True)
class RemakeScope:
    """What a pass over an object needs of its scope to make records without resolving them."""

    position: int  # the scope's feed position: the stamp of member token rows written
    config_hash: str
    #: the accounts an incremental scope holds only for some members' shown columns, with
    #: those members (empty in a full scope)
    updates: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    #: the users it holds only because their email or names changed
    users: frozenset[str] = frozenset()
    write: bool = False  # keep what the pass computes (a run; not a plan)
    #: the member rows of ``updates``' pairs when this process read them already (the closure
    #: did, to find the accounts); None: the pass reads them (a worker)
    members: Members | None = None


def acknowledged(
    sync: Sync, dest: Destination, obj: ObjectMapping, candidates: Collection[str]
) -> dict[str, StoredRecord]:
    """The records of ``candidates`` as the destination last acknowledged them, those that
    can be made again from that: not removed, with a remote id, neither waiting for a retry
    nor set aside."""
    failures = FailureLog(sync.state)
    waiting = failures.keys_to_retry(dest.name, obj.name)
    waiting.update(failures.set_aside_keys(dest.name, obj.name))
    keys = KeySet.of(k for k in candidates if k not in waiting)
    if not keys:
        return {}
    return {
        r.key: r
        for r in RecordState(sync.state).iter_records(dest.name, obj.name, keys=keys)
        if not r.removed and r.remote_id is not None
    }


def merged(
    sync: Sync,
    obj: ObjectMapping,
    made: list[Formatted],
    rest: Keys,
    apart: Collection[str],
    *,
    rebuild: Formatter,
    on_view: Callable[[View], None] | None,
    read: RowsRead | None,
) -> Iterator[Formatted]:
    """``made``, the records of ``rest`` rebuilt, and those of ``apart`` rebuilt with the part
    of the forest they need (read here), in key order."""
    streams: list[Iterator[Formatted]] = []
    if not (isinstance(rest, KeySet) and not rest):
        streams.append(rebuild(rest, on_view, None))
    if apart:
        accounts, users = (apart, ()) if obj.source == "accounts" else ((), apart)
        rollups = sync.settings.rollups
        forest = read_forest(sync.store, accounts, users, subtrees=bool(rollups), read=read)
        hierarchy = Hierarchy.from_accounts(forest, rollups)
        streams.append(rebuild(KeySet.of(apart), on_view, hierarchy))
    if made:
        streams.append(iter(made))
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=attrgetter("key"))
