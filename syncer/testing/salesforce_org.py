"""The emulated org's records and write rules: upsert by external id, field checks, references.

sObject Collections and Bulk API 2.0 share `Org.upsert`, so both answer the same per-record
errors. Not thread-safe on its own: the emulator serialises access with one lock.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from syncer.testing.salesforce_schema import (
    EXTERNAL_ID_TYPES,
    STRING_TYPES,
    TOOLING_TYPES,
    FieldDef,
    ObjectDef,
    SalesforceApiError,
    make_id,
    standard_objects,
)

# Salesforce's own check is stricter; this catches what a sync would plausibly send wrong.
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_CUSTOM_NAME = re.compile(r"^[A-Za-z](?:[A-Za-z0-9]|_(?!_))*__c$")
_FLS_HINT = (
    "Please check the security settings of this field and verify that it is read/write for "
    "your profile or permission set."
)


@dataclass(frozen=True)
class RecordError:
    """One per-record error: ``{statusCode, message, fields}`` in JSON answers."""

    status_code: str
    message: str
    fields: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """The error as it appears in a collections result's ``errors`` list."""
        return {"statusCode": self.status_code, "message": self.message, "fields": [*self.fields]}

    def as_bulk(self) -> str:
        """The ``sf__Error`` cell of a Bulk API 2.0 failed-results row."""
        fields = ",".join(self.fields)
        return f"{self.status_code}:{self.message}:{fields + ' ' if fields else ''}--"


@dataclass
class RowOutcome:
    """What happened to one record of an upsert, in input position."""

    id: str | None = None
    created: bool = False
    errors: list[RecordError] = field(default_factory=list)

    @property
    def success(self) -> bool:
        """True when the record was written."""
        return not self.errors

    def as_json(self) -> dict[str, Any]:
        """The UpsertResult of sObject Collections (a failed result carries no ``id``)."""
        if self.success:
            return {"id": self.id, "success": True, "errors": [], "created": self.created}
        return {
            "success": False,
            "errors": [e.as_json() for e in self.errors],
            "created": False,
        }


@dataclass
class _Row:
    values: dict[str, Any]  # canonical field name -> raw value
    refs: list[tuple[FieldDef, ObjectDef, FieldDef, Any]]  # (reference field, target, ext, value)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _norm(fdef: FieldDef, value: Any) -> str:
    """External-id values match case-insensitively unless the field is case sensitive."""
    text = str(value)
    return text if fdef.case_sensitive else text.lower()


