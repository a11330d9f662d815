"""What a plan reads: everything (a full run), or only what changed and what that change affects.

A destination's state records the store's change-feed position its last *completed* run planned
from, with a hash of the mapping, policies and config it planned with
(:class:`syncer.state.feed.FeedPositions`). :func:`read_scope` decides, before anything is read:

* **full** — ``--full``, no position yet, a different hash (the mapping, the policies or the
  config changed: every record may format differently), or a feed that cannot say what changed
  (a store restored from a backup, a truncated table). Every key is read, as before.
* **incremental** — the keys the feed changed since the position, closed over what they affect
  (:func:`syncer.store.closure.affected`: members of changed accounts, the accounts of users
  whose change the accounts show — :func:`syncer.mapping.reads.member_fields` says which users
  columns the mapping's account records read —, ancestors and descendants, deleted keys
  included), plus each object's records waiting for a retry (refused last time:
  ``sync_errors``). The store, the policy marks and the sync state are all read for exactly
  these keys, so a key that was not read is neither resolved, nor diffed, nor removed: removals
  come from deleted keys (tombstones) and closure keys the store no longer has, and the marks
  of users not read stay as they are. Of the account forest, only the part resolving these keys
  needs is read (:func:`syncer.store.closure.read_forest`), and ``sync.hierarchy`` is built from
  it.

Either way the scope carries the position taken *before* the read (:func:`current_position`):
once the run completed, that is the destination's new position, and whatever changed while the
run read is read again by the next one. This module is the one place the engine calls the
store's feed API.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from syncer import __version__
from syncer.db import ALL_KEYS, IN_CHUNK, KeyRange
from syncer.mapping import ObjectMapping
from syncer.mapping.member_tokens import MemberTokenFields
from syncer.mapping.reads import member_fields
from syncer.mapping.user_row import UserRowFields
from syncer.policies.hierarchy import Hierarchy
from syncer.state import FailureLog
from syncer.state.feed import FeedPositions
from syncer.store.closure import affected, read_forest
from syncer.store.feed import changes_since, current_position, prune_tombstones
from syncer.store.keys import KeySet, RowsRead
from syncer.store.readers import Members
from syncer.store.schema import accounts as account_rows
from syncer.store.schema import memberships

from .remake import RemakeScope

if TYPE_CHECKING:
    from .reports import PlanReport
    from .sync import Destination, Sync

__all__ = [
    "KeySet",
    "Keys",
    "Mode",
    "ReadScope",
    "RowsRead",
    "config_hash",
    "read_scope",
    "record_position",
    "tally",
]

log = logging.getLogger("syncer.engine")

Mode = Literal["full", "incremental"]
Keys = KeyRange | KeySet
"""The keys a reader streams: a key range (a full run: all keys), or exactly a set of keys."""


@dataclass(slots=True)
class ReadScope:
    """What one plan or run of one destination reads, and the feed position to record after."""

    mode: Mode
    position: int  # the feed position read up to, taken before the read
    config_hash: str
    users: Keys = ALL_KEYS
    accounts: Keys = ALL_KEYS
    reason: str = ""  # why the run is full
    #: per object: keys refused by the destination last time, read again
    retry: dict[str, KeySet] = field(default_factory=dict)
    read: RowsRead = field(default_factory=RowsRead)  # store rows read, counted as they are
    #: the number of users and accounts an incremental scope resolves (set by read_scope)
    resolved: dict[str, int] | None = None
    #: accounts in the scope only because some members' shown columns changed, with those
    #: members (:func:`syncer.store.closure.affected`): made again from kept member tokens
    member_updates: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: users in the scope only because their email or names changed: made from their rows
    user_updates: frozenset[str] = frozenset()
    #: the member rows of ``member_updates``' pairs, read by the closure in this process
    members: Members | None = None

    @property
    def incremental(self) -> bool:
        return self.mode == "incremental"

    def keys_for(self, obj: ObjectMapping) -> Keys:
        """The keys of ``obj``'s source this plan reads: the closure and the object's retries."""
        base = self.users if obj.source == "users" else self.accounts
        extra = self.retry.get(obj.name)
        if isinstance(base, KeyRange) or not extra:
            return base
        return KeySet.of((*base.keys, *extra.keys))

    def remake(self, *, write: bool) -> RemakeScope:
        """What an object's pass may make without resolving (:mod:`syncer.engine.remake`), and
        whether it keeps the member tokens it computes (a run does, a plan does not)."""
        return RemakeScope(
            self.position,
            self.config_hash,
            self.member_updates,
            self.user_updates,
            write,
            self.members,
        )

    def closure_size(self) -> dict[str, int] | None:
        """``{"users": N, "accounts": N}``: the keys an incremental scope resolves (retries
        included), ``None`` for a full one."""
        return None if self.resolved is None else dict(self.resolved)


def config_hash(sync: Sync, dest: Destination) -> str:
    """The hash of everything besides the store that decides what a record looks like: the
    mapping file, the policies, the stage ladder, the destination's config (but not its
    credentials, schedule or concurrency), the connector and syncer's version."""
    settings = dest.config.model_dump(
        mode="json", exclude={"credentials", "schedule", "concurrency"}
    )
    parts = {
        "syncer": __version__,
        "connector": f"{dest.connector_cls.__module__}.{dest.connector_cls.__qualname__}",
        "mapping": hashlib.sha256(dest.mapping.path.read_bytes()).hexdigest(),
        "destination": settings,
        "policies": sync.config.policies.model_dump(mode="json"),
        "stages": sync.config.stages.model_dump(mode="json"),
    }
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def read_scope(
    sync: Sync,
    dest: Destination,
    *,
    full: bool = False,
    explain: bool = False,
    resolves: bool = True,
) -> ReadScope:
    """The scope of a plan or run of ``dest`` now (see the module docstring). Reads the feed,
    and the account hierarchy only if something is to be resolved (the closure needs it, and
    so does resolving); ``sync.hierarchy`` is re-read, so a long-lived :class:`Sync` resolves
    against the store as it is now. ``explain``: a plan that shows given records reads
    everything. ``resolves=False``: this process resolves nothing (a plan on a cluster, whose
    workers each read the forest), so the whole forest is counted, not read."""
    digest = config_hash(sync, dest)
    sync.use_hierarchy(None)  # the forest as it is now, not as an earlier run saw it
    recorded = FeedPositions(sync.state).get(dest.name)
    reason = ""
    if full:
        reason = "--full"
    elif explain:  # the records to show may be anywhere in the store, changed or not
        reason = "records to explain"
    elif recorded is None:
        reason = "no completed run recorded a feed position yet"
    elif recorded.config_hash != digest:
        reason = "the mapping, the policies or the config changed since the last run"
    if reason:
        return _full(sync, digest, current_position(sync.store), reason, resolves)
    assert recorded is not None
    read = RowsRead()
    changes = changes_since(sync.store, recorded.position, read=read)
    if changes.full:
        return _full(sync, digest, changes.position, changes.reason, resolves)
    failures = FailureLog(sync.state)
    retry = {
        obj.name: KeySet.of(keys)
        for obj in dest.mapping.objects
        if (keys := failures.keys_to_retry(dest.name, obj.name))
    }
    updates: Mapping[str, tuple[str, ...]] = {}
    own_rows: frozenset[str] = frozenset()
    members: Members | None = None
    if changes:
        shown = member_fields(dest.mapping.objects)
        closure = affected(sync.store, changes, member_columns=shown, read=read)
        users, accounts, updates = closure.users, closure.accounts, closure.member_updates
        own_rows, members = closure.user_updates, closure.members
    else:
        users, accounts = KeySet(), KeySet()
    waiting = _waiting_links(sync, dest, failures, read)
    if waiting:
        users = KeySet.of((*users.keys, *waiting))
        own_rows -= waiting  # their links are planned from the resolved user
    scope = ReadScope(
        "incremental",
        changes.position,
        digest,
        users,
        accounts,
        retry=retry,
        member_updates=updates,
        user_updates=own_rows,
        members=members,
    )
    scope.read = read
    _partial_hierarchy(sync, dest, scope)
    return scope


