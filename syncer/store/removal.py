"""``syncer store delete``: remove users, accounts and memberships from the store by key.

One transaction: every key is checked first, and one that does not exist (or an account that
still has child accounts) refuses the whole command, naming each problem, with nothing deleted.
A user or an account takes its memberships and its identities with it. The next run of each
destination then clears or archives the records that left the store, as its ``removal`` setting
says (and removes the associations syncer made for the memberships).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Column, and_, delete, select, tuple_
from sqlalchemy.engine import Connection, Engine

from syncer.errors import BadInputError, Problem
from syncer.store.schema import accounts, identities, memberships, users

MembershipKey = tuple[str, str]


DeleteReport = dict[str, int]
"""How many rows one delete removed, by table (``users``, ``accounts``, ``memberships``,
``identities``; cascaded ones included)."""


@dataclass(slots=True)
class DeleteKeys:
    """What to delete: user ids, account ids, (user_id, account_id) pairs."""

    users: list[str]
    accounts: list[str]
    memberships: list[MembershipKey]

    def __bool__(self) -> bool:
        return bool(self.users or self.accounts or self.memberships)


def parse_membership(text: str) -> MembershipKey:
    """``"u1:a2"`` as ``("u1", "a2")``; :class:`BadInputError` unless it has exactly one colon
    between two non-blank ids."""
    parts = text.split(":")
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        raise BadInputError(
            Problem(
                f"membership {text!r} is not USER_ID:ACCOUNT_ID",
                hint="e.g. --membership u1:ACME; for ids that hold a colon use --from FILE "
                "(a CSV with user_id and account_id columns)",
            )
        )
    return parts[0].strip(), parts[1].strip()


def keys_from_file(path: Path) -> DeleteKeys:
    """The keys a CSV file names: columns ``user_id`` and/or ``account_id``; a row with both is
    a membership, with one a user or an account."""
    keys = DeleteKeys([], [], [])
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or []]
            unknown = [h for h in header if h not in ("user_id", "account_id")]
            if not header or unknown:
                raise BadInputError(
                    Problem(
                        f"the header names {', '.join(unknown) or 'no column'}; expected "
                        "user_id and/or account_id",
                        str(path),
                        1,
                        hint="one key per row: user_id for a user, account_id for an account, "
                        "both for a membership",
                    )
                )
            for line, row in enumerate(reader, start=2):
                cells = {k.strip(): (v or "").strip() for k, v in row.items() if k}
                user, account = cells.get("user_id", ""), cells.get("account_id", "")
                if user and account:
                    keys.memberships.append((user, account))
                elif user:
                    keys.users.append(user)
                elif account:
                    keys.accounts.append(account)
                elif any(cells.values()) or len(row) > len(cells):
                    raise BadInputError(Problem("a row without a key", str(path), line))
    except FileNotFoundError:
        raise BadInputError(Problem("no such file", str(path))) from None
    except UnicodeDecodeError as exc:
        raise BadInputError(
            Problem(f"not valid UTF-8 ({exc.reason})", str(path), hint="save it as UTF-8")
        ) from None
    return keys


def delete_records(engine: Engine, keys: DeleteKeys) -> DeleteReport:
    """Delete ``keys`` in one transaction; :class:`BadInputError` (nothing deleted) naming
    every key that does not exist and every account that would leave child accounts behind."""
    report: DeleteReport = dict.fromkeys(("users", "accounts", "memberships", "identities"), 0)
    user_ids, account_ids = sorted(set(keys.users)), sorted(set(keys.accounts))
    pairs = sorted(set(keys.memberships))
    with engine.begin() as conn:
        problems = _check(conn, user_ids, account_ids, pairs)
        if problems:
            raise BadInputError(problems, summary="nothing was deleted")
        m, i = memberships.c, identities.c
        # Memberships first, counted here: the cascades below would take them silently.
        for chunk in _chunks(pairs):
            report["memberships"] += _count_deleted(
                conn, delete(memberships).where(tuple_(m.user_id, m.account_id).in_(chunk))
            )
        for entity, ids, table, column, member_col in (
            ("user", user_ids, users, users.c.user_id, m.user_id),
            ("account", account_ids, accounts, accounts.c.account_id, m.account_id),
        ):
            for chunk in _chunks(ids):
                report["memberships"] += _count_deleted(
                    conn, delete(memberships).where(member_col.in_(chunk))
                )
                report["identities"] += _count_deleted(
                    conn,
                    delete(identities).where(and_(i.entity == entity, i.entity_id.in_(chunk))),
                )
                report[str(table.name)] += _count_deleted(
                    conn, delete(table).where(column.in_(chunk))
                )
    return report


def _check(
    conn: Connection, user_ids: list[str], account_ids: list[str], pairs: list[MembershipKey]
) -> list[Problem]:
    problems: list[Problem] = []
    for what, ids, column in (
        ("user", user_ids, users.c.user_id),
        ("account", account_ids, accounts.c.account_id),
    ):
        for key in sorted(set(ids) - _existing(conn, column, ids)):
            problems.append(
                Problem(f"no {what} {key!r} in the store", key=key, hint="check the id")
            )
    m = memberships.c
    found: set[MembershipKey] = set()
    for chunk in _chunks(pairs):
        query = select(m.user_id, m.account_id).where(tuple_(m.user_id, m.account_id).in_(chunk))
        found.update((u, a) for u, a in conn.execute(query))
    for user, account in pairs:
        if (user, account) not in found:
            problems.append(
                Problem(
                    f"no membership of user {user!r} in account {account!r}",
                    key=f"{user}:{account}",
                    hint="`syncer explain user ID` lists a user's memberships",
                )
            )
    going = set(account_ids)
    a = accounts.c
    for chunk in _chunks(account_ids):
        query = select(a.parent_account_id, a.account_id).where(a.parent_account_id.in_(chunk))
        children: dict[str, list[str]] = {}
        for parent, child in conn.execute(query.order_by(a.account_id)):
            if child not in going:
                children.setdefault(parent, []).append(child)
        for parent, kids in sorted(children.items()):
            problems.append(
                Problem(
                    f"account {parent!r} is the parent of {', '.join(map(repr, kids))}",
                    key=parent,
                    hint="delete those too (--account), or change their parent_account_id "
                    "first: a child of a deleted account would be rejected at every run",
                )
            )
    return problems


def _existing(conn: Connection, column: Column[Any], ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(ids):
        found.update(conn.execute(select(column).where(column.in_(chunk))).scalars())
    return found


def _count_deleted(conn: Connection, statement: Any) -> int:
    return int(conn.execute(statement).rowcount or 0)


def _chunks(items: Sequence[Any], size: int = 500) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


__all__ = ["DeleteKeys", "DeleteReport", "delete_records", "keys_from_file", "parse_membership"]
