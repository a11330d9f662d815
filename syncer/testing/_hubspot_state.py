"""In-memory state of the HubSpot emulator: objects, property definitions, associations.

Not thread-safe on its own: :class:`~syncer.testing.hubspot_emulator.HubSpotEmulator` holds one
lock around every call. Every failure is a :class:`HubSpotError` carrying the status, category
and message HubSpot would answer with; the emulator decides whether it becomes a whole-request
error or one entry of a 207's ``errors``. Items marked [unverified] are reasoned guesses about
HubSpot, not observed behaviour.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

OBJECT_ALIASES = {
    "contacts": "contacts",
    "contact": "contacts",
    "0-1": "contacts",
    "companies": "companies",
    "company": "companies",
    "0-2": "companies",
}
TYPE_IDS = {"contacts": "0-1", "companies": "0-2"}
SINGULAR = {"contacts": "contact", "companies": "company"}
LAST_MODIFIED = {"contacts": "lastmodifieddate", "companies": "hs_lastmodifieddate"}
ALWAYS_RETURNED = ("createdate", "hs_object_id")
DEFAULT_PROPERTIES = {
    "contacts": (
        "createdate",
        "email",
        "firstname",
        "hs_object_id",
        "lastmodifieddate",
        "lastname",
    ),
    "companies": ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
}
TEXT_MAX_CHARS = 65_536
MAX_UNIQUE_PROPERTIES = 10  # per object type [unverified]
PRIMARY, UNLABELED = 1, 279  # contact → company association type ids
COMPANY_PRIMARY, COMPANY_UNLABELED = 2, 280  # the same two, seen from the company
LIFECYCLE_STAGES = (
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
)
FIELD_TYPES = {
    "string": {"text", "textarea", "html", "phonenumber", "file"},
    "number": {"number", "calculation_equation"},
    "date": {"date"},
    "datetime": {"date"},
    "enumeration": {"select", "radio", "checkbox", "booleancheckbox"},
    "bool": {"booleancheckbox"},
}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}$"
)
_STATUS_OF = {
    "VALIDATION_ERROR": 400,
    "OBJECT_NOT_FOUND": 404,
    "CONFLICT": 409,
    "OBJECT_ALREADY_EXISTS": 409,
}


class HubSpotError(Exception):
    """A failure in HubSpot's terms: HTTP status, category, message, context."""

    def __init__(
        self,
        category: str,
        message: str,
        *,
        status: int | None = None,
        context: Mapping[str, list[str]] | None = None,
        errors: list[dict[str, Any]] | None = None,
        sub_category: str | None = None,
    ) -> None:
        super().__init__(message)
        self.category = category
        self.message = message
        self.status = status or _STATUS_OF.get(category, 400)
        self.context = dict(context or {})
        self.errors = list(errors or [])
        self.sub_category = sub_category

    def body(self, correlation_id: str) -> dict[str, Any]:
        """The JSON body of a whole-request error."""
        body: dict[str, Any] = {
            "status": "error",
            "message": self.message,
            "correlationId": correlation_id,
            "category": self.category,
        }
        if self.sub_category:
            body["subCategory"] = self.sub_category
        if self.context:
            body["context"] = self.context
        if self.errors:
            body["errors"] = self.errors
        return body

    def standard_error(self, context: Mapping[str, list[str]]) -> dict[str, Any]:
        """One entry of a 207's ``errors``; the client requires every one of these fields."""
        item: dict[str, Any] = {
            "status": "error",
            "category": self.category,
            "message": self.message,
            "context": {**self.context, **context},
            "errors": self.errors,
            "links": {},
        }
        if self.sub_category:
            item["subCategory"] = self.sub_category
        return item