def _partial_hierarchy(sync: Sync, dest: Destination, scope: ReadScope) -> None:
    """Build ``sync.hierarchy`` from the part of the forest the scope's keys need (nothing
    when nothing is to be resolved), and count its rows as accounts read."""
    keys: dict[str, set[str]] = {"users": set(), "accounts": set()}
    need: dict[str, set[str]] = {"users": set(), "accounts": set()}
    for obj in dest.mapping.objects:
        chosen = scope.keys_for(obj)
        assert isinstance(chosen, KeySet)
        keys[obj.source].update(chosen)
        made = _remade_keys(dest, obj, scope)  # another object of the source may need them
        need[obj.source].update(k for k in chosen if k not in made)
    scope.resolved = {source: len(found) for source, found in keys.items()}
    keys = need
    if _whole_forest_is_cheaper(sync, len(keys["accounts"]) + 2 * len(keys["users"])):
        _count_hierarchy(sync, scope.read)
        return
    before = scope.read.accounts
    forest = []
    if keys["users"] or keys["accounts"]:
        rollups = sync.settings.rollups
        forest = read_forest(
            sync.store, keys["accounts"], keys["users"], subtrees=bool(rollups), read=scope.read
        )
    sync.use_hierarchy(Hierarchy.from_accounts(forest, sync.settings.rollups))
    scope.read.extra["hierarchy"] = scope.read.accounts - before


