"""Associations: a contact tied to every company of the user, the primary one labelled.

Single-account CRMs that allow many-to-many links (HubSpot's v4 associations) get one
association per active membership. syncer keeps a ledger of the associations *it* created
(:class:`syncer.state.AssociationLedger`), so when a membership ends it removes only those:
associations a salesperson made by hand are never touched.

The links are planned in the object's own pass over the store: :class:`LinkPlanner` sees each
resolved user as the records are planned, and diffs its desired links against the ledger chunk
by chunk; only differences are kept, so a run with no change sends no association request. After
the object's records were written, :func:`link_changes` gives each difference the remote ids of
its two ends; a link whose two ends do not both have one yet (a company the destination
rejected) waits for a later run. The changes then go through the one write pipeline.

A relabel (the primary account moved from A to B) is a *create* of B as ``primary`` and of A
unlabelled: destinations keep one primary per record, so the new one replaces the old.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from syncer.connectors.base import AssociationChange
from syncer.mapping import ObjectMapping
from syncer.model import ResolvedUser
from syncer.state import AssociationLedger, Link, RecordState

from .reports import LinkStats

__all__ = ["PRIMARY", "LinkPlanner", "LinkTodo", "desired_links", "link_changes"]

PRIMARY = "primary"
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class LinkTodo:
    """One association to create (or, ``remove``, to take away) for the record ``key``."""

    key: str
    link: Link
    remove: bool


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


class LinkPlanner:
    """The association differences of one object, planned from the views of its pass."""

    def __init__(self, destination: str, obj: ObjectMapping, ledger: AssociationLedger) -> None:
        self.destination = destination
        self.obj = obj
        self.ledger = ledger
        self.todo: list[LinkTodo] = []
        self._wanted: dict[str, set[Link]] = {}

    def see(self, view: Any) -> None:
        """Take one resolved view's desired links (the pass calls this for every view)."""
        links: set[Link] = set()
        for assoc in self.obj.associations:
            links |= desired_links(view, assoc.to_object)
        self._wanted[self.obj.key(view)] = links
        if len(self._wanted) >= _CHUNK:
            self.flush()

    def flush(self) -> None:
        """Diff the views seen since the last flush against the ledger."""
        if not self._wanted:
            return
        have = self.ledger.for_sources(self.destination, self.obj.name, self._wanted)
        targets = {a.to_object for a in self.obj.associations}
        for key, links in self._wanted.items():
            mine = {link for link in have.get(key, set()) if link.to_object in targets}
            # Primary first: it demotes the old primary before that one is relabelled.
            for link in sorted(links - mine, key=lambda x: (x.kind != PRIMARY, x.to_key)):
                self.todo.append(LinkTodo(key, link, remove=False))
            kept = {(w.to_object, w.to_key) for w in links}
            for link in sorted(mine, key=lambda x: (x.to_object, x.to_key)):
                if (link.to_object, link.to_key) not in kept:
                    self.todo.append(LinkTodo(key, link, remove=True))
        self._wanted = {}


def link_changes(
    destination: str,
    from_object: str,
    todo: list[LinkTodo],
    records: RecordState,
    stats: LinkStats,
) -> Iterator[AssociationChange]:
    """The planned differences with the remote ids of both ends, chunk by chunk; those
    lacking one are counted in ``stats.waiting``."""
    items = iter(todo)
    while chunk := list(islice(items, _CHUNK)):
        sources = records.get_many(destination, from_object, {t.key for t in chunk})
        targets: dict[tuple[str, str], Any] = {}
        for to_object in {t.link.to_object for t in chunk}:
            wanted = {t.link.to_key for t in chunk if t.link.to_object == to_object}
            found = records.get_many(destination, to_object, wanted)
            targets.update({(to_object, k): v for k, v in found.items()})
        for t in chunk:
            src, dst = sources.get(t.key), targets.get((t.link.to_object, t.link.to_key))
            if src is None or dst is None or src.remote_id is None or dst.remote_id is None:
                stats.waiting += 1
                continue
            yield AssociationChange(
                from_object,
                t.key,
                src.remote_id,
                t.link.to_object,
                t.link.to_key,
                dst.remote_id,
                kind=t.link.kind,
                remove=t.remove,
            )
