"""Field-level security in the Salesforce emulator: permission sets, their field permissions and
their assignment to the integration user, through the REST sObject resources a client uses.

On a real org a custom field created through the Tooling API is visible to no one until
field-level security grants it (FieldPermissions on a permission set or profile — the object
reference: "To grant a user access to a field, associate a FieldPermissions record with a
PermissionSet that's assigned to a user"). The emulator creates fields invisible by default
(``Org.grant_access_on_create = False``) and makes them visible when a FieldPermissions record
with ``PermissionsRead`` exists on a permission set assigned to the integration user.

Modeled: ``POST sobjects/PermissionSet`` (Name, Label; DUPLICATE_VALUE on a taken Name),
``POST sobjects/FieldPermissions`` (ParentId, SobjectType, Field, PermissionsRead,
PermissionsEdit), ``POST sobjects/PermissionSetAssignment`` (AssigneeId, PermissionSetId),
``SELECT Id FROM PermissionSet WHERE Name = '...'`` and ``GET chatter/users/me`` (the running
user's id). ``manage_permissions = False`` answers the writes 403 INSUFFICIENT_ACCESS_OR_READONLY
(a user without "Manage Profiles and Permission Sets").
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from syncer.testing.salesforce_schema import SalesforceApiError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from syncer.testing.salesforce_org import Org

_PS_QUERY = re.compile(r"SELECT\s+Id\s+FROM\s+PermissionSet\s+WHERE\s+Name\s*=\s*'([^']*)'", re.I)
_OBJECTS = ("permissionset", "fieldpermissions", "permissionsetassignment")


class Permissions:
    """Permission sets of one emulated org and which fields they make visible."""

    def __init__(self, org: Org) -> None:
        self.org = org
        self.manage_permissions = True
        self.user_id = org.new_id("005")
        self.sets: dict[str, str] = {}  # id -> Name
        self.fields: dict[str, set[str]] = {}  # permission set id -> Object.Field__c readable
        self.assigned: set[tuple[str, str]] = set()  # (AssigneeId, PermissionSetId)

    def route(
        self, method: str, path: Sequence[str], params: dict[str, list[str]], body: Any
    ) -> tuple[int, Any] | None:
        """(status, JSON body) for a permission request, or None for any other request."""
        parts = [p.lower() for p in path]
        if method == "GET" and parts == ["chatter", "users", "me"]:
            return 200, {"id": self.user_id, "type": "User"}
        if method == "GET" and parts == ["query"]:
            match = _PS_QUERY.fullmatch(((params.get("q") or [""])[0]).strip())
            if match is None:
                return None
            rows = [
                {"attributes": {"type": "PermissionSet"}, "Id": i}
                for i, name in self.sets.items()
                if name == match.group(1)
            ]
            return 200, {"totalSize": len(rows), "done": True, "records": rows}
        if method == "POST" and len(parts) == 2 and parts[0] == "sobjects":
            if parts[1] not in _OBJECTS:
                return None
            if not self.manage_permissions:
                raise SalesforceApiError(
                    403,
                    "INSUFFICIENT_ACCESS_OR_READONLY",
                    "insufficient access rights on cross-reference id",
                    [],
                )
            if not isinstance(body, dict):
                raise SalesforceApiError(400, "JSON_PARSER_ERROR", "a JSON object is required", [])
            record_id = getattr(self, f"_create_{parts[1]}")(body)
            return 201, {"id": record_id, "success": True, "errors": []}
        return None

    def _create_permissionset(self, body: dict[str, Any]) -> str:
        name = str(body.get("Name") or "")
        if not name or not body.get("Label"):
            raise SalesforceApiError(
                400, "REQUIRED_FIELD_MISSING", "Required fields are missing: [Name, Label]", []
            )
        if name in self.sets.values():
            raise _duplicate(next(i for i, n in self.sets.items() if n == name))
        record_id = self.org.new_id("0PS")
        self.sets[record_id] = name
        self.fields[record_id] = set()
        return record_id

    def _create_fieldpermissions(self, body: dict[str, Any]) -> str:
        parent, field = str(body.get("ParentId")), str(body.get("Field") or "")
        if parent not in self.sets:
            raise SalesforceApiError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid ParentId", [])
        obj_name, _, name = field.partition(".")
        if obj_name.lower() != str(body.get("SobjectType", "")).lower():
            raise SalesforceApiError(
                400, "FIELD_INTEGRITY_EXCEPTION", "Field must be prefixed with SobjectType", []
            )
        if name.lower() not in self.org.object(obj_name).fields:
            raise SalesforceApiError(
                400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", f"Field: bad value: {field}", []
            )
        if not body.get("PermissionsRead"):
            raise SalesforceApiError(
                400, "FIELD_INTEGRITY_EXCEPTION", "PermissionsRead must be true", []
            )
        if field in self.fields[parent]:
            raise _duplicate(parent)
        self.fields[parent].add(field)
        self._apply()
        return self.org.new_id("01k")

    def _create_permissionsetassignment(self, body: dict[str, Any]) -> str:
        pair = (str(body.get("AssigneeId")), str(body.get("PermissionSetId")))
        if pair[1] not in self.sets:
            raise SalesforceApiError(
                400, "INVALID_CROSS_REFERENCE_KEY", "invalid PermissionSetId", []
            )
        if pair in self.assigned:
            raise _duplicate(pair[1])
        self.assigned.add(pair)
        self._apply()
        return self.org.new_id("0Pa")

    def _apply(self) -> None:
        """Make visible every field a permission set assigned to the integration user reads."""
        for assignee, ps in self.assigned:
            if assignee == self.user_id:
                for field in self.fields[ps]:
                    self.org.grant_field_access(field)


def _duplicate(record_id: str) -> SalesforceApiError:
    return SalesforceApiError(
        400,
        "DUPLICATE_VALUE",
        f"duplicate value found: duplicates value on record with id: {record_id}",
        [],
    )
