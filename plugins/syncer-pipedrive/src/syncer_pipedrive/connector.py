"""Pipedrive: organizations and persons through API v2, custom fields by their hash keys.

On syncer's public connector API and HTTP base; one request per record (Pipedrive has no batch
write). Custom fields are keyed by generated 40-character hashes, read from the field lists and
kept in the instance. Upsert by the product id in the key field: PATCH by the remote id, else an
exact search, then PATCH or POST. docs/connectors.md walks through it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from syncer.connectors.base import ConnectorConfig, EnsureReport, WriteRecord
from syncer.connectors.base import WriteResult as Result
from syncer.connectors.http import HttpConnector
from syncer.errors import BatchRejected, ConfigError, RecordRejected
from syncer.fields import FieldSpec
from syncer_pipedrive import config as pd
from syncer_pipedrive.client import Client
from syncer_pipedrive.config import PipedriveConfig

__all__ = ["PipedriveConfig", "PipedriveConnector"]


@dataclass(frozen=True, slots=True)
class _Field:
    key: str  # Pipedrive's field code: a 40-character hash for a custom field
    type: str  # Pipedrive's field type; "ambiguous" when two custom fields share the name


class PipedriveConnector(HttpConnector[PipedriveConfig]):
    """The Pipedrive destination. See the module docstring."""

    name = "pipedrive"
    config_model: ClassVar[type[ConnectorConfig]] = PipedriveConfig
    capabilities = pd.CAPABILITIES
    objects = pd.OBJECTS
    status_overrides = pd.OVERRIDES

    def __init__(self, config: PipedriveConfig) -> None:
        super().__init__(config)
        self._client = Client(config)
        self._fields: dict[str, dict[str, _Field]] = {}  # object → syncer field name → field
        self._org_ids: dict[str, str] = {}  # account key → organization id
        self._lock = threading.Lock()

    def check(self) -> None:
        """One cheap authenticated read: the token's own user."""
        self._check_call("GET /v1/users/me", self._client.sender("GET", "/v1/users/me"))

    def ensure(self, object_name: str, fields: Sequence[FieldSpec]) -> EnsureReport:
        """Create the missing custom fields (the key field too); report wrong types."""
        with self._lock:
            have = self._fields[object_name] = self._list_fields(object_name)
        report = EnsureReport()
        key_field = FieldSpec(self.object_spec(object_name).key_field)
        for spec in {f.name: f for f in [key_field, *fields]}.values():
            want, found = pd.FIELD_TYPES.get(spec.type, "varchar"), have.get(spec.name)
            if spec.name in pd.STANDARD[object_name]:
                continue
            if found is None:
                body = {"field_name": spec.name, "field_type": want}
                made = self._request("POST", f"{pd.API}/{pd.FIELD_LISTS[object_name]}", body)
                have[spec.name] = _Field(made["field_code"], made["field_type"])
                report.created.append(spec.name)
            elif found.type == "ambiguous":
                report.problems.append(f"several fields are named {spec.name!r}: keep one")
            elif found.type != want and not (want == "varchar" and found.type in pd.TEXTUAL):
                report.problems.append(f"field {spec.name!r} is {found.type!r}, not {want!r}")
            else:
                report.existing.append(spec.name)
        return report

    def write(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[Result]:
        """Upsert each record by its product id: one request, or two or three the first time."""
        return [self._upsert(object_name, r) for r in batch]

    def archive(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[Result]:
        """Delete by id (Pipedrive keeps a deleted record restorable for 30 days)."""
        return [self._delete(object_name, r) for r in batch]

    def _delete(self, object_name: str, r: WriteRecord) -> Result:
        try:
            self._request("DELETE", f"{pd.API}/{object_name}/{r.remote_id}")
        except BatchRejected as exc:
            if exc.status != 404:  # 404: deleted already
                return Result(r.key, rejected=str(exc))
        return Result(r.key, r.remote_id)

    def close(self) -> None:
        self._client.close()

    def _upsert(self, object_name: str, r: WriteRecord) -> Result:
        path = f"{pd.API}/{object_name}"
        try:
            if r.remote_id is not None:
                try:
                    data = self._request(
                        "PATCH", f"{path}/{r.remote_id}", self._body(object_name, r)
                    )
                    return self._done(object_name, r.key, data, created=False)
                except BatchRejected as exc:
                    if exc.status != 404:  # else deleted in Pipedrive: find or create it again
                        raise
            found = self._find(object_name, r.key)
            body = self._body(object_name, r, full=True)
            if found is None:
                body.setdefault("name", r.key)  # Pipedrive requires a name on create
                data = self._request("POST", path, body)
            else:
                data = self._request("PATCH", f"{path}/{found}", body)
            return self._done(object_name, r.key, data, created=found is None)
        except BatchRejected as exc:
            return Result(r.key, rejected=str(exc))
        except RecordRejected as exc:
            return Result(r.key, rejected=exc.reason, field=exc.field)

    def _done(self, object_name: str, key: str, data: Any, *, created: bool) -> Result:
        if object_name == "organizations":
            self._org_ids[key] = str(data["id"])
        return Result(key, str(data["id"]), created=created)

    def _body(self, object_name: str, r: WriteRecord, *, full: bool = False) -> dict[str, Any]:
        """Standard fields at the top, custom ones under ``custom_fields`` by key and typed (v2
        refuses a number sent as text); null clears a custom field, never a name or an email."""
        fields = self._field_map(object_name)
        values = {**(r.payload if full else r.changes), self.objects[object_name].key_field: r.key}
        body: dict[str, Any] = {}
        custom: dict[str, Any] = {}
        for name, value in values.items():
            if name == "email" and name in pd.STANDARD[object_name] and value is not None:
                body["emails"] = [{"value": value, "primary": True, "label": "work"}]
            elif name == "name" and value is not None:
                body["name"] = value
            elif name not in pd.STANDARD[object_name]:
                if name not in fields:
                    raise ConfigError(f"pipedrive {object_name} has no field {name!r}: run ensure")
                custom[fields[name].key] = _typed(value, fields[name].type)
        if custom:
            body["custom_fields"] = custom
        if object_name == "persons" and "primary_account_key" in r.hints:
            account = r.hints["primary_account_key"]
            body["org_id"] = int(self._org_id(r.key, str(account))) if account else None
        return body

    def _org_id(self, key: str, account: str) -> str:
        org = self._org_ids.get(account) or self._find("organizations", account)
        if org is None:
            reason = f"its primary account {account!r} has no Pipedrive organization yet"
            raise RecordRejected(key, reason + " (was the organization refused?)")
        self._org_ids[account] = org
        return org

    def _find(self, object_name: str, key: str) -> str | None:
        """The id of the record whose key field holds ``key``, if any."""
        code = self._field_map(object_name)[self.objects[object_name].key_field].key
        path = f"{pd.API}/{object_name}"
        query = {"term": key, "fields": "custom_fields", "exact_match": "true", "limit": "100"}
        if not (items := self._request("GET", f"{path}/search", params=query)["items"]):
            return None
        ids = ",".join(str(i["item"]["id"]) for i in items)
        rows = self._request("GET", path, params={"ids": ids, "custom_fields": code})
        hits = [int(row["id"]) for row in rows if (row["custom_fields"] or {}).get(code) == key]
        return str(min(hits)) if hits else None

    def _field_map(self, object_name: str) -> dict[str, _Field]:
        with self._lock:  # listed once per instance (and again by each ensure)
            fields = self._fields.get(object_name) or self._list_fields(object_name)
            return self._fields.setdefault(object_name, fields)

    def _list_fields(self, object_name: str) -> dict[str, _Field]:
        """Custom fields by name, every page."""
        out: dict[str, _Field] = {}
        path = f"{pd.API}/{pd.FIELD_LISTS[object_name]}"
        page: dict[str, Any] = {"additional_data": {"next_cursor": ""}}
        while (cursor := (page.get("additional_data") or {}).get("next_cursor")) is not None:
            query = {"limit": "500", **({"cursor": cursor} if cursor else {})}
            page = self._call(f"GET {path}", self._client.sender("GET", path, None, query)).json()
            for f in (f for f in page["data"] if f["is_custom_field"]):
                kind = "ambiguous" if f["field_name"] in out else f["field_type"]
                out[f["field_name"]] = _Field(f["field_code"], kind)
        return out

    def _request(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        """A request through the HTTP base (:meth:`HttpConnector._call`): the answer's data."""
        send = self._client.sender(method, path, body, params)
        return (self._call(f"{method} {path}", send).json() or {}).get("data")


def _typed(value: str | None, field_type: str) -> Any:
    if value is None or field_type != "double":
        return value
    # syncer formats numbers as plain decimals ("42", "-1.5"): no exponent, no trailing zeros.
    return int(value) if value.lstrip("-").isdigit() else float(value)
