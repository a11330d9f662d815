"""HubSpot's property schema for ``ensure``: syncer's property group, the properties a mapping
writes (created with the type that holds what syncer formats), and what is wrong with a property
someone made before."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from syncer.connectors.base import EnsureReport
from syncer.fields import FieldSpec, FieldType

__all__ = ["ensure_properties"]

#: One call to HubSpot through the connector: (what, the client method, *its arguments, ok=…)
#: → the parsed JSON body ({} for a status in ``ok``).
Request = Callable[..., dict[str, Any]]

# syncer field type → HubSpot property (type, fieldType)
_PROPERTY_TYPES: dict[FieldType, tuple[str, str]] = {
    FieldType.STRING: ("string", "text"),
    FieldType.TOKENS: ("string", "textarea"),
    FieldType.EMAIL: ("string", "text"),
    FieldType.NUMBER: ("number", "number"),
    FieldType.BOOL: ("bool", "booleancheckbox"),
    FieldType.DATE: ("date", "date"),
    FieldType.DATETIME: ("datetime", "date"),
    FieldType.ENUM: ("enumeration", "select"),
}


def ensure_properties(
    request: Request,
    props: Any,
    groups: Any,
    *,
    object_name: str,
    key_field: str,
    group: str,
    fields: Sequence[FieldSpec],
) -> EnsureReport:
    """Create the property group and missing properties; report type mismatches. ``props`` and
    ``groups`` are the client's properties ``CoreApi`` and ``GroupsApi``."""
    report = EnsureReport()
    listed = request("GET groups", groups.get_all_with_http_info, object_name)
    if not any(g.get("name") == group for g in listed["results"]):
        request(
            "POST group",
            groups.create_with_http_info,
            object_name,
            {"name": group, "label": "syncer", "displayOrder": -1},
            ok=(409,),
        )
    existing = {
        p["name"]: p
        for p in request("GET properties", props.get_all_with_http_info, object_name)["results"]
    }
    wanted = {f.name: f for f in fields}
    wanted.setdefault(key_field, FieldSpec(key_field))
    for name, spec in wanted.items():
        kind, field_type = _PROPERTY_TYPES[spec.type]
        have = existing.get(name)
        if have is None:
            body = _property_body(name, spec, kind, field_type, group, unique=name == key_field)
            created = request(
                "POST property", props.create_with_http_info, object_name, body, ok=(409,)
            )
            if created:
                report.created.append(name)
                continue
            # 409: made since we listed them (another run, a person): check what it is.
            have = request(
                f"GET property {name}", props.get_by_name_with_http_info, object_name, name
            )
        problem = _property_problem(name, have, spec, kind, key_field)
        (report.problems if problem else report.existing).append(problem or name)
    return report


def _property_body(
    name: str, spec: FieldSpec, kind: str, field_type: str, group: str, *, unique: bool
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "label": name.replace("_", " "),
        "type": kind,
        "fieldType": field_type,
        "groupName": group,
        "hasUniqueValue": unique,
    }
    if spec.type is FieldType.BOOL:
        body["options"] = [
            {"label": "true", "value": "true", "displayOrder": 0},
            {"label": "false", "value": "false", "displayOrder": 1},
        ]
    elif spec.type is FieldType.ENUM:
        body["options"] = [
            {"label": o, "value": o, "displayOrder": i} for i, o in enumerate(spec.options)
        ]
    return body


def _property_problem(
    name: str, have: Mapping[str, Any], spec: FieldSpec, kind: str, key_field: str
) -> str | None:
    """What is wrong with an existing property for syncer's use of it, if anything."""
    if have.get("type") != kind and not (name == "email" and spec.type is FieldType.EMAIL):
        return (
            f"property {name!r} exists with type {have.get('type')!r}, syncer writes {kind!r}: "
            "change the mapping's type or rename the field"
        )
    if name == key_field and not have.get("hasUniqueValue"):
        return (
            f"property {name!r} exists but is not unique; syncer upserts by it — delete it in "
            "HubSpot so syncer can create it with unique values"
        )
    return None
