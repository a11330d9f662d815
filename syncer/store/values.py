"""What one input row means for one table: the :class:`Patch`, and the value parsers behind it.

A patch names a record by key and carries only what the input said about it. Columns the input
did not mention are left as they are in the store; a provided empty value clears the column;
attributes merge key by key (a ``None`` value removes the key). That makes loading idempotent
(the same patch applied twice gives the same row) and lets several partial sources (a CSV of
accounts, Segment ``group`` calls) describe the same record.

Value rules, shared by the CSV, JSON Lines and Segment readers:

* keys (and ``parent_account_id``) are trimmed; a JSON integer is accepted as its decimal text.
* stages are trimmed and stored as given; :mod:`syncer.store.rules` checks them against the
  ladder (the configured one with ``syncer load --config``, else the default).
* timestamps are ISO 8601 dates or date-times (``2024-03-31``, ``2024-03-31T09:30:00Z``,
  ``…+02:00``), stored in UTC; a date-time without offset is read as UTC.
* other text is stored exactly as given (an email with capitals or spaces stays so: the field
  formatters normalise at sync time); a blank value is ``NULL``. An email must be an address
  the formatters accept (:func:`syncer.fields.normalize_email`), so a bad one is refused here,
  with its file and line, not at every sync.
* no text (key, value or attribute, at any depth) may hold a control character (NUL, ESC, ...);
  tab, line feed and carriage return are allowed except in keys.
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

from syncer.errors import Problem
from syncer.fields import normalize_email
from syncer.store.schema import accounts, data_columns, identities, memberships, users
from syncer.tokens import InvalidValue


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
    emails: frozenset[str] = frozenset()  # checked as addresses (stored as given)
    has_attributes: bool = False

    @property
    def all_columns(self) -> tuple[str, ...]:
        extra = ("attributes",) if self.has_attributes else ()
        return self.key + self.columns + extra

    def max_length(self, column: str) -> int | None:
        col_type = self.table.c[column].type
        return col_type.length if isinstance(col_type, String) else None


def _described_spec(table: Table, stage: str, **checks: frozenset[str]) -> TableSpec:
    """The spec of an account or user table: keyed by its one primary-key column, every other
    column but ``attributes`` a value, unknown input columns attributes."""
    (key,) = (c.name for c in table.primary_key.columns)
    return TableSpec(
        str(table.name),
        table,
        key=(key,),
        columns=tuple(c.name for c in data_columns(table) if c.name not in (key, "attributes")),
        required=(key,),
        timestamps=frozenset({"created_at", "updated_at"}),
        stages=frozenset({stage}),
        has_attributes=True,
        **checks,
    )


SPECS: dict[str, TableSpec] = {
    "accounts": _described_spec(accounts, "stage", refs=frozenset({"parent_account_id"})),
    "users": _described_spec(users, "lead_stage", emails=frozenset({"email"})),
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


@dataclass(slots=True)
class ParsedRow:
    """One data row (CSV record or JSON line) and what it says, or why it is bad."""

    line: int
    patches: list[Patch] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    key: tuple[str, ...] | None = None  # the row's own key when known, even if it is bad
    ignored: bool = False  # a Segment call syncer has no use for (track, page, anonymous, ...)


class BadValue(ValueError):
    """A value that cannot be stored; the message says what was expected, ``hint`` (when the
    message alone does not) what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


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
        return no_control(value.strip(), _KEY_CONTROL) or None
    raise BadValue(f"expected an id (text or integer), got {_json_type(value)}")


def text_value(value: Any) -> str | None:
    """Text stored as given; blank text (or ``null``) is ``None``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadValue(f"expected text, got {_json_type(value)} {value!r}")
    return no_control(value) if value.strip() else None


# Control characters are never data: a NUL cuts text short in C-based tools (and PostgreSQL
# refuses it), the others are invisible in every CRM. Tab, line feed and carriage return are
# text in a long value (a note, an address); in a key none is.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_KEY_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_NAMES = {0: "NUL", 9: "TAB", 10: "line feed", 13: "carriage return", 0x7F: "DEL"}


def no_control(text: str, pattern: re.Pattern[str] = _CONTROL) -> str:
    """``text`` unchanged; :class:`BadValue` naming the first control character it holds."""
    found = pattern.search(text)
    if found is None:
        return text
    code = ord(found.group())
    name = _CONTROL_NAMES.get(code, "a control character")
    raise BadValue(
        f"holds U+{code:04X} ({name}) at character {found.start() + 1}; control characters "
        "are not text",
        hint="remove it from the source (an export that wrote binary data, or a stray byte)",
    )


_INT = re.compile(r"-?[1-9][0-9]{0,14}|0")
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")


def cell_attribute(text: str) -> Any:
    """A CSV cell as an attribute value: a number when that loses nothing, else the text."""
    if not text.strip():
        return None
    no_control(text)
    if _INT.fullmatch(text):
        return int(text)
    if _DECIMAL.fullmatch(text) and len(text) <= 17:
        number = float(text)
        if repr(number) == text:
            return number
    return text


def json_attribute(value: Any) -> Any:
    """A JSON value as an attribute value; :class:`BadValue` for a non-finite number (not
    storable as JSON) or text holding a control character, at any depth."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            no_control(item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise BadValue(f"{item!r} is not a JSON number")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
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
        if value is not None and column in spec.emails:
            try:
                normalize_email(value)
            except InvalidValue as exc:
                raise BadValue(
                    str(exc).split(";")[0],
                    hint="fix the address in the source, or leave it empty",
                ) from None
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
