"""Bad data in the store that a run cannot use, as values: the record it affects is rejected
(not sent, reported with the reason) and the run goes on — docs/loading.md, "Bad values written
outside `syncer load`". A leaf module: the model, the store readers and the policies share it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BadValue",
    "StoreRejection",
    "UnreadableAttributes",
    "UnreadableTimestamp",
    "not_a_number",
    "unreadable_below",
]


@dataclass(frozen=True, slots=True)
class StoreRejection:
    """Why a resolved record cannot sync: bad data in the store's column ``field`` (a cycle, an
    unknown stage, a roll-up that is not a number); ``reason`` says where, what and the fix."""

    field: str
    reason: str


class UnreadableAttributes(dict[str, Any]):
    """Stored ``attributes`` that are not a JSON object (text another job wrote into SQLite):
    read as empty, with the stored ``text`` and the decoder's ``error``; the resolver rejects
    the record and the hierarchy its ancestors (their roll-ups cannot include it)."""

    def __init__(self, text: str, error: str) -> None:
        super().__init__()
        self.text, self.error = text, error

    def rejection(self, table: str, key: str) -> StoreRejection:
        """The rejection of the record ``key`` of ``table`` that holds these attributes."""
        return StoreRejection(
            "attributes",
            f"{table}.attributes of {key!r} is not a JSON object ({self.error}): "
            f"{_show(self.text)}; "
            'store a JSON object there, e.g. {} or {"plan": "pro"}',
        )


class UnreadableTimestamp(dict[str, Any]):
    """The attributes (kept whole: the roll-ups still read them) of a record with a stored
    timestamp that is not one: its own, or one of its memberships' (``column``, e.g.
    ``memberships.joined_at``, of the row ``where`` names), text another job wrote into SQLite.
    The resolver rejects that record alone; its ancestors' roll-ups are unaffected."""

    def __init__(self, attributes: Mapping[str, Any], column: str, where: str, value: object):
        super().__init__(attributes)
        self.column, self.where, self.value = column, where, value

    def rejection(self, table: str, key: str) -> StoreRejection:
        """The record's rejection (as :meth:`UnreadableAttributes.rejection`; the row that holds
        the value, perhaps a membership, was named when it was read)."""
        return StoreRejection(
            self.column.rpartition(".")[2],
            f"{self.column} of {self.where} is {_show(self.value)}, not a timestamp: store an "
            "ISO 8601 timestamp there (2024-01-31 12:00:00 in UTC, or with its offset, "
            "2024-01-31T12:00:00+02:00) or NULL",
        )


BadValue = tuple[str, StoreRejection | None, StoreRejection]
"""An account with a bad value: its own rejection (None: the resolver gives it) and the one
every ancestor inherits."""


def not_a_number(aid: str, attr: str, agg: str, value: object) -> BadValue:
    """Account ``aid``'s roll-up attribute ``attr`` holds ``value``, which is not a number."""
    column, shown = f"attributes.{attr}", _show(value)
    own = (
        f"accounts.{column} of account {aid!r} is {shown}, not a number; it rolls up ({agg}) to "
        'the parent accounts: store a finite JSON number (12 or 12.5, not "12") or remove it'
    )
    inherited = (
        f"roll-up of {attr!r} ({agg}) includes account {aid!r}, whose accounts.{column} is "
        f"{shown}, not a number: fix that account and this one syncs"
    )
    return aid, StoreRejection(column, own), StoreRejection(column, inherited)


def unreadable_below(aid: str) -> BadValue:
    """Account ``aid``'s attributes are not a JSON object: its ancestors' roll-ups lack them."""
    inherited = (
        f"the roll-ups include account {aid!r}, whose accounts.attributes is not a JSON object: "
        "fix that account and this one syncs"
    )
    return aid, None, StoreRejection("attributes", inherited)


def _show(value: object) -> str:
    text = repr(value)  # cut: a stored value may be a whole document
    return text if len(text) <= 60 else text[:57] + "..."
