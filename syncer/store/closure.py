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
  account of a changed user (its member list shows the user's email and names); every
  ancestor of a changed account (roll-ups, children) — of its old parent too when it moved or
  went; and every descendant of an account that appeared, moved or went (their ancestors, and
  whether they are rejected, change). Roll-ups go up only, so an attribute change does not
  reach the descendants.

Ancestors and descendants follow ``parent_account_id`` as stored, cycles and missing parents
included (the hierarchy keeps rejected accounts' parents), with the hierarchy built from the
store as it is now.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.engine import Engine

from syncer.policies.hierarchy import Hierarchy
from syncer.store.feed import ChangeSet
from syncer.store.keys import KeySet, RowsRead
from syncer.store.schema import memberships

_CHUNK = 500


class Closure(NamedTuple):
    """The users and accounts a change set affects, ready for the readers' ``keys``."""

    users: KeySet
    accounts: KeySet


def affected(
    engine: Engine, changes: ChangeSet, hierarchy: Hierarchy, *, read: RowsRead | None = None
) -> Closure:
    """The users and accounts whose resolved records ``changes`` can alter (see the module
    docstring for the rules), deleted keys included. ``read`` counts the membership rows read.

    ``hierarchy`` is the store's hierarchy now (the one the run resolves with). A change set
    with ``full`` set has no closure: the caller reads everything.
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

    own_users = {*changes.users, *gone_users}  # rows that changed or went
    own_accounts = {*changes.accounts, *gone_accounts}
    user_ids = {*own_users, *(u for u, _ in pairs), *(k for e, k in identity_keys if e == "user")}
    account_ids = {
        *own_accounts,
        *(a for _, a in pairs),
        *(k for e, k in identity_keys if e == "account"),
    }
    user_ids |= _other_side(engine, own_accounts, read, by_account=True)
    account_ids |= _other_side(engine, own_users, read, by_account=False)

    old_parents = {p for p in gone_accounts.values() if p}
    old_parents |= {t.other for t in moved if t.other}
    for start in (*own_accounts, *old_parents):
        account_ids.update(_up(hierarchy, start))
    shaken = {*changes.structural, *gone_accounts, *(t.key for t in moved)}
    if shaken:
        account_ids.update(_down(hierarchy, shaken))
    account_ids.discard("")
    return Closure(KeySet.of(user_ids), KeySet.of(account_ids))


def _other_side(
    engine: Engine, keys: Iterable[str], read: RowsRead | None, *, by_account: bool
) -> set[str]:
    """The members of accounts ``keys`` (``by_account``), or the accounts of users ``keys``,
    from the memberships table."""
    m = memberships.c
    key_col, other = (m.account_id, m.user_id) if by_account else (m.user_id, m.account_id)
    found: set[str] = set()
    ordered = sorted(keys)
    if not ordered:
        return found
    with engine.connect() as conn:
        for start in range(0, len(ordered), _CHUNK):
            chunk = ordered[start : start + _CHUNK]
            rows = conn.execute(select(other).where(key_col.in_(chunk))).scalars().all()
            if read is not None:
                read.memberships += len(rows)
            found.update(rows)
    return found


def _up(hierarchy: Hierarchy, account_id: str) -> list[str]:
    """The account and its stored parent chain (stopping at a cycle or a missing parent)."""
    out: list[str] = []
    seen: set[str] = set()
    node: str | None = account_id
    while node is not None and node not in seen:
        seen.add(node)
        out.append(node)
        node = hierarchy.parent(node)
    return out


def _down(hierarchy: Hierarchy, roots: set[str]) -> set[str]:
    """Every account under ``roots`` by stored parent, the roots included."""
    children: dict[str, list[str]] = {}
    for aid in hierarchy:
        parent = hierarchy.parent(aid)
        if parent is not None:
            children.setdefault(parent, []).append(aid)
    out: set[str] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node in out:
            continue
        out.add(node)
        stack.extend(children.get(node, ()))
    return out


__all__ = ["Closure", "affected"]