class Org:
    """Objects, records (live and in the recycle bin) and the rules for writing them."""

    def __init__(self) -> None:
        self.objects: dict[str, ObjectDef] = standard_objects()
        self._live: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in self.objects}
        self._bin: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in self.objects}
        self._counters: Counter[str] = Counter()
        self.allow_field_creation = True
        # A real org shows a field created through the Tooling API to no one until field-level
        # security grants it (issue 17): True is the lenient switch for tests that skip it.
        self.grant_access_on_create = False
        # Assumption: an upsert whose external id only matches a record in the recycle bin
        # answers ENTITY_IS_DELETED; set False to create a new record instead.
        self.deleted_blocks_upsert = True

    # -- ids, schema ----

    def new_id(self, prefix: str) -> str:
        """The next 18-character id with this key prefix."""
        self._counters[prefix] += 1
        return make_id(prefix, self._counters[prefix])

    def object(self, name: str) -> ObjectDef:
        """The object named ``name`` or a 404 NOT_FOUND."""
        obj = self.objects.get(name.lower())
        if obj is None:
            raise SalesforceApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return obj

    def create_custom_field(self, body: Mapping[str, Any]) -> str:
        """Create a field from a Tooling API ``CustomField`` body; return the new field's id."""
        if not self.allow_field_creation:
            raise SalesforceApiError(
                403,
                "INSUFFICIENT_ACCESS",
                "insufficient access rights on object id: the user needs the "
                "Customize Application permission",
                [],
            )
        full_name = body.get("FullName")
        meta = body.get("Metadata")
        if not isinstance(full_name, str) or "." not in full_name or not isinstance(meta, dict):
            raise SalesforceApiError(
                400, "FIELD_INTEGRITY_EXCEPTION", "FullName (Object.Field__c) and Metadata are "
                "required", []
            )  # fmt: skip
        return self.add_field(full_name, meta)

    def add_field(self, full_name: str, meta: Mapping[str, Any]) -> str:
        """Add ``Object.Name__c`` described by Tooling-style ``meta``; return the field's id."""
        obj_name, _, name = full_name.partition(".")
        obj = self.object(obj_name)
        if not _CUSTOM_NAME.match(name) or len(name) > 43:
            raise SalesforceApiError(
                400, "INVALID_FIELD", f"Invalid custom field name: {name}", ["FullName"]
            )
        if name.lower() in obj.fields:
            raise SalesforceApiError(
                400, "DUPLICATE_DEVELOPER_NAME",
                f"There is already a field named {name[:-3]} on {obj.name}.", [],
            )  # fmt: skip
        fdef = self._field_from_metadata(name, meta)
        fdef.field_id = self.new_id("00N")
        fdef.accessible = self.grant_access_on_create
        obj.add(fdef)
        return fdef.field_id

    @staticmethod
    def _field_from_metadata(name: str, meta: Mapping[str, Any]) -> FieldDef:
        def bad(message: str) -> SalesforceApiError:
            return SalesforceApiError(400, "FIELD_INTEGRITY_EXCEPTION", message, [])

        kind = meta.get("type")
        if kind not in TOOLING_TYPES:
            raise bad(f"Unsupported or missing field type: {kind!r}")
        sf_type, bounds, fixed = TOOLING_TYPES[kind]
        length = fixed
        if bounds is not None:
            length = meta.get("length", 0)
            if not isinstance(length, int) or not bounds[0] <= length <= bounds[1]:
                raise bad(f"Length: value must be between {bounds[0]} and {bounds[1]}")
        if sf_type == "textarea" and length > 255 and not meta.get("visibleLines"):
            raise bad("Visible Lines: You must enter a value")
        external_id, unique = bool(meta.get("externalId")), bool(meta.get("unique"))
        if (external_id or unique) and kind not in EXTERNAL_ID_TYPES:
            raise bad(f"External ID and Unique are not available for {kind} fields")
        label = meta.get("label")
        if not isinstance(label, str) or not label:
            raise bad("Field Label: You must enter a value")
        return FieldDef(
            name=name, label=label, type=sf_type, length=length, custom=True,
            external_id=external_id, unique=unique,
            case_sensitive=bool(meta.get("caseSensitive")),
            precision=int(meta.get("precision", 18 if sf_type == "double" else 0)),
            scale=int(meta.get("scale", 0)),
        )  # fmt: skip

    def grant_field_access(self, full_name: str) -> None:
        """Grant field-level security on ``Object.Field__c`` to the integration user."""
        obj_name, _, name = full_name.partition(".")
        self.object(obj_name).fields[name.lower()].accessible = True

    # -- records ----

    def records(self, type_name: str, *, deleted: bool = False) -> dict[str, dict[str, Any]]:
        """Live records of a type (or those in the recycle bin), by id; values are copies."""
        store = self._bin if deleted else self._live
        return {rid: dict(rec) for rid, rec in store[self.object(type_name).name.lower()].items()}

    def live(self, type_name: str) -> Iterable[dict[str, Any]]:
        """The live records themselves (no copy) for the query engine."""
        return self._live[self.object(type_name).name.lower()].values()

    def find(self, type_name: str, field_name: str, value: Any) -> list[dict[str, Any]]:
        """Live records whose field equals ``value`` (external ids: with their case rule)."""
        obj = self.object(type_name)
        fdef = obj.fields[field_name.lower()]
        return [dict(r) for r in self._matches(obj, fdef, value, self._live)]

    def lookup(self, record_id: str) -> tuple[ObjectDef, dict[str, Any] | None, bool]:
        """Find any record by id: (object, record or None, is it in the recycle bin)."""
        for key, obj in self.objects.items():
            if record_id.startswith(obj.key_prefix):
                rec = self._live[key].get(record_id) or self._bin[key].get(record_id)
                return obj, (dict(rec) if rec else None), record_id in self._bin[key]
        raise SalesforceApiError(404, "NOT_FOUND", "The requested resource does not exist")

    def insert(self, type_name: str, values: Mapping[str, Any]) -> str:
        """Write a record directly (test set-up; no validation beyond field names)."""
        obj = self.object(type_name)
        rid = self.new_id(obj.key_prefix)
        now = _now()
        rec: dict[str, Any] = {"Id": rid, "IsDeleted": False, "CreatedDate": now}
        rec["LastModifiedDate"] = now
        for name, value in values.items():
            rec[obj.fields[name.lower()].name] = value
        self._computed(obj, rec)
        self._live[obj.name.lower()][rid] = rec
        return rid

    def delete(self, type_name: str, record_id: str) -> None:
        """Move a live record to the recycle bin (KeyError if it is not live)."""
        key = self.object(type_name).name.lower()
        rec = self._live[key].pop(record_id)
        rec["IsDeleted"] = True
        self._bin[key][record_id] = rec

    @staticmethod
    def _computed(obj: ObjectDef, rec: dict[str, Any]) -> None:
        if obj.name == "Contact":
            rec["Name"] = " ".join(p for p in (rec.get("FirstName"), rec.get("LastName")) if p)

    @staticmethod
    def _matches(
        obj: ObjectDef, fdef: FieldDef, value: Any, store: dict[str, dict[str, dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        want = _norm(fdef, value)
        return [
            rec
            for rec in store[obj.name.lower()].values()
            if rec.get(fdef.name) is not None and _norm(fdef, rec[fdef.name]) == want
        ]

    # -- upsert ----

    def external_id_field(self, obj: ObjectDef, name: str) -> FieldDef:
        """The external-id field an upsert keys on, or the error Salesforce answers."""
        fdef = obj.get_field(name)
        if fdef is None:
            raise SalesforceApiError(
                404, "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {name}",
            )  # fmt: skip
        if not fdef.external_id:
            raise SalesforceApiError(
                400, "INVALID_FIELD",
                f"Field {fdef.name} is not an External ID or indexed field for {obj.name}",
                [fdef.name],
            )  # fmt: skip
        return fdef

    def parse_row(self, obj: ObjectDef, row: Mapping[str, Any]) -> _Row:
        """Split a record into field values and external-id references; unknown keys fail all."""
        parsed = _Row({}, [])
        for key, value in row.items():
            fdef = obj.get_field(key)
            if fdef is not None:
                parsed.values[fdef.name] = value
                continue
            ref = obj.relationship(key)
            if ref is None or not isinstance(value, dict) or len(value) != 1:
                raise SalesforceApiError(
                    400, "INVALID_FIELD", f"No such column '{key}' on sobject of type {obj.name}",
                    [],
                )  # fmt: skip
            target = self.object(ref.reference_to or "")
            ((ext_name, ext_value),) = value.items()
            parsed.refs.append((ref, target, self.external_id_field(target, ext_name), ext_value))
        return parsed

    def upsert(
        self,
        type_name: str,
        ext_name: str,
        rows: Sequence[Mapping[str, Any]],
        *,
        all_or_none: bool = False,
        lock_row: Callable[[], bool] = lambda: False,
    ) -> list[RowOutcome]:
        """Create or update each row by its external id; outcomes in input order.

        Raises `SalesforceApiError` (nothing written) for an unknown object, field or key field.
        ``lock_row`` is asked once per otherwise valid row: True fails it with UNABLE_TO_LOCK_ROW.
        """
        obj = self.object(type_name)
        ext = self.external_id_field(obj, ext_name)
        parsed = [self.parse_row(obj, row) for row in rows]
        counts = Counter(
            _norm(ext, p.values[ext.name]) for p in parsed if p.values.get(ext.name) is not None
        )
        outcomes: list[RowOutcome] = []
        writes: list[tuple[RowOutcome, str | None, dict[str, Any]]] = []
        for row in parsed:
            outcome = RowOutcome()
            outcomes.append(outcome)
            key = row.values.get(ext.name)
            if key is None or key == "":
                outcome.errors.append(
                    RecordError("MISSING_ARGUMENT", f"{ext.name} not specified", (ext.name,))
                )
                continue
            if counts[_norm(ext, key)] > 1:
                # Every row sharing the key fails; reported by integrators as DUPLICATE_VALUE.
                outcome.errors.append(
                    RecordError("DUPLICATE_VALUE", f"Duplicate external id specified: {key}")
                )
                continue
            matches = self._matches(obj, ext, key, self._live)
            if len(matches) > 1:
                ids = ", ".join(m["Id"] for m in matches)
                outcome.errors.append(RecordError(
                    "DUPLICATE_EXTERNAL_ID",
                    f"{ext.name}: more than one record found for external id field: [{ids}]",
                    (ext.name,),
                ))  # fmt: skip
                continue
            if (
                not matches
                and self.deleted_blocks_upsert
                and self._matches(obj, ext, key, self._bin)
            ):
                outcome.errors.append(RecordError("ENTITY_IS_DELETED", "entity is deleted"))
                continue
            target_id = matches[0]["Id"] if matches else None
            values = self._check_values(obj, row, outcome, creating=target_id is None)
            if outcome.success and lock_row():
                which = f": {target_id}" if target_id else ""
                outcome.errors.append(RecordError(
                    "UNABLE_TO_LOCK_ROW",
                    f"unable to obtain exclusive access to this record or 1 records{which}",
                ))  # fmt: skip
            if outcome.success:
                writes.append((outcome, target_id, values))
        if all_or_none and any(not o.success for o in outcomes):
            rolled = RecordError(
                "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "Record rolled back because not all records were valid and the request was "
                "using AllOrNone header",
            )
            for outcome in outcomes:
                if outcome.success:
                    outcome.errors.append(rolled)
            return outcomes
        for outcome, target_id, values in writes:
            outcome.id, outcome.created = self._write(obj, target_id, values), target_id is None
        return outcomes

    def _write(self, obj: ObjectDef, target_id: str | None, values: dict[str, Any]) -> str:
        store = self._live[obj.name.lower()]
        now = _now()
        if target_id is None:
            target_id = self.new_id(obj.key_prefix)
            store[target_id] = {"Id": target_id, "IsDeleted": False, "CreatedDate": now}
        rec = store[target_id]
        rec.update(values)
        rec["LastModifiedDate"] = now
        self._computed(obj, rec)
        return target_id

    def _check_values(
        self, obj: ObjectDef, row: _Row, outcome: RowOutcome, *, creating: bool
    ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for ref, target, ext, ext_value in row.refs:
            if ext_value is None:
                values[ref.name] = None
                continue
            found = self._matches(target, ext, ext_value, self._live)
            if len(found) == 1:
                values[ref.name] = found[0]["Id"]
            else:
                outcome.errors.append(RecordError(
                    "INVALID_FIELD" if not found else "DUPLICATE_EXTERNAL_ID",
                    f"Foreign key external ID: {ext_value} "
                    + ("not found" if not found else "matches more than one record")
                    + f" for field {ext.name} in entity {target.name}",
                ))  # fmt: skip
        for name, raw in row.values.items():
            fdef = obj.fields[name.lower()]
            if not (fdef.createable if creating else fdef.updateable):
                outcome.errors.append(RecordError(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {name}. {_FLS_HINT}", (name,),
                ))  # fmt: skip
                continue
            value, error = self._coerce(fdef, raw)
            if error is not None:
                outcome.errors.append(error)
            values[name] = value
        missing = [
            f.name
            for f in obj.fields.values()
            if f.createable and not f.nillable and f.type != "boolean"
            and (values.get(f.name) is None if (creating or f.name in values) else False)
        ]  # fmt: skip
        if missing:
            outcome.errors.append(RecordError(
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]", tuple(missing),
            ))  # fmt: skip
        return values

    def _coerce(self, fdef: FieldDef, raw: Any) -> tuple[Any, RecordError | None]:
        """Check one value against its field; JSON values and CSV strings both arrive here."""
        if raw is None:
            return None, None
        wrong_type = RecordError(
            "INVALID_TYPE_ON_FIELD_IN_RECORD",
            f"{fdef.label}: value not of required type: {raw}", (fdef.name,),
        )  # fmt: skip
        if fdef.type in STRING_TYPES:
            if isinstance(raw, bool) or not isinstance(raw, str | int | float):
                return raw, wrong_type
            text = str(raw)
            if fdef.length and len(text) > fdef.length:
                shown = text if len(text) <= 300 else text[:300] + "..."
                return text, RecordError(
                    "STRING_TOO_LONG",
                    f"{fdef.label}: data value too large: {shown} (max length={fdef.length})",
                    (fdef.name,),
                )  # fmt: skip
            if fdef.type == "email" and not _EMAIL.match(text):
                return text, RecordError(
                    "INVALID_EMAIL_ADDRESS", f"{fdef.label}: invalid email address: {text}",
                    (fdef.name,),
                )  # fmt: skip
            return text, None
        if fdef.type == "boolean":
            if isinstance(raw, bool):
                return raw, None
            text = str(raw).lower()
            return (text in ("true", "1"), None) if text in ("true", "false", "1", "0") else (
                raw, wrong_type)  # fmt: skip
        if fdef.type in ("double", "currency", "int"):
            try:
                number = float(raw) if not isinstance(raw, bool) else None
            except ValueError:
                number = None
            if number is None:
                return raw, wrong_type
            return (int(number) if fdef.type == "int" else number), None
        if fdef.type == "reference":
            return self._check_reference(fdef, raw)
        return raw, None

    def _check_reference(self, fdef: FieldDef, raw: Any) -> tuple[Any, RecordError | None]:
        target = self.object(fdef.reference_to or "")
        text = str(raw)
        if len(text) not in (15, 18) or not text.startswith(target.key_prefix):
            return text, RecordError(
                "MALFORMED_ID", f"{fdef.label}: id value of incorrect type: {text}", (fdef.name,)
            )
        for rid in self._live[target.name.lower()]:
            if rid == text or rid[:15] == text:
                return rid, None
        return text, RecordError(
            "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", (fdef.name,)
        )
