"""Per-member token rows of account records, and when each account's were taken.

``sync_member_tokens`` holds, per (destination, object, account), each member's encoded tokens
for the object's member token fields (:class:`syncer.mapping.member_tokens.MemberTokenFields`
makes and reads the text); ``sync_member_token_accounts`` stamps each account with the feed
position and config hash of the run that wrote its rows. An account's rows and stamp are always
written in one transaction.

The rows are derived from the store alone, so a run writes them as it computes them,
acknowledged or not; and an account's rows, once written with the run's config hash, stay
current. Why: a run records its feed position only once it completed, and a completed run
rewrote the rows of every account its window's changes reach (each is in its closure, and its
pass over the accounts writes or drops the rows of every account it holds: the engine's
:mod:`syncer.engine.member_tokens`). So every change at or below the recorded position is in the
rows, and a change after it is in the next run's window, which applies it again (a crashed run's
rows, written after the recorded position, included). A change of the mapping, policies or
config changes the hash: such rows are not used, and the full run that follows rewrites them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import bindparam, delete, inspect, select
from sqlalchemy.engine import Connection, Engine

from syncer.db import KeyRange, chunked, upsert
from syncer.state.database import key_chunks
from syncer.state.schema import sync_member_token_accounts, sync_member_tokens

__all__ = ["MemberTokenStore", "TokenWrites"]

_ROWS = sync_member_tokens
_STAMPS = sync_member_token_accounts


@dataclass(slots=True)
class TokenWrites:
    """Member token rows to write for one object: accounts whose rows are replaced whole (a
    rebuilt account: ``user_id → tokens``), accounts whose changed members are updated (``None``:
    the member is gone from the account's rows) and accounts whose rows are dropped (their
    tokens could not be kept: the next run rebuilds them)."""

    replaced: dict[str, dict[str, str]] = field(default_factory=dict)
    updated: dict[str, dict[str, str | None]] = field(default_factory=dict)
    dropped: set[str] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.replaced) + len(self.updated) + len(self.dropped)

    def clear(self) -> None:
        self.replaced.clear()
        self.updated.clear()
        self.dropped.clear()


class MemberTokenStore:
    """The member token tables of one sync-state database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def exists(self) -> bool:
        """Whether the tables exist (a state made before them has none until its next run)."""
        return inspect(self.engine).has_table(_STAMPS.name)

    def load(
        self,
        destination: str,
        object_name: str,
        accounts: Iterable[str],
        *,
        config_hash: str,
    ) -> dict[str, dict[str, str]]:
        """The rows (``user_id → tokens``) of those of ``accounts`` whose stamp is current: of
        ``config_hash`` (the module docstring says why that is enough). An account with a
        current stamp and no members has an empty dict; one without is left out."""
        wanted = set(accounts)
        if not wanted or not self.exists():
            return {}
        s, r = _STAMPS.c, _ROWS.c
        found: dict[str, dict[str, str]] = {}
        with self.engine.connect() as conn:
            for chunk in key_chunks(wanted):
                valid = (
                    conn.execute(
                        select(s.account_id).where(
                            s.destination == destination,
                            s.object == object_name,
                            s.account_id.in_(chunk),
                            s.config_hash == config_hash,
                        )
                    )
                    .scalars()
                    .all()
                )
                for account in valid:
                    found[account] = {}
                if not valid:
                    continue
                result = conn.execute(
                    select(r.account_id, r.user_id, r.tokens).where(
                        r.destination == destination,
                        r.object == object_name,
                        r.account_id.in_(valid),
                    )
                )
                try:  # the driver's tuples: three texts a row, no Row objects
                    rows = result.cursor.fetchall()
                finally:
                    result.close()
                for account, user, tokens in rows:
                    found[account][user] = tokens
        return found

    def save(
        self,
        destination: str,
        object_name: str,
        writes: TokenWrites,
        *,
        position: int,
        config_hash: str,
    ) -> None:
        """Write ``writes`` in one transaction, every account written stamped with
        ``position`` and ``config_hash``."""
        if not writes:
            return
        keys = ["destination", "object", "account_id"]
        base = {"destination": destination, "object": object_name}
        added = [
            {**base, "account_id": a, "user_id": u, "tokens": t}
            for a, members in writes.replaced.items()
            for u, t in members.items()
        ]
        changed = [
            {**base, "account_id": a, "user_id": u, "tokens": t}
            for a, members in writes.updated.items()
            for u, t in members.items()
            if t is not None
        ]
        left = [
            {"d": destination, "o": object_name, "a": a, "u": u}
            for a, members in writes.updated.items()
            for u, t in members.items()
            if t is None
        ]
        stamps: list[dict[str, object]] = [
            {**base, "account_id": a, "position": position, "config_hash": config_hash}
            for a in (*writes.replaced, *writes.updated)
        ]
        r = _ROWS.c
        with self.engine.begin() as conn:
            self._delete(conn, destination, object_name, [*writes.replaced, *writes.dropped])
            self._delete(conn, destination, object_name, writes.dropped, stamps=True)
            for rows in chunked(added, 5000):
                conn.execute(_ROWS.insert(), list(rows))
            if left:
                conn.execute(
                    delete(_ROWS).where(
                        r.destination == bindparam("d"),
                        r.object == bindparam("o"),
                        r.account_id == bindparam("a"),
                        r.user_id == bindparam("u"),
                    ),
                    left,
                )
            for rows in chunked(changed, 5000):
                upsert(conn, _ROWS, list(rows), [*keys, "user_id"], only_if_changed=False)
            for part in chunked(stamps, 5000):
                upsert(conn, _STAMPS, list(part), keys, only_if_changed=False)

    def clear(self, destination: str, object_name: str, keys: KeyRange) -> None:
        """Forget the rows of the accounts in ``keys`` (a pass over the range writes them all
        again)."""
        if not self.exists():
            return
        with self.engine.begin() as conn:
            for table in (_ROWS, _STAMPS):
                c = table.c
                conn.execute(
                    delete(table).where(
                        c.destination == destination,
                        c.object == object_name,
                        *keys.conditions(c.account_id, conn),
                    )
                )

    def reset(self, destination: str, object_name: str | None = None) -> None:
        """Forget the destination's rows (one object's, or all)."""
        if not self.exists():
            return
        with self.engine.begin() as conn:
            for table in (_ROWS, _STAMPS):
                stmt = delete(table).where(table.c.destination == destination)
                if object_name is not None:
                    stmt = stmt.where(table.c.object == object_name)
                conn.execute(stmt)

    @staticmethod
    def _delete(
        conn: Connection,
        destination: str,
        object_name: str,
        accounts: Iterable[str],
        *,
        stamps: bool = False,
    ) -> None:
        table = _STAMPS if stamps else _ROWS
        c = table.c
        for chunk in key_chunks(set(accounts)):
            conn.execute(
                delete(table).where(
                    c.destination == destination, c.object == object_name, c.account_id.in_(chunk)
                )
            )
