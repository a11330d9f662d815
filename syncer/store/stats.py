"""Shape figures of the canonical store, for ``syncer store stats``: row counts and a few
counts of odd rows (an account under an unknown parent, a user without email)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, exists, func, select
from sqlalchemy.engine import Engine

from syncer.store.schema import accounts, identities, memberships, users


def store_stats(engine: Engine) -> dict[str, int]:
    """Row counts and a few shape figures of the store, for ``syncer store stats``."""
    m, a, u = memberships, accounts, users
    parent = a.alias("parent")
    has_membership = exists().where(m.c.user_id == u.c.user_id)
    has_member = exists().where(m.c.account_id == a.c.account_id)
    parent_known = exists().where(parent.c.account_id == a.c.parent_account_id)
    counts: dict[str, Any] = {
        "accounts": select(func.count()).select_from(a),
        "users": select(func.count()).select_from(u),
        "memberships": select(func.count()).select_from(m),
        "identities": select(func.count()).select_from(identities),
        "accounts_with_parent": select(func.count())
        .select_from(a)
        .where(a.c.parent_account_id.is_not(None)),
        "accounts_with_unknown_parent": select(func.count())
        .select_from(a)
        .where(and_(a.c.parent_account_id.is_not(None), ~parent_known)),
        "accounts_without_members": select(func.count()).select_from(a).where(~has_member),
        "users_without_membership": select(func.count()).select_from(u).where(~has_membership),
        "users_without_email": select(func.count()).select_from(u).where(u.c.email.is_(None)),
        "max_memberships_per_user": select(func.coalesce(func.max(_per("user_id")), 0)),
        "max_members_per_account": select(func.coalesce(func.max(_per("account_id")), 0)),
    }
    with engine.connect() as conn:
        return {name: int(conn.execute(q).scalar_one()) for name, q in counts.items()}


def _per(column: str) -> Any:
    """The per-``column`` membership counts, as a subquery column to take the max of."""
    sub = (
        select(func.count().label("n"))
        .select_from(memberships)
        .group_by(memberships.c[column])
        .subquery()
    )
    return sub.c.n
