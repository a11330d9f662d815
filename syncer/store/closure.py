"""The closure of a change: every user and account whose resolved record a change can alter.

What a resolved record shows (see :func:`syncer.mapping.context_for`) decides the rules:

* A **user** shows its own row, its memberships, and each membership's account name and
  parent. So: the users whose rows changed or went, the users of changed or deleted
  memberships, and the members of every account whose own row changed (name, parent, stage —
  the token fields of its members).
* An **account** shows its own row, its members (membership rows and the member's email and
  names), its roll-ups (over its whole subtree), its ancestors, its children and whether the
  hierarchy rejects it (a cycle or a missing parent, inherited by everything under it). So:
  the accounts whose rows changed or went and the accounts of changed memberships; every
  account of a user whose row changed *in a way the account shows* (its member list shows the
  user's email and names: ``member_columns``, those the destination's account mappings read,
  told by the feed's ``member`` rows; a user that went or arrived counts); every
  ancestor of a changed account (roll-ups, children) — of its old parent too when it moved or
  went; and every descendant of an account that appeared, moved or went (their ancestors, and
  whether they are rejected, change). Roll-ups go up only, so an attribute change does not
  reach the descendants.

A user whose every change was to its email or names (:meth:`ChangeSet.own_changes`) and that is
in the closure for nothing else is listed apart (``user_updates``): its record can be made from
its row and its last payload (:mod:`syncer.engine.user_rows`).

Ancestors and descendants follow ``parent_account_id`` as stored, cycles and missing parents
included, read from the store as it is now with recursive queries (``WITH RECURSIVE``; its
``UNION`` stops at a cycle): the forest is never read whole here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from sqlalchemy import select, type_coerce
from sqlalchemy.engine import Connection, Engine

from syncer.db import RawType
from syncer.model import Account
from syncer.store.feed import ChangeSet
from syncer.store.keys import KeySet, RowsRead
from syncer.store.readers import Members, account_from_row, members_of, user_member_rows
from syncer.store.schema import accounts, data_columns, memberships
from syncer.store.triggers import MEMBER_COLUMNS

_CHUNK = 500
#: Member rows a closure keeps for the token pass (about 25,000 for an email change of 1% of
#: 1M users); a larger change lets the pass read them again rather than hold them all.
KEEP_MEMBER_ROWS = 200_000


class Closure(NamedTuple):
    """The users and accounts a change set affects, ready for the readers' ``keys``;
    ``member_updates``: those of the accounts that are in it only because some members' shown
    columns changed (the members neither arrived nor left), each with those members;
    ``user_updates``: those of the users that are in it only because their email or names
    changed (:meth:`~syncer.store.feed.ChangeSet.own_changes`)."""

    users: KeySet
    accounts: KeySet
    member_updates: Mapping[str, tuple[str, ...]] = MappingProxyType({})
    user_updates: frozenset[str] = frozenset()
    #: the member rows of ``member_updates``' pairs, read here already (to find the accounts)
    members: Members | None = None


def affected(
    engine: Engine,
    changes: ChangeSet,
    *,
    member_columns: Iterable[str] = MEMBER_COLUMNS,
    read: RowsRead | None = None,
) -> Closure:
    """The users and accounts whose resolved records ``changes`` can alter (see the module
    docstring for the rules), deleted keys included. ``member_columns``: the users columns the
    destination's account records show of their members (all of them unless told otherwise).
    ``read`` counts the rows read (memberships, and the account ids of the forest walks).

    A change set with ``full`` set has no closure: the caller reads everything.
    """
    if changes.full:
        raise ValueError(f"a full change set has no closure ({changes.reason})")
    gone_users = {t.key for t in changes.gone("user")}
    gone_accounts = {t.key: t.other for t in changes.gone("account")}
    moved = changes.gone("parent")
    pairs = {*changes.memberships, *((t.key, t.other or "") for t in changes.gone("membership"))}
    identity_keys = [(e, k) for e, k, _ in changes.identities]
    for t in changes.gone("identity"):
        identity_keys.append(((t.other or "").split(":", 1)[0], t.key))

    own_accounts = {*changes.accounts, *gone_accounts}
    user_ids = {
        *changes.users,
        *gone_users,
        *(u for u, _ in pairs),
        *(k for e, k in identity_keys if e == "user"),
    }
    account_ids = {
        *own_accounts,
        *(a for _, a in pairs),
        *(k for e, k in identity_keys if e == "account"),
    }
    shown = changes.shown(member_columns)  # users whose accounts show what changed
    columns_only = changes.column_changes(member_columns)
    old_parents = {p for p in gone_accounts.values() if p}
    old_parents |= {t.other for t in moved if t.other}
    shaken = {*changes.structural, *gone_accounts, *(t.key for t in moved)}
    own_rows = changes.own_changes().intersection(changes.users)
    for reason in (gone_users, (u for u, _ in pairs), (k for e, k in identity_keys if e == "user")):
        own_rows.difference_update(reason)
    with engine.connect() as conn:
        others = _other_side(conn, own_accounts, read)
        user_ids |= others
        own_rows -= others
        # The rows of users whose columns alone changed are what their accounts may be made
        # again from: kept for the token pass, up to KEEP_MEMBER_ROWS (then it reads them).
        seen: set[tuple[str, str]] = set()  # (user_id, account_id)
        kept: list[tuple[Any, ...]] | None = []
        for part in user_member_rows(conn, shown, read=read):
            seen.update((r[0], r[1]) for r in part)
            if kept is not None:
                kept += (r for r in part if r[0] in columns_only)
                if len(kept) > KEEP_MEMBER_ROWS:
                    kept = None
        starts = {*own_accounts, *old_parents}
        account_ids |= starts | ancestors(conn, starts, read)
        if shaken:
            account_ids |= shaken | descendants(conn, shaken, read)
    # An account reached only through members whose shown columns changed keeps everything
    # else it showed: its record can be made again from those members alone.
    updates: dict[str, list[str]] = {}
    for user, account in seen:
        if user in columns_only and account not in account_ids:
            updates.setdefault(account, []).append(user)
        else:
            account_ids.add(account)
    account_ids.discard("")
    member_updates = {  # not if the account is in the closure for another reason too
        a: tuple(sorted(u)) for a, u in updates.items() if a not in account_ids
    }
    accounts_all = KeySet.of((*account_ids, *member_updates))
    rows = None if kept is None else members_of(kept, member_updates)
    return Closure(KeySet.of(user_ids), accounts_all, member_updates, frozenset(own_rows), rows)


def _other_side(conn: Connection, accounts: Iterable[str], read: RowsRead | None) -> set[str]:
    """The members of ``accounts``, from the memberships table."""
    m = memberships.c
    found: set[str] = set()
    for chunk in KeySet.of(accounts).chunks(_CHUNK):
        rows = conn.execute(select(m.user_id).where(m.account_id.in_(chunk))).scalars().all()
        if read is not None:
            read.memberships += len(rows)
        found.update(rows)
    return found


def ancestors(conn: Connection, keys: Iterable[str], read: RowsRead | None = None) -> set[str]:
    """Every account above ``keys`` by stored parent (a missing parent's id included, the
    walk stopping there and at a cycle), ``keys`` themselves only when they are above one
    another. ``read`` counts the ids as account rows read."""
    a = accounts.c
    found: set[str] = set()
    for chunk in KeySet.of(keys).chunks(_CHUNK):
        seed = select(a.parent_account_id.label("id")).where(
            a.account_id.in_(chunk), a.parent_account_id.is_not(None)
        )
        up = seed.cte("up", recursive=True)
        up = up.union(
            select(a.parent_account_id)
            .join(up, a.account_id == up.c.id)
            .where(a.parent_account_id.is_not(None))
        )
        rows = conn.execute(select(up.c.id)).scalars().all()
        if read is not None:
            read.accounts += len(rows)
        found.update(rows)
    return found


def descendants(
    conn: Connection, keys: Iterable[str], read: RowsRead | None = None, *, depth: int | None = None
) -> set[str]:
    """Every account under ``keys`` by stored parent (``depth`` 1: their children only), ``keys``
    themselves only when they are under one another. ``read`` counts the ids as account rows
    read."""
    a = accounts.c
    found: set[str] = set()
    for chunk in KeySet.of(keys).chunks(_CHUNK):
        if depth == 1:
            query = select(a.account_id).where(a.parent_account_id.in_(chunk))
        else:
            seed = select(a.account_id.label("id")).where(a.parent_account_id.in_(chunk))
            down = seed.cte("down", recursive=True)
            down = down.union(select(a.account_id).join(down, a.parent_account_id == down.c.id))
            query = select(down.c.id)
        rows = conn.execute(query).scalars().all()
        if read is not None:
            read.accounts += len(rows)
        found.update(rows)
    return found


def read_forest(
    engine: Engine,
    accounts_to_resolve: Iterable[str],
    users_to_resolve: Iterable[str],
    *,
    subtrees: bool,
    read: RowsRead | None = None,
) -> list[Account]:
    """The part of the account forest that resolving these accounts and users needs, each
    account once, in no particular order: what :class:`~syncer.policies.hierarchy.Hierarchy`
    builds from.

    That is the accounts to resolve and their children (their whole subtrees with
    ``subtrees``: roll-ups), the accounts the users are members of (a membership shows its
    account's name and parent), and every ancestor of all of these. The set is closed upwards,
    so a parent the store does not have is missing here too, and what the hierarchy says of an
    account to resolve — its ancestors, depth, children, roll-ups, or why it is rejected (a
    cycle, a missing parent, under one) — is what it says with the whole forest. Accounts read
    only for what is above them (ancestors, the users' accounts) are not resolved: their own
    children and roll-ups here may be partial. ``read`` counts the rows read.
    """
    a, m = accounts.c, memberships.c
    wanted = KeySet.of(accounts_to_resolve)
    found: dict[str, Account] = {}
    with engine.connect() as conn:
        below = descendants(conn, wanted, read, depth=None if subtrees else 1)
        seeds = [
            select(a.account_id.label("id")).where(a.account_id.in_(chunk))
            for chunk in KeySet.of({*wanted, *below}).chunks(_CHUNK)
        ]
        seeds += [
            select(m.account_id.label("id")).where(m.user_id.in_(chunk))
            for chunk in KeySet.of(users_to_resolve).chunks(_CHUNK)
        ]
        raw = [type_coerce(c, RawType()).label(c.name) for c in data_columns(accounts)]
        for seed in seeds:
            need = seed.cte("need", recursive=True)
            need = need.union(
                select(a.parent_account_id)
                .join(need, a.account_id == need.c.id)
                .where(a.parent_account_id.is_not(None))
            )
            query = select(*raw).join_from(accounts, need, a.account_id == need.c.id)
            rows = conn.execute(query).all()
            if read is not None:
                read.accounts += len(rows)
            for row in rows:
                if row[0] not in found:
                    found[row[0]] = account_from_row(row)
    return list(found.values())


__all__ = ["Closure", "affected", "ancestors", "descendants", "read_forest"]
