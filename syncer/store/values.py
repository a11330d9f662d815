"""What one input row means for one table: the :class:`Patch`, and the value parsers behind it.

A patch names a record by key and carries only what the input said about it. Columns the input
did not mention are left as they are in the store; a provided empty value clears the column;
attributes merge key by key (a ``None`` value removes the key). That makes loading idempotent
(the same patch applied twice gives the same row) and lets several partial sources (a CSV of
accounts, Segment ``group`` calls) describe the same record.

Value rules, shared by the CSV, JSON Lines and Segment readers:

* keys (and ``parent_account_id``) are trimmed; a JSON integer is accepted as its decimal text.
* stages are trimmed and stored as given: the policies validate them against the configured
  ladder, so a store can hold stages of a ladder that is configured later.
* timestamps are ISO 8601 dates or date-times (``2024-03-31``, ``2024-03-31T09:30:00Z``,
  ``…+02:00``), stored in UTC; a date-time without offset is read as UTC.
* other text is stored exactly as given (an email with capitals or spaces stays so: the field
  formatters normalise at sync time); a blank value is ``NULL``.
* a CSV attribute cell becomes a number only when the number's own text is exactly the cell
  (``25``, ``1200.5``; not ``007``, ``1e3`` or ``1200.50``), so nothing is ever lost; anything
  else stays text. JSON values keep their JSON type.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, Table

from syncer.store.schema import accounts, identities, memberships, users


@dataclass(frozen=True, slots=True)
class TableSpec:
    """How input rows map onto one store table."""

    name: str
    table: Table
    key: tuple[str, ...]
    columns: tuple[str, ...]  # value columns other than ``attributes``
    required: tuple[str, ...]  # columns a file must have (keys, and identities' external_id)
    timestamps: frozenset[str] = frozenset()
    stages: frozenset[str] = frozenset()
    refs: frozenset[str] = frozenset()  # key-like value columns (trimmed like keys)
    has_attributes: bool = False

    @property
    def all_columns(self) -> tuple[str, ...]:
        extra = ("attributes",) if self.has_attributes else ()
        return self.key + self.columns + extra

    def max_length(self, column: str) -> int | None:
        col_type = self.table.c[column].type
        return col_type.length if isinstance(col_type, String) else None


SPECS: dict[str, TableSpec] = {
    "accounts": TableSpec(
        "accounts",
        accounts,
        key=("account_id",),
        columns=("name", "domain", "parent_account_id", "stage", "created_at", "updated_at"),
        required=("account_id",),
        timestamps=frozenset({"created_at", "updated_at"}),
        stages=frozenset({"stage"}),
        refs=frozenset({"parent_account_id"}),
        has_attributes=True,
    ),
    "users": TableSpec(
        "users",
        users,
        key=("user_id",),
        columns=("email", "first_name", "last_name", "lead_stage", "created_at", "updated_at"),
        required=("user_id",),
        timestamps=frozenset({"created_at", "updated_at"}),
        stages=frozenset({"lead_stage"}),
        has_attributes=True,
    ),
    "memberships": TableSpec(
        "memberships",
        memberships,
        key=("user_id", "account_id"),
        columns=("role", "stage", "joined_at", "updated_at"),
        required=("user_id", "account_id"),
        timestamps=frozenset({"joined_at", "updated_at"}),
        stages=frozenset({"stage"}),
    ),
    "identities": TableSpec(
        "identities",
        identities,
        key=("entity", "entity_id", "system"),
        columns=("external_id",),
        required=("entity", "entity_id", "system", "external_id"),
    ),
}

ENTITIES = ("account", "user")


@dataclass(slots=True)
class Patch:
    """What one input row says about one record: provided columns and attribute changes."""

    table: str
    key: tuple[str, ...]
    values: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)  # None removes the attribute
    earliest: dict[str, datetime] = field(default_factory=dict)  # keep min(stored, this)

    def fold(self, later: Patch) -> None:
        """Apply ``later`` (a patch for the same record, read after this one) on top."""
        self.values.update(later.values)
        self.attributes.update(later.attributes)
        for column, ts in later.earliest.items():
            mine = self.earliest.get(column)
            self.earliest[column] = ts if mine is None else min(mine, ts)

    def apply(self, spec: TableSpec, stored: dict[str, Any] | None) -> dict[str, Any]:
        """The full row after this patch, starting from the ``stored`` row (or a new one)."""
        if stored is None:
            row: dict[str, Any] = dict.fromkeys(spec.all_columns)
            row.update(zip(spec.key, self.key, strict=True))
            if spec.has_attributes:
                row["attributes"] = {}
        else:
            row = dict(stored)
        row.update(self.values)
        if self.attributes:
            attrs = dict(row.get("attributes") or {})
            for name, value in self.attributes.items():
                if value is None:
                    attrs.pop(name, None)
                else:
                    attrs[name] = value
            row["attributes"] = attrs
        for column, ts in self.earliest.items():
            current = row[column]
            row[column] = ts if current is None else min(current, ts)
        return row


class BadValue(ValueError):
    """A value that cannot be stored; the message says what was expected."""


def parse_timestamp(text: str) -> datetime:
    """An ISO 8601 date or date-time as an aware UTC datetime (no offset means UTC)."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadValue(
            f"{text!r} is not an ISO 8601 date or date-time "
            "(e.g. 2024-03-31 or 2024-03-31T09:30:00Z)"
        ) from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def key_text(value: Any) -> str | None:
    """A key from input: trimmed text, or a JSON integer's decimal text; ``None`` when blank."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    raise BadValue(f"expected an id (text or integer), got {_json_type(value)}")


def text_value(value: Any) -> str | None:
    """Text stored as given; blank text (or ``null``) is ``None``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadValue(f"expected text, got {_json_type(value)} {value!r}")
    return value if value.strip() else None


_INT = re.compile(r"-?[1-9][0-9]{0,14}|0")
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")


def cell_attribute(text: str) -> Any:
    """A CSV cell as an attribute value: a number when that loses nothing, else the text."""
    if not text.strip():
        return None
    if _INT.fullmatch(text):
        return int(text)
    if _DECIMAL.fullmatch(text) and len(text) <= 17:
        number = float(text)
        if repr(number) == text:
            return number
    return text


def json_attribute(value: Any) -> Any:
    """A JSON value as an attribute value; non-finite numbers cannot be stored as JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        raise BadValue(f"{value!r} is not a JSON number")
    return value


def column_value(spec: TableSpec, column: str, raw: Any) -> Any:
    """A value for ``column`` of ``spec`` from CSV text or a JSON value; :class:`BadValue`."""
    if column in spec.key or column in spec.refs:
        value: Any = key_text(raw)
        if column == "entity" and value is not None:
            value = value.lower()
            if value not in ENTITIES:
                raise BadValue(f"entity must be one of {', '.join(ENTITIES)}, not {raw!r}")
    elif column in spec.timestamps:
        text = text_value(raw)
        value = None if text is None else parse_timestamp(text)
    elif column in spec.stages:
        text = text_value(raw)
        value = None if text is None else text.strip()
    else:
        value = text_value(raw)
    limit = spec.max_length(column)
    if isinstance(value, str) and limit is not None and len(value) > limit:
        raise BadValue(f"is {len(value)} characters long; at most {limit} fit")
    return value


def _json_type(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "text",
    }.get(type(value), type(value).__name__)