def _remade_keys(dest: Destination, obj: ObjectMapping, scope: ReadScope) -> set[str]:
    """The keys of ``obj`` its pass may make without resolving them (:mod:`.remake`): they
    need nothing of the forest (one not made after all reads its part apart). Not a retry."""
    if obj.source == "accounts":
        made: set[str] = set(scope.member_updates) if MemberTokenFields.of(obj) else set()
    else:
        hints = dest.connector_cls.capabilities.update_hints
        made = set(scope.user_updates) if UserRowFields.of(obj, hints) else set()
    retry = scope.retry.get(obj.name)
    return made - set(retry.keys) if retry and made else made


#: A part of the forest is read by recursive queries, several times slower per row than the
#: whole forest streamed in key order (at 1M users: 15k rows in 0.60 s, all 200k in 1.64 s).
#: When a scope needs more than this share of the store's accounts (and more than
#: ``WHOLE_FOREST_MIN`` of them: below that either costs little), the whole forest is read.
WHOLE_FOREST_SHARE = 0.2
WHOLE_FOREST_MIN = 10_000


def _whole_forest_is_cheaper(sync: Sync, needed: int) -> bool:
    """``needed``: an estimate of the accounts a scope's forest holds (its accounts, and two for
    each of its users: a user's accounts, ancestors among them, overlap with others')."""
    if needed <= WHOLE_FOREST_MIN:
        return False
    with sync.store.connect() as conn:
        total = conn.execute(select(func.count()).select_from(account_rows)).scalar_one()
    return needed > WHOLE_FOREST_SHARE * total


def _waiting_links(sync: Sync, dest: Destination, failures: FailureLog, read: RowsRead) -> set[str]:
    """The members of accounts the destination refused (to be retried, or set aside), when the
    mapping links users to accounts: their links wait for the account's remote id, so they are
    planned again in the run that may deliver it (users are planned after accounts)."""
    if not any(o.associations for o in dest.mapping.objects):
        return set()
    refused: set[str] = set()
    for obj in dest.mapping.objects:
        if obj.source == "accounts":
            refused |= failures.keys_to_retry(dest.name, obj.name)
            refused |= set(failures.set_aside_keys(dest.name, obj.name))
    found: set[str] = set()
    m = memberships.c
    with sync.store.connect() as conn:
        for chunk in KeySet.of(refused).chunks(IN_CHUNK):
            rows = conn.execute(select(m.user_id).where(m.account_id.in_(chunk))).scalars().all()
            read.memberships += len(rows)
            found.update(rows)
    return found


def _full(sync: Sync, digest: str, position: int, reason: str, resolves: bool) -> ReadScope:
    scope = ReadScope("full", position, digest, reason=reason)
    _count_hierarchy(sync, scope.read, load=resolves)
    return scope


def _count_hierarchy(sync: Sync, read: RowsRead, *, load: bool = True) -> None:
    """Load the account forest (every account's id, name, parent and roll-up attributes: the
    policies need it whole) and count its rows as accounts read; without ``load``, count the
    accounts only (the forest holds every one)."""
    if load:
        rows = len(sync.hierarchy)
    else:
        with sync.store.connect() as conn:
            rows = conn.execute(select(func.count()).select_from(account_rows)).scalar_one()
    read.accounts += rows
    read.extra["hierarchy"] = read.extra.get("hierarchy", 0) + rows


def record_position(sync: Sync, dest: Destination, scope: ReadScope, run_id: str) -> int:
    """After a completed run: record the position it planned from and prune the tombstones
    every destination has passed (when the store is writable here). Returns how many went."""
    positions = FeedPositions(sync.state)
    positions.record(dest.name, scope.position, scope.config_hash, run_id)
    lowest = positions.lowest()
    if lowest is None or not sync.store_writable:
        return 0
    try:
        return prune_tombstones(sync.store, lowest)
    except DBAPIError as exc:  # the run is done and recorded: pruning waits for the next one
        log.warning("tombstones not pruned (the next run tries again): %s", exc.orig)
        return 0


def tally(report: PlanReport, scope: ReadScope) -> None:
    """Put the scope's mode and the rows read (the feed's, the forest's and each object's
    pass) on ``report``; beside the tables' counts, ``report.read`` holds the forest's rows
    (``forest``, counted in ``accounts`` too), the feed's (``feed``, not in the tables'
    counts) and, in an incremental run, the closure's keys (``closure_users``,
    ``closure_accounts``, retries included): what "rows read per closure key" is measured
    against."""
    report.mode, report.mode_reason = scope.mode, scope.reason
    totals = scope.read.as_dict()
    for obj in report.objects:
        for table, n in obj.read.items():
            totals[table] = totals.get(table, 0) + n
    totals["forest"] = scope.read.extra.get("hierarchy", 0)
    totals["feed"] = scope.read.extra.get("feed", 0)
    size = scope.closure_size()
    if size is not None:
        totals["closure_users"], totals["closure_accounts"] = size["users"], size["accounts"]
    report.read = totals
