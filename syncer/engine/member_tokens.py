"""Account records made again from kept member tokens, when only some members' columns changed.

An email change of 1% of the users puts, at 1M users, about 20,000 accounts and their 800,000
member rows in an incremental run's closure: their member token fields (``members | emails``,
``members | tokens('email', 'stage')``) show the changed addresses. Rebuilding such an account
reads, resolves and formats every member. Instead, a run keeps each member's tokens
(:class:`~syncer.mapping.member_tokens.MemberTokenFields`) in the state
(:class:`~syncer.state.member_tokens.MemberTokenStore`), and an account that is in the closure
*only* because some members' shown columns changed (``ReadScope.member_updates``) is made from:

* its kept rows, with the changed members' tokens taken again from their rows in the store
  (their memberships, user columns and membership marks, resolved by the same
  :meth:`~syncer.policies.resolve.Resolver.members`) — a member no longer active leaves;
* and every other field of its last acknowledged payload: nothing else it shows changed, or it
  would be in the closure for that reason too.

Such an account is rebuilt as before whenever that does not hold or cannot be shown to: it has
no current rows (none, or of another config hash), it has no acknowledged record, it is waiting
for a retry or set aside, a changed member's row is unreadable or its stage unknown, or a token
cannot be encoded. A run (not a plan) writes the rows of every account it rebuilds and of every
account it made from them, stamped with its scope's position, and drops those of the accounts it
held that the store no longer has (a pass over a key range, in a full run, clears the range's
first): every account its window's changes reach, which is what keeps the rows current
(:mod:`syncer.state.member_tokens`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from syncer.db import KeyRange
from syncer.errors import UnknownStageError
from syncer.mapping import Formatted, ObjectMapping
from syncer.mapping.member_tokens import ENCODING, MemberTokenFields
from syncer.model import Mark
from syncer.policies.hierarchy import Hierarchy
from syncer.policies.resolve import Resolver
from syncer.state.marks import MarkStore
from syncer.state.member_tokens import MemberTokenStore, TokenWrites
from syncer.store.keys import KeySet, RowsRead
from syncer.store.readers import read_members

from .remake import Formatter, RemakeScope, View, acknowledged, merged

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .incremental import Keys
    from .sync import Destination, Sync

__all__ = ["member_token_records"]

#: Accounts whose rows are written per transaction.
FLUSH_ACCOUNTS = 2000


def member_token_records(
    sync: Sync,
    dest: Destination,
    obj: ObjectMapping,
    tokens: RemakeScope | None,
    *,
    keys: Keys,
    read: RowsRead | None,
    on_view: Callable[[View], None] | None,
    rebuild: Formatter,
) -> Iterator[Formatted]:
    """``obj``'s formatted records of ``keys`` in key order: those that can be made from kept
    member tokens made so, the others by ``rebuild`` (the mapping's format of resolved views);
    in a run, the member tokens of both kept (module docstring)."""
    if tokens is None or not (tokens.write or tokens.updates):
        return rebuild(keys, on_view, None)  # nothing to use, nothing to keep (a full plan)
    fields = MemberTokenFields.of(obj)
    if fields is None:
        return rebuild(keys, on_view, None)
    return _Pass(sync, dest, obj, fields, tokens=tokens, read=read).records(keys, on_view, rebuild)


class _Pass:
    def __init__(
        self,
        sync: Sync,
        dest: Destination,
        obj: ObjectMapping,
        fields: MemberTokenFields,
        *,
        tokens: RemakeScope,
        read: RowsRead | None,
    ) -> None:
        self.sync, self.dest, self.obj = sync, dest, obj
        self.fields, self.tokens, self.read = fields, tokens, read
        self.kept = MemberTokenStore(sync.state)
        # What the rows are stamped with and read by: the config and the encoding of the text.
        self.stamp = hashlib.sha256(f"{tokens.config_hash}/{ENCODING}".encode()).hexdigest()
        self.writes = TokenWrites()
        self.seen: set[str] = set()  # accounts of a key set rebuilt in a run

    def records(
        self, keys: Keys, on_view: Callable[[View], None] | None, rebuild: Formatter
    ) -> Iterator[Formatted]:
        remade: list[Formatted] = []
        rest: Keys = keys
        apart: list[str] = []  # candidates not made after all: the scope's forest lacks them
        if isinstance(keys, KeySet) and self.tokens.updates:
            candidates = [k for k in keys if k in self.tokens.updates]
            if candidates:
                remade = self._remade(candidates)
                done = {f.key for f in remade}
                apart = [k for k in candidates if k not in done]
                rest = KeySet(tuple(k for k in keys if k not in self.tokens.updates))
        see = on_view
        if self.tokens.write:
            see = self._capture(on_view, track=isinstance(rest, KeySet))
            if isinstance(rest, KeyRange):  # every account of the range is rebuilt: its rows too
                self.kept.clear(self.dest.name, self.obj.name, rest)
        yield from merged(
            self.sync, self.obj, remade, rest, apart, rebuild=rebuild, on_view=see, read=self.read
        )
        if self.tokens.write and isinstance(rest, KeySet):
            # Keys of the set the store no longer has: no view, so no rows either.
            rebuilt = (*rest, *apart)
            self.writes.dropped.update(k for k in rebuilt if k not in self.seen)
        self._flush()

    # --- accounts made from kept rows -------------------------------------------------------

    def _remade(self, candidates: list[str]) -> list[Formatted]:
        """The records of those of ``candidates`` that can be made from kept rows."""
        sync, dest, obj, tokens = self.sync, self.dest, self.obj, self.tokens
        stored = acknowledged(sync, dest, obj, candidates)
        rows = self.kept.load(dest.name, obj.name, stored, config_hash=self.stamp)
        if not rows:
            return []
        if self.read is not None:
            self.read.member_tokens += sum(map(len, rows.values()))
        wanted = {a: tokens.updates[a] for a in rows}
        if tokens.members is not None:  # read by the closure in this process already
            found, bad = tokens.members
            members = {a: found[a] for a in wanted if a in found}
            unreadable = bad.intersection(wanted)
        else:
            members, unreadable = read_members(sync.store, wanted, read=self.read)
        marks = MarkStore(sync.state).membership_marks(wanted)
        # Members are resolved on their own: nothing of the forest is needed.
        resolver = Resolver(
            sync.settings, Hierarchy.from_accounts([], sync.settings.rollups), now=sync.now
        )
        out: list[Formatted] = []
        for account in sorted(wanted):
            if account in unreadable:
                continue
            kept = rows[account]
            changed = self._changed(resolver, account, members.get(account, []), marks, kept)
            if changed is None:
                continue
            payload = stored[account].payload
            try:
                self.fields.render(kept.values(), payload)
            except ValueError:  # rows of another shape: rebuilt, and written again
                continue
            out.append(Formatted(account, payload, {}))
            if self.tokens.write:
                self.writes.updated[account] = changed
                self._flush_if_full()
        return out

    def _changed(
        self,
        resolver: Resolver,
        account: str,
        rows: list[Any],
        marks: Mapping[str, dict[str, Mark]],
        kept: dict[str, str],
    ) -> dict[str, str | None] | None:
        """``account``'s changed members taken again into ``kept`` (its members' texts), and
        what changed (``None``: a member no longer active); None if one cannot be taken (the
        account is rebuilt)."""
        try:
            ranked = resolver.members(account, rows, marks.get(account, {}))
        except UnknownStageError:
            return None
        active = {m.user_id: m for _, _, m in ranked}
        changed: dict[str, str | None] = {}
        for user in self.tokens.updates[account]:
            member = active.get(user)
            if member is None:
                kept.pop(user, None)
                changed[user] = None
                continue
            text = self.fields.encode(member)
            if text is None:
                return None
            kept[user] = changed[user] = text
        return changed

    # --- accounts rebuilt --------------------------------------------------------------------

    def _capture(
        self, on_view: Callable[[View], None] | None, *, track: bool
    ) -> Callable[[View], None]:
        """``on_view``, keeping each rebuilt account's member tokens first; ``track``: note
        the accounts seen (a key set's, told apart from those the store no longer has)."""
        encode_all, writes = self.fields.encode_all, self.writes
        seen = self.seen if track else None

        def see(view: View) -> None:
            key = view.account.account_id
            if seen is not None:
                seen.add(key)
            texts = encode_all(view.members) if view.problem is None else None
            if texts is None:
                writes.dropped.add(key)
            else:
                writes.replaced[key] = texts
            self._flush_if_full()
            if on_view is not None:
                on_view(view)

        return see

    def _flush_if_full(self) -> None:
        if len(self.writes) >= FLUSH_ACCOUNTS:
            self._flush()

    def _flush(self) -> None:
        if self.writes:
            self.kept.save(
                self.dest.name,
                self.obj.name,
                self.writes,
                position=self.tokens.position,
                config_hash=self.stamp,
            )
            self.writes.clear()
