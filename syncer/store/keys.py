"""What an incremental run reads: a set of keys, and a count of the store rows read.

A :class:`KeySet` is the other way, beside :class:`syncer.db.KeyRange`, to tell the store's
readers which records to stream: exactly these keys (the closure of a change, see
:mod:`syncer.store.feed`), still in key order, read by primary key in chunks.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class KeySet:
    """Exactly these keys, kept sorted in code-point order (the readers' order) and unique."""

    keys: tuple[str, ...] = ()

    @classmethod
    def of(cls, keys: Iterable[str]) -> KeySet:
        """The set of ``keys`` (any order, repeats allowed)."""
        return cls(tuple(sorted(set(keys))))

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        i = bisect_left(self.keys, key)
        return i < len(self.keys) and self.keys[i] == key

    def chunks(self, size: int) -> Iterator[tuple[str, ...]]:
        """The keys in order, ``size`` at a time."""
        for start in range(0, len(self.keys), size):
            yield self.keys[start : start + size]


@dataclass(slots=True)
class RowsRead:
    """Store rows read, by table: the cost of a plan that ``syncer plan --json`` reports."""

    users: int = 0
    accounts: int = 0
    memberships: int = 0
    extra: dict[str, int] = field(default_factory=dict)  # feed and tombstone rows, by table
    #: kept member token rows read from the sync state instead of members from the store
    #: (:mod:`syncer.engine.member_tokens`)
    member_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        """``{"users": N, "accounts": N, "memberships": N}``, and ``"member_tokens": N`` when
        some were read."""
        out = {"users": self.users, "accounts": self.accounts, "memberships": self.memberships}
        if self.member_tokens:
            out["member_tokens"] = self.member_tokens
        return out
