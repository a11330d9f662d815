"""Pipedrive's documented rules the emulator enforces: error envelope, field types and their
limits, the keys a create or update body may hold, and custom-field value checks (sources in
``API-FIDELITY.md``)."""

from __future__ import annotations

import re
from typing import Any

ERROR_INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."
KINDS = {"persons": "person", "organizations": "organization"}
FIELD_LISTS = {"personFields": "persons", "organizationFields": "organizations"}
# Field types and their text limits (AddPersonFieldRequest: varchar "up to 255 characters",
# text "Long text (up to 65k characters)").
TEXT_LIMITS = {"varchar": 255, "varchar_auto": 255, "phone": 255, "text": 65_535}
CREATABLE = {*TEXT_LIMITS, "double", "monetary", "date", "set", "enum", "user", "org", "people",
             "time", "timerange", "daterange", "address"}  # fmt: skip
SEARCHABLE = {"address", "varchar", "text", "varchar_auto", "double", "monetary", "phone"}
BODY_KEYS = {
    "persons": {"name", "owner_id", "org_id", "emails", "phones", "visible_to", "label_ids",
                "marketing_status", "custom_fields", "add_time", "update_time"},
    "organizations": {"name", "owner_id", "visible_to", "label_ids", "address", "custom_fields",
                      "add_time", "update_time"},
}  # fmt: skip
STANDARD_FIELDS = {
    "persons": [("name", "Name", "varchar"), ("email", "Email", "varchar"),
                ("org_id", "Organization", "org"), ("owner_id", "Owner", "user")],
    "organizations": [("name", "Name", "varchar"), ("owner_id", "Owner", "user"),
                      ("address", "Address", "address")],
}  # fmt: skip
DATE = re.compile(r"\d{4}-\d{2}-\d{2}").fullmatch


class PipedriveError(Exception):
    """An error answer: status and Pipedrive's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(status: int, message: str) -> dict[str, Any]:
    """Pipedrive's error envelope (core-api-concepts-responses), with ``errorCode``."""
    return {"success": False, "error": message, "errorCode": status, "error_info": ERROR_INFO,
            "data": None, "additional_data": None}  # fmt: skip


def check_value(field: dict[str, Any], value: Any) -> None:
    """A custom field value against its type, as v2 validates it; None clears."""
    name, ftype = field["field_name"], field["field_type"]
    if value is None:
        return
    if ftype in TEXT_LIMITS:
        if not isinstance(value, str):
            raise PipedriveError(400, f"{name}: a text value must be a string")
        if len(value) > TEXT_LIMITS[ftype]:
            raise PipedriveError(400, f"{name}: longer than {TEXT_LIMITS[ftype]} characters")
    elif ftype == "double":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PipedriveError(400, f"{name}: a numeric value must be a number, not {value!r}")
    elif ftype == "date" and not (isinstance(value, str) and DATE(value)):
        raise PipedriveError(400, f"{name}: a date must be YYYY-MM-DD, not {value!r}")
