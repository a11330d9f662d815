"""Associations: a contact tied to every company of the user, the primary one labelled.

Single-account CRMs that allow many-to-many links (HubSpot's v4 associations) get one
association per active membership. syncer keeps a ledger of the associations *it* created
(:class:`syncer.state.AssociationLedger`), so when a membership ends it removes only those:
associations a salesperson made by hand are never touched.

The desired links are computed from the resolved users, chunk by chunk, and diffed against the
ledger; only differences become :class:`~syncer.connectors.base.AssociationChange` values, so a
run with no change sends no association request. A link whose two ends do not both have a remote
id yet (a company the destination rejected) waits for a later run.

A relabel (the primary account moved from A to B) is a *create* of B as ``primary`` and of A
unlabelled: destinations keep one primary per record, so the new one replaces the old.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from sqlalchemy.engine import Engine

from syncer.apply import associate_changes
from syncer.connectors.base import AssociationChange, AssociationResult, Connector
from syncer.mapping import MappingFile, ObjectMapping
from syncer.model import ResolvedUser
from syncer.ratelimit import RateLimiter
from syncer.retry import RetryPolicy
from syncer.state import AssociationLedger, Link, RecordState

__all__ = ["PRIMARY", "LinkStats", "desired_links", "sync_associations"]

PRIMARY = "primary"
_CHUNK = 500


@dataclass(slots=True)
class LinkStats:
    """What the association step did."""

    created: int = 0
    removed: int = 0
    failed: int = 0
    waiting: int = 0  # links whose ends have no remote id yet
    requests: int = 0


def desired_links(view: Any, to_object: str) -> set[Link]:
    """The links a resolved user should have: one per active membership, the primary labelled."""
    if not isinstance(view, ResolvedUser):
        raise TypeError(
            f"associations to {to_object!r} are made from users; got {type(view).__name__}"
        )
    return {
        Link(to_object, m.account_id, PRIMARY if m.primary else "")
        for m in view.memberships
        if not m.churned
    }


def sync_associations(
    destination: str,
    mapping: MappingFile,
    connector: Connector[Any],
    *,
    views: Callable[..., Iterator[Any]],
    state: Engine,
    run_id: str,
    limiter: RateLimiter,
    retry: RetryPolicy,
) -> LinkStats:
    """Bring the destination's associations in line with the resolved users; see the module
    docstring. ``views(source)`` streams resolved records (the engine's :meth:`Sync.views`)."""
    stats = LinkStats()
    ledger = AssociationLedger(state)
    for obj in mapping.objects:
        for assoc in obj.associations:
            changes = _changes(
                destination,
                obj,
                to_object=assoc.to_object,
                views=views,
                state=state,
                ledger=ledger,
                stats=stats,
            )

            def on_results(results: Sequence[AssociationResult]) -> None:
                ok = [r.change for r in results if r.ok]
                created = [c for c in ok if not c.remove]
                removed = [c for c in ok if c.remove]
                ledger.record_created(destination, created, run_id)
                ledger.record_removed(destination, removed)
                stats.created += len(created)
                stats.removed += len(removed)
                stats.failed += sum(1 for r in results if not r.ok)

            applied = associate_changes(
                connector, changes, on_results=on_results, limiter=limiter, retry=retry
            )
            stats.requests += applied.requests
    return stats


def _changes(
    destination: str,
    obj: ObjectMapping,
    *,
    to_object: str,
    views: Callable[..., Iterator[Any]],
    state: Engine,
    ledger: AssociationLedger,
    stats: LinkStats,
) -> Iterator[AssociationChange]:
    records = RecordState(state)
    stream = iter(views(obj.source))
    while True:
        chunk = list(islice(stream, _CHUNK))
        if not chunk:
            return
        wanted = {obj.key(v): desired_links(v, to_object) for v in chunk}
        have = ledger.for_sources(destination, obj.name, wanted)
        todo: list[tuple[str, Link, bool]] = []
        for key, links in wanted.items():
            mine = {link for link in have.get(key, set()) if link.to_object == to_object}
            by_target = {link.to_key: link for link in mine}
            # Primary first: it demotes the old primary before that one is relabelled.
            for link in sorted(links - mine, key=lambda x: (x.kind != PRIMARY, x.to_key)):
                todo.append((key, link, False))
            for link in sorted(mine, key=lambda x: x.to_key):
                if not any(w.to_key == link.to_key for w in links):
                    todo.append((key, by_target[link.to_key], True))
        if todo:
            yield from _with_remote_ids(
                destination,
                from_object=obj.name,
                to_object=to_object,
                todo=todo,
                records=records,
                stats=stats,
            )


def _with_remote_ids(
    destination: str,
    *,
    from_object: str,
    to_object: str,
    todo: Iterable[tuple[str, Link, bool]],
    records: RecordState,
    stats: LinkStats,
) -> Iterator[AssociationChange]:
    todo = list(todo)
    sources = records.get_many(destination, from_object, {k for k, _, _ in todo})
    targets = records.get_many(destination, to_object, {link.to_key for _, link, _ in todo})
    for key, link, remove in todo:
        src, dst = sources.get(key), targets.get(link.to_key)
        if src is None or dst is None or src.remote_id is None or dst.remote_id is None:
            stats.waiting += 1
            continue
        yield AssociationChange(
            from_object,
            key,
            src.remote_id,
            to_object,
            link.to_key,
            dst.remote_id,
            kind=link.kind,
            remove=remove,
        )
