"""Salesforce ``ensure``: fields checked by describe, missing custom fields created through the
Tooling API, and field-level security granted — then every field verified visible before any
write.

A custom field created through the Tooling API is visible to no one until field-level security
grants it: "To grant a user access to a field, associate a FieldPermissions record with a
PermissionSet that's assigned to a user" (object reference, FieldPermissions). So ``ensure``
creates (or finds) the permission set :data:`PERMISSION_SET`, gives it Read and Edit on each
field, assigns it to the running user, and describes the object again. Without the permission to
do that (403), or with a field still hidden, the report lists what an admin must grant — the
preflight refuses, nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from syncer.connectors.base import EnsureReport
from syncer.connectors.http import HttpAnswer
from syncer.connectors.salesforce_fields import SUFFIX, ensure_fields
from syncer.fields import FieldSpec

__all__ = ["PERMISSION_SET", "ensure_object"]

#: The permission set through which syncer's integration user reads and edits its fields.
PERMISSION_SET = "Syncer_Integration"

#: One request through the connector: (what, method, url, ok=…, **requests keyword arguments).
Request = Callable[..., HttpAnswer]


def ensure_object(
    request: Request,
    *,
    object_name: str,
    key_field: str,
    fields: Sequence[FieldSpec],
    allow_create: bool,
) -> EnsureReport:
    """Check ``fields`` on ``object_name``; create and grant what is missing if allowed; verify
    by a second describe that every field is visible to the integration user."""
    describe = _describe(request, object_name)
    create = partial(_create_field, request, object_name) if allow_create else None
    report = ensure_fields(
        describe, create, object_name=object_name, key_field=key_field, fields=fields
    )
    if not allow_create or report.problems:
        return report
    wanted = list(dict.fromkeys([key_field, *(f.name for f in fields)]))
    hidden = [n for n in wanted if n.endswith(SUFFIX) and n not in _names(describe)]
    if not hidden:
        return report
    refused = _grant(request, object_name, hidden)
    if refused is not None:
        report.problems.append(refused)
        return report
    again = _describe(request, object_name)
    visible = _names(again)
    still = [n for n in wanted if n not in visible]
    if not still:
        # Fields found hidden were never checked: check them all now that they show.
        checked = ensure_fields(
            again, None, object_name=object_name, key_field=key_field, fields=fields
        )
        report.problems += checked.problems
        return report
    report.problems += [
        f"field {object_name}.{n} is still not visible to the integration user after granting "
        f"it through permission set {PERMISSION_SET}: check the user's permission sets and "
        "profile (field-level security can take a moment to apply; run again)"
        for n in still
    ]
    return report


def _describe(request: Request, object_name: str) -> dict[str, Any]:
    answer = request(f"describe {object_name}", "GET", f"sobjects/{object_name}/describe/")
    parsed: dict[str, Any] = answer.json()
    return parsed


def _names(describe: dict[str, Any]) -> set[str]:
    return {f["name"] for f in describe["fields"]}


def _create_field(
    request: Request, object_name: str, name: str, metadata: dict[str, Any]
) -> bool | str:
    """Create ``Object.name`` through the Tooling API: True; False if it exists already (hidden
    from the integration user by field-level security, so describe did not show it); else what
    Salesforce refused."""
    body = {"FullName": f"{object_name}.{name}", "Metadata": metadata}
    answer = request(
        f"create field {object_name}.{name}", "POST", "tooling/sobjects/CustomField/",
        json=body, ok=(400,),
    )  # fmt: skip
    if answer.status == 400:
        if _code(answer) == "DUPLICATE_DEVELOPER_NAME":
            return False
        return f"creating field {object_name}.{name} was refused: {answer.text[:300]}"
    return True


def _grant(request: Request, object_name: str, names: Sequence[str]) -> str | None:
    """Grant Read and Edit on ``names`` through :data:`PERMISSION_SET`, assigned to the running
    user; the refusal an admin must act on if syncer may not."""
    full = [f"{object_name}.{n}" for n in names]
    ok = (400, 403)
    me = request("GET running user", "GET", "chatter/users/me", ok=ok)
    if me.status >= 400:
        return _refusal(me, full)
    found = request(
        f"find permission set {PERMISSION_SET}", "GET", "query/",
        params={"q": f"SELECT Id FROM PermissionSet WHERE Name = '{PERMISSION_SET}'"}, ok=ok,
    )  # fmt: skip
    if found.status >= 400:
        return _refusal(found, full)
    records = found.json().get("records") or []
    if records:
        ps_id = records[0]["Id"]
    else:
        made = request(
            f"create permission set {PERMISSION_SET}", "POST", "sobjects/PermissionSet/",
            json={"Name": PERMISSION_SET, "Label": "Syncer integration",
                  "Description": "Read and edit on the fields syncer writes"}, ok=ok,
        )  # fmt: skip
        if made.status >= 400:
            return _refusal(made, full)
        ps_id = made.json()["id"]
    writes = [
        (
            f"grant {field}",
            "sobjects/FieldPermissions/",
            {
                "ParentId": ps_id,
                "SobjectType": object_name,
                "Field": field,
                "PermissionsRead": True,
                "PermissionsEdit": True,
            },
        )
        for field in full
    ]
    writes.append(
        (
            f"assign permission set {PERMISSION_SET}",
            "sobjects/PermissionSetAssignment/",
            {"AssigneeId": me.json()["id"], "PermissionSetId": ps_id},
        )
    )
    for what, path, body in writes:
        answer = request(what, "POST", path, json=body, ok=ok)
        if answer.status >= 400 and _code(answer) != "DUPLICATE_VALUE":
            return _refusal(answer, full)
    return None


def _refusal(answer: HttpAnswer, fields: Sequence[str]) -> str:
    return (
        f"syncer may not grant field-level security (HTTP {answer.status} {_code(answer)}): an "
        f"admin must create permission set {PERMISSION_SET} with Read and Edit on "
        f"{', '.join(fields)} and assign it to the integration user (or grant them on its "
        "profile); nothing was written"
    )


def _code(answer: HttpAnswer) -> str:
    try:
        parsed = answer.json()
    except ValueError:
        return ""
    if isinstance(parsed, list) and parsed and isinstance(parsed[0], dict):
        return str(parsed[0].get("errorCode", ""))
    return ""
