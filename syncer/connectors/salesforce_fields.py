"""Salesforce's field schema for ``ensure``: which describe types hold what syncer writes, the
Tooling API metadata of the custom fields syncer creates, and what is wrong with a field that
exists already."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from syncer.connectors.base import EnsureReport
from syncer.fields import FieldSpec, FieldType

__all__ = ["LONG_TEXT_MAX", "SUFFIX", "ensure_fields", "full_companions"]

SUFFIX = "__c"  # Salesforce's custom field names end so
LONG_TEXT_MAX = 131_072
# Optional Long Text Area companions of the token fields: the full list for display (reports,
# list views and SOQL cannot filter Long Text, so the Text(255) field stays the one to filter).
_FULL = FieldSpec("full", FieldType.TOKENS, max_length=LONG_TEXT_MAX, companions=False)
# The describe ``type`` values that hold what each syncer field type writes.
_DESCRIBE_TYPES: dict[FieldType, frozenset[str]] = {
    FieldType.STRING: frozenset({"string"}),
    FieldType.TOKENS: frozenset({"string"}),
    FieldType.ENUM: frozenset({"string", "picklist"}),
    FieldType.EMAIL: frozenset({"email"}),
    FieldType.NUMBER: frozenset({"double", "int", "currency", "percent"}),
    FieldType.BOOL: frozenset({"boolean"}),
    FieldType.DATE: frozenset({"date"}),
    FieldType.DATETIME: frozenset({"datetime"}),
}
# syncer field type → Salesforce custom field metadata for ensure.
_FIELD_TYPES: dict[FieldType, dict[str, Any]] = {
    FieldType.STRING: {"type": "Text", "length": 255},
    FieldType.TOKENS: {"type": "Text", "length": 255},
    FieldType.EMAIL: {"type": "Email"},
    FieldType.NUMBER: {"type": "Number", "precision": 18, "scale": 2},
    FieldType.BOOL: {"type": "Checkbox", "defaultValue": False},
    FieldType.DATE: {"type": "Date"},
    FieldType.DATETIME: {"type": "DateTime"},
    FieldType.ENUM: {"type": "Text", "length": 255},
}


def full_companions(*names: str) -> dict[str, FieldSpec]:
    """Long Text Area fields that hold a token list whole (see ``_FULL``)."""
    return {name: dataclasses.replace(_FULL, name=name) for name in names}


def ensure_fields(
    describe: Mapping[str, Any],
    create: Callable[[str, dict[str, Any]], bool | str] | None,
    *,
    object_name: str,
    key_field: str,
    fields: Sequence[FieldSpec],
) -> EnsureReport:
    """Check ``fields`` against the object's ``describe``; create missing custom ones with
    ``create(name, metadata)`` (None: creation is off — say exactly what an admin must add).
    ``create`` answers True (made), False (it exists, hidden by field-level security) or the
    refusal's text."""
    have = {f["name"]: f for f in describe["fields"]}
    report = EnsureReport()
    wanted = {f.name: f for f in fields}
    wanted.setdefault(key_field, FieldSpec(key_field))
    for name, field in wanted.items():
        if name in have:
            problem = _check_field(object_name, field, have[name], key_field)
            (report.problems if problem else report.existing).append(problem or name)
            continue
        if not name.endswith(SUFFIX):
            report.problems.append(f"standard field {object_name}.{name} does not exist")
            continue
        metadata = {**_metadata(field), "label": name[: -len(SUFFIX)].replace("_", " ")}
        if name == key_field:
            metadata.update(externalId=True, unique=True, caseSensitive=True)
        if create is None:
            report.problems.append(
                f"add {object_name}.{name}: {metadata['type']}"
                + (f"({metadata['length']})" if "length" in metadata else "")
                + (", External ID, Unique" if name == key_field else "")
                + " and grant the integration user Read and Edit on it — or set "
                "allow_create_fields: true to let syncer create and grant it"
            )
            continue
        outcome = create(name, metadata)
        if isinstance(outcome, str):
            report.problems.append(outcome)
        else:
            (report.created if outcome else report.existing).append(name)
    return report


def _long(field: FieldSpec) -> bool:
    return field.type in (FieldType.STRING, FieldType.TOKENS) and (field.max_length or 0) > 255


def _metadata(field: FieldSpec) -> dict[str, Any]:
    """Tooling API metadata of the custom field that holds ``field``."""
    if _long(field):
        length = min(field.max_length or LONG_TEXT_MAX, LONG_TEXT_MAX)
        return {"type": "LongTextArea", "length": length, "visibleLines": 5}
    return dict(_FIELD_TYPES[field.type])


def _check_field(
    object_name: str, spec: FieldSpec, field: Mapping[str, Any], key_field: str
) -> str | None:
    """What is wrong with an existing field for what syncer writes into it, if anything."""
    name = spec.name
    if name == key_field and not (field.get("externalId") and field.get("unique")):
        return f"field {name} exists but is not External ID + Unique; syncer upserts by it"
    if not name.endswith(SUFFIX):
        return None  # standard fields: Salesforce's own types (Website is a Url)
    kind = field.get("type")
    wanted = frozenset({"textarea"}) if _long(spec) else _DESCRIBE_TYPES[spec.type]
    if kind not in wanted:
        return (
            f"field {object_name}.{name} is of type {kind!r}, syncer writes {spec.type} values "
            f"({' or '.join(sorted(wanted))}): change the field's type or the mapping's"
        )
    length = int(field.get("length") or 0)
    if kind in ("string", "textarea") and spec.max_length and length < spec.max_length:
        return (
            f"field {object_name}.{name} holds {length} characters, syncer formats up to "
            f"{spec.max_length}: make it longer or set max_length: {length} in the mapping"
        )
    return None