def timestamp(moment: datetime) -> str:
    """HubSpot's timestamp format: ISO 8601, UTC, milliseconds, ``Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def property_definition(
    name: str,
    label: str,
    type_: str,
    field_type: str,
    group: str,
    *,
    created_at: str,
    unique: bool = False,
    read_only: bool = False,
    hubspot_defined: bool = True,
    options: Iterable[Mapping[str, Any]] = (),
    description: str = "",
) -> dict[str, Any]:
    """A property in the JSON shape of ``GET /crm/v3/properties/{type}/{name}``."""
    return {
        "name": name,
        "label": label,
        "type": type_,
        "fieldType": field_type,
        "description": description,
        "groupName": group,
        "options": [
            {
                "label": str(o.get("label", o.get("value"))),
                "value": str(o.get("value")),
                "displayOrder": int(o.get("displayOrder", i)),
                "hidden": bool(o.get("hidden", False)),
            }
            for i, o in enumerate(options)
        ],
        "displayOrder": -1,
        "calculated": False,
        "externalOptions": False,
        "hasUniqueValue": unique,
        "hidden": False,
        "hubspotDefined": hubspot_defined,
        "modificationMetadata": {
            "archivable": not hubspot_defined,
            "readOnlyDefinition": hubspot_defined,
            "readOnlyValue": read_only,
        },
        "formField": not read_only,
        "createdAt": created_at,
        "updatedAt": created_at,
        "archived": False,
    }


def _builtin_properties(created_at: str) -> dict[str, dict[str, dict[str, Any]]]:
    def text(name: str, label: str, group: str) -> dict[str, Any]:
        return property_definition(name, label, "string", "text", group, created_at=created_at)

    def system(
        name: str, label: str, type_: str, group: str, unique: bool = False
    ) -> dict[str, Any]:
        field_type = "number" if type_ == "number" else "date"
        return property_definition(
            name,
            label,
            type_,
            field_type,
            group,
            created_at=created_at,
            unique=unique,
            read_only=True,
        )

    stages = [{"label": s, "value": s, "displayOrder": i} for i, s in enumerate(LIFECYCLE_STAGES)]
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for otype, group, fields in (
        (
            "contacts",
            "contactinformation",
            [
                ("email", "Email"),
                ("firstname", "First Name"),
                ("lastname", "Last Name"),
                ("phone", "Phone Number"),
                ("company", "Company Name"),
                ("website", "Website URL"),
                ("jobtitle", "Job Title"),
            ],
        ),
        (
            "companies",
            "companyinformation",
            [
                ("name", "Name"),
                ("domain", "Company Domain Name"),
                ("website", "Website URL"),
                ("phone", "Phone Number"),
                ("industry", "Industry"),
                ("city", "City"),
                ("country", "Country/Region"),
                ("description", "Description"),
            ],
        ),
    ):
        props = {name: text(name, label, group) for name, label in fields}
        props["lifecyclestage"] = property_definition(
            "lifecyclestage",
            "Lifecycle Stage",
            "enumeration",
            "radio",
            group,
            created_at=created_at,
            options=stages,
        )
        props["createdate"] = property_definition(
            "createdate", "Create Date", "datetime", "date", group, created_at=created_at
        )
        props[LAST_MODIFIED[otype]] = system(
            LAST_MODIFIED[otype], "Last Modified Date", "datetime", group
        )
        props["hs_object_id"] = system("hs_object_id", "Record ID", "number", group, unique=True)
        result[otype] = props
    # HubSpot lets a write of associatedcompanyid move the primary company; the emulator keeps
    # it read-only and derived from the primary association, to keep one way of doing that.
    result["contacts"]["associatedcompanyid"] = system(
        "associatedcompanyid", "Primary Associated Company ID", "number", "contactinformation"
    )
    for name in ("numberofemployees", "annualrevenue"):
        result["companies"][name] = property_definition(
            name, name, "number", "number", "companyinformation", created_at=created_at
        )
    return result


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One contact or company: non-empty property values as strings, plus timestamps."""

    id: str
    properties: Mapping[str, str]
    created_at: str
    updated_at: str

    def to_json(self, names: Iterable[str] | None = None) -> dict[str, Any]:
        """SimplePublicObject JSON; ``names`` selects properties (None: every stored one)."""
        props: dict[str, str | None] = (
            dict(self.properties) if names is None else {n: self.properties.get(n) for n in names}
        )
        return {
            "id": self.id,
            "properties": props,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "archived": False,
        }


@dataclass(slots=True)
class _Journal:
    objects: list[tuple[str, str, StoredObject | None]] = field(default_factory=list)
    associations: list[tuple[str, dict[str, set[int]] | None]] = field(default_factory=list)


class HubSpotState:
    """Contacts, companies, their property definitions and contact ↔ company associations."""

    def __init__(self, now: Callable[[], datetime], *, lifecycle_forward_only: bool = True) -> None:
        self._now = now
        self.lifecycle_forward_only = lifecycle_forward_only
        created = timestamp(now())
        self.properties = _builtin_properties(created)
        self.groups: dict[str, dict[str, dict[str, Any]]] = {
            otype: {g: {"name": g, "label": label, "displayOrder": -1, "archived": False}}
            for otype, g, label in (
                ("contacts", "contactinformation", "Contact information"),
                ("companies", "companyinformation", "Company information"),
            )
        }
        self.objects: dict[str, dict[str, StoredObject]] = {"contacts": {}, "companies": {}}
        self._unique: dict[tuple[str, str], dict[str, str]] = {}
        self._assoc: dict[str, dict[str, set[int]]] = {}  # contact id → company id → type ids
        self._next_id = 1
        self._journal: _Journal | None = None

    # -- transactions (whole-batch mode rolls a failed batch back) ----------------------------

    def begin(self) -> None:
        """Start journaling changes so :meth:`rollback` can undo them."""
        self._journal = _Journal()

    def commit(self) -> None:
        """Keep the journaled changes."""
        self._journal = None

    def rollback(self) -> None:
        """Undo every change since :meth:`begin`."""
        journal, self._journal = self._journal, None
        if journal is None:
            return
        for contact_id, links in reversed(journal.associations):
            if links is None:
                self._assoc.pop(contact_id, None)
            else:
                self._assoc[contact_id] = links
        for otype, obj_id, previous in reversed(journal.objects):
            self._put(otype, obj_id, previous)

    # -- schema ------------------------------------------------------------------------------

    @staticmethod
    def object_type(name: str) -> str:
        """The canonical object type for a path segment, or a 400."""
        otype = OBJECT_ALIASES.get(name.lower())
        if otype is None:
            raise HubSpotError(
                "VALIDATION_ERROR",
                f"Unable to infer object type from: {name} "
                "(the emulator knows contacts and companies)",
            )
        return otype

    def unique_properties(self, otype: str) -> set[str]:
        """Properties that identify a record: ``hasUniqueValue`` ones, and email for contacts."""
        names = {n for n, d in self.properties[otype].items() if d["hasUniqueValue"]}
        return names | ({"email"} if otype == "contacts" else set())

    def add_property(self, otype: str, body: Any) -> dict[str, Any]:
        """Validate and create a property from a PropertyCreate body; 409 if the name exists."""
        if not isinstance(body, dict):
            raise HubSpotError("VALIDATION_ERROR", "Invalid input JSON: expected an object")
        missing = [
            k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)
        ]
        if missing:
            raise HubSpotError(
                "VALIDATION_ERROR",
                "Invalid input JSON: Cannot build "
                f"PropertyCreate, some of required attributes are not set {missing}",
            )
        name, type_, field_type = str(body["name"]), str(body["type"]), str(body["fieldType"])
        if name in self.properties[otype]:
            raise HubSpotError(
                "OBJECT_ALREADY_EXISTS",
                f"Property named '{name}' already exists.",
                context={"name": [name]},
            )
        if not _NAME.match(name):
            raise HubSpotError(
                "VALIDATION_ERROR",
                f"Property name '{name}' is invalid: use "
                "lowercase letters, digits and underscores, starting with a letter",
            )
        if field_type not in FIELD_TYPES.get(type_, ()):
            raise HubSpotError(
                "VALIDATION_ERROR",
                f"Property type '{type_}' does not support field type '{field_type}'",
            )
        if body["groupName"] not in self.groups[otype]:
            raise HubSpotError(
                "VALIDATION_ERROR",
                f"Property group '{body['groupName']}' does not exist for {otype}",
            )
        options = body.get("options") or []
        if type_ == "enumeration" and not options:
            raise HubSpotError("VALIDATION_ERROR", "Enumeration properties must have options")
        if type_ == "bool" and sorted(str(o.get("value")) for o in options) != ["false", "true"]:
            raise HubSpotError(
                "VALIDATION_ERROR",
                "Boolean properties must have exactly two "
                "options; one with a value of 'true', the other with a value of "
                "'false'.",
            )
        unique = bool(body.get("hasUniqueValue"))
        if unique and type_ not in ("string", "number"):
            raise HubSpotError(
                "VALIDATION_ERROR", "Only string and number properties can require unique values"
            )
        if unique and len(self.unique_properties(otype) - {"email", "hs_object_id"}) >= (
            MAX_UNIQUE_PROPERTIES
        ):
            raise HubSpotError(
                "VALIDATION_ERROR",
                f"Cannot create more than "
                f"{MAX_UNIQUE_PROPERTIES} unique value properties on {otype}",
            )
        definition = property_definition(
            name,
            str(body["label"]),
            type_,
            field_type,
            str(body["groupName"]),
            created_at=timestamp(self._now()),
            unique=unique,
            hubspot_defined=False,
            options=options,
            description=str(body.get("description") or ""),
        )
        definition["hubspotDefined"] = False
        self.properties[otype][name] = definition
        if unique:
            self._unique[(otype, name)] = {
                v: obj.id
                for obj in self.objects[otype].values()
                if (v := obj.properties.get(name)) is not None
            }
        return definition

    def add_group(self, otype: str, body: Any) -> dict[str, Any]:
        """Create a property group from a PropertyGroupCreate body; 409 if the name exists."""
        if not isinstance(body, dict) or not body.get("name") or not body.get("label"):
            raise HubSpotError(
                "VALIDATION_ERROR",
                "Invalid input JSON: Cannot build "
                "PropertyGroupCreate, some of required attributes are not set "
                "[name, label]",
            )
        name = str(body["name"])
        if name in self.groups[otype]:
            raise HubSpotError(
                "OBJECT_ALREADY_EXISTS",
                f"A property group named '{name}' already exists.",
                context={"name": [name]},
            )
        group = {
            "name": name,
            "label": str(body["label"]),
            "displayOrder": int(body.get("displayOrder", -1)),
            "archived": False,
        }
        self.groups[otype][name] = group
        return group

    # -- property values ---------------------------------------------------------------------

    def clean(self, otype: str, values: Any) -> dict[str, str | None]:
        """Check a ``properties`` map; values become strings, "" and null become None (clear).

        Every problem of the input is reported at once, as HubSpot's "Property values were not
        valid" VALIDATION_ERROR.
        """
        if values is None:
            return {}
        if not isinstance(values, dict):
            raise HubSpotError(
                "VALIDATION_ERROR", "Invalid input JSON: properties must be an object"
            )
        cleaned: dict[str, str | None] = {}
        problems: list[dict[str, Any]] = []
        for name, raw in values.items():
            value, problem = self._check(otype, str(name), raw)
            if problem:
                problems.append(
                    {
                        "isValid": False,
                        "name": name,
                        **problem,
                        "localizedErrorMessage": problem["message"],
                    }
                )
            else:
                cleaned[str(name)] = value
        if problems:
            raise HubSpotError(
                "VALIDATION_ERROR",
                f"Property values were not valid: {json.dumps(problems, separators=(',', ':'))}",
                context={"propertyName": [p["name"] for p in problems]},
                errors=[
                    {
                        "message": p["message"],
                        "code": p["error"],
                        "context": {"propertyName": [p["name"]]},
                    }
                    for p in problems
                ],
            )
        return cleaned

    def _check(self, otype: str, name: str, raw: Any) -> tuple[str | None, dict[str, str] | None]:
        definition = self.properties[otype].get(name)
        if definition is None:
            return None, {
                "error": "PROPERTY_DOESNT_EXIST",
                "message": f'Property "{name}" does not exist',
            }
        if definition["modificationMetadata"]["readOnlyValue"]:
            return None, {"error": "READ_ONLY_VALUE", "message": f'Property "{name}" is read-only'}
        if raw is None or raw == "":
            return None, None
        if isinstance(raw, bool):
            value = "true" if raw else "false"
        elif isinstance(raw, int | float):
            if isinstance(raw, float) and not math.isfinite(raw):
                return None, {"error": "INVALID_FLOAT", "message": f"{raw} is not a number"}
            value = str(int(raw)) if isinstance(raw, float) and raw.is_integer() else str(raw)
        elif isinstance(raw, str):
            value = raw
        else:
            return None, {"error": "INVALID_TYPE", "message": f'Property "{name}" takes a string'}
        return self._check_typed(otype, definition, value)

    def _check_typed(
        self, otype: str, definition: dict[str, Any], value: str
    ) -> tuple[str | None, dict[str, str] | None]:
        name, type_ = definition["name"], definition["type"]
        if otype == "contacts" and name == "email":
            value = value.strip().lower()
            if not _EMAIL.match(value):
                return None, {
                    "error": "INVALID_EMAIL",
                    "message": f"Email address {value} is invalid",
                }
        if type_ == "string" and len(value) > TEXT_MAX_CHARS:
            return None, {
                "error": "INVALID_LENGTH",
                "message": f'Property "{name}" holds at most '
                f"{TEXT_MAX_CHARS} characters; got {len(value)}",
            }
        if type_ == "number":
            try:
                ok = math.isfinite(float(value))
            except ValueError:
                ok = False
            if not ok:
                return None, {"error": "INVALID_FLOAT", "message": f"{value} is not a valid number"}
        if type_ == "bool":
            if value.lower() not in ("true", "false"):
                return None, {
                    "error": "INVALID_BOOLEAN",
                    "message": f"{value} is not true or false",
                }
            value = value.lower()
        if type_ == "enumeration":
            allowed = [o["value"] for o in definition["options"]]
            chosen = value.split(";") if definition["fieldType"] == "checkbox" else [value]
            bad = [v for v in chosen if v not in allowed]
            if bad:
                return None, {
                    "error": "INVALID_OPTION",
                    "message": f"{bad[0]} was not one of the allowed options: {allowed}",
                }
        if type_ in ("date", "datetime"):
            moment = parse_moment(value)
            if moment is None:
                return None, {"error": "INVALID_DATE", "message": f"{value} is not a valid date"}
            value = moment.date().isoformat() if type_ == "date" else timestamp(moment)
        return value, None

    # -- records -----------------------------------------------------------------------------

    def _put(self, otype: str, obj_id: str, obj: StoredObject | None) -> None:
        """Store (or remove) a record, keeping the unique index and the journal."""
        previous = self.objects[otype].get(obj_id)
        if self._journal is not None:
            self._journal.objects.append((otype, obj_id, previous))
        for name in self.unique_properties(otype) - {"hs_object_id"}:
            index = self._unique.setdefault((otype, name), {})
            old = previous.properties.get(name) if previous is not None else None
            if old is not None and index.get(old) == obj_id:
                del index[old]
            if obj is not None and (new := obj.properties.get(name)) is not None:
                index[new] = obj_id
        if obj is None:
            self.objects[otype].pop(obj_id, None)
        else:
            self.objects[otype][obj_id] = obj

    def lookup(self, otype: str, id_property: str, value: str) -> StoredObject | None:
        """The record whose unique ``id_property`` equals ``value`` (emails ignore case)."""
        if id_property == "hs_object_id":
            return self.objects[otype].get(value)
        if id_property == "email" and otype == "contacts":
            value = value.strip().lower()
        holder = self._unique.get((otype, id_property), {}).get(value)
        return None if holder is None else self.objects[otype].get(holder)

    def write(
        self, otype: str, current: StoredObject | None, values: Mapping[str, str | None]
    ) -> StoredObject:
        """Create (``current`` None) or update a record with cleaned values; 409 on a clash."""
        obj_id = current.id if current else str(self._next_id)
        merged = dict(current.properties) if current else {}
        for name, value in values.items():
            if (
                name == "lifecyclestage"
                and self.lifecycle_forward_only
                and current
                and value
                and merged.get(name) in LIFECYCLE_STAGES
                and value in LIFECYCLE_STAGES
                and LIFECYCLE_STAGES.index(value) < LIFECYCLE_STAGES.index(merged[name])
            ):
                # HubSpot ignores a backwards lifecycle stage unless cleared first [unverified]
                continue
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        for name in self.unique_properties(otype) - {"hs_object_id"}:
            value = merged.get(name)
            holder = None if value is None else self.lookup(otype, name, value)
            if holder is not None and holder.id != obj_id:
                if name == "email":
                    message = f"Contact already exists. Existing ID: {holder.id}"
                else:
                    message = (
                        f'A {SINGULAR[otype]} with the unique value "{value}" for property '
                        f'"{name}" already exists. Existing ID: {holder.id}'
                    )
                raise HubSpotError(
                    "CONFLICT", message, context={"propertyName": [name], "existingId": [holder.id]}
                )
        now = timestamp(self._now())
        if current is None:
            self._next_id += 1
            merged.setdefault("createdate", now)
        merged["hs_object_id"] = obj_id
        merged[LAST_MODIFIED[otype]] = now
        stored = StoredObject(obj_id, merged, current.created_at if current else now, now)
        self._put(otype, obj_id, stored)
        return stored

    def archive(self, otype: str, obj_id: str) -> None:
        """Remove a record and its associations (no error if it does not exist)."""
        if obj_id not in self.objects[otype]:
            return
        if otype == "contacts":
            for company_id in list(self._assoc.get(obj_id, {})):
                self.remove_labels(obj_id, company_id, {UNLABELED})
        else:
            for contact_id, links in list(self._assoc.items()):
                if obj_id in links:
                    self.remove_labels(contact_id, obj_id, {UNLABELED})
        self._put(otype, obj_id, None)

    # -- associations (stored contact → company; the emulator converts the other direction) --

    def _links(self, contact_id: str) -> dict[str, set[int]]:
        links = self._assoc.get(contact_id)
        if self._journal is not None:
            self._journal.associations.append(
                (contact_id, None if links is None else {k: set(v) for k, v in links.items()})
            )
        return self._assoc.setdefault(contact_id, {})

    def associate(self, contact_id: str, company_id: str, type_ids: set[int]) -> set[int]:
        """Add association types; primary moves from any other company. Returns the pair's types."""
        links = self._links(contact_id)
        if PRIMARY in type_ids:
            for other, types in links.items():
                if other != company_id:
                    types.discard(PRIMARY)
            self._set_primary(contact_id, company_id)
        types = links.setdefault(company_id, set())
        types |= type_ids | {UNLABELED}  # every association is also unlabeled [unverified]
        return set(types)

    def remove_labels(self, contact_id: str, company_id: str, type_ids: set[int]) -> None:
        """Remove association types; removing the unlabeled type removes the association."""
        if company_id not in self._assoc.get(contact_id, {}):
            return
        links = self._links(contact_id)
        types = links[company_id]
        was_primary = PRIMARY in types
        if UNLABELED in type_ids:
            del links[company_id]
        else:
            types -= type_ids
        if was_primary and PRIMARY not in links.get(company_id, set()):
            self._set_primary(contact_id, None)

    def _set_primary(self, contact_id: str, company_id: str | None) -> None:
        contact = self.objects["contacts"].get(contact_id)
        if contact is None or contact.properties.get("associatedcompanyid") == company_id:
            return
        props = {k: v for k, v in contact.properties.items() if k != "associatedcompanyid"}
        if company_id is not None:
            props["associatedcompanyid"] = company_id
        self._put(
            "contacts",
            contact_id,
            StoredObject(contact.id, props, contact.created_at, contact.updated_at),
        )

    def links_of_contact(self, contact_id: str) -> dict[str, set[int]]:
        """Company id → contact→company type ids, for one contact."""
        return {k: set(v) for k, v in self._assoc.get(contact_id, {}).items()}

    def links_of_company(self, company_id: str) -> dict[str, set[int]]:
        """Contact id → contact→company type ids, for one company."""
        return {
            c: set(links[company_id]) for c, links in self._assoc.items() if company_id in links
        }


def parse_moment(value: str) -> datetime | None:
    """A date or datetime from ISO 8601 text or epoch milliseconds (HubSpot takes both)."""
    text = value.strip()
    if re.fullmatch(r"-?\d+", text):
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
