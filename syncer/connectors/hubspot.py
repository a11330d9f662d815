"""HubSpot: companies and contacts upserted by syncer's unique properties, associations v4.

Built on ``hubspot-api-client`` 12.x, whose retries are kept off: the engine retries, paces and
bisects (``syncer.apply``); this class only speaks HubSpot. Every call goes through
:meth:`HubSpotConnector._call`, which reports the ``X-HubSpot-RateLimit-*`` headers to the
engine's limiter and turns failures into syncer's errors with the shared status table
(:mod:`syncer.connectors.http_status`).

* Companies are upserted by ``syncer_account_id``, contacts by ``syncer_user_id`` — unique
  properties ``ensure`` creates. A contact that existed before syncer (same email, no
  ``syncer_user_id``) is found by email first and adopted, so no duplicate is made.
* A 207 answer carries per-input errors; they are matched back to records by the id we sent
  (HubSpot does not keep input order), and become rejected results — never a failed batch.
* Associations: contact → company, ``primary`` with type 1 (and 279), others unlabeled 279.
* ``lifecyclestage`` (only if a mapping writes it): HubSpot ignores a move backwards unless the
  value is cleared first, so a record whose lifecycle stage changes is cleared, then written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import hubspot.crm.associations.v4 as assoc_api
import hubspot.crm.objects as objects_api
import hubspot.crm.properties as properties_api
from pydantic import Field, SecretStr

from syncer.connectors.base import (
    AssociationChange,
    AssociationResult,
    Capabilities,
    Connector,
    ConnectorConfig,
    EnsureReport,
    ObjectSpec,
    RateLimit,
    WriteRecord,
    WriteResult,
)
from syncer.connectors.http_status import as_retriable, raise_for_status, rate_limit_info
from syncer.fields import FieldSpec, FieldType

__all__ = ["HubSpotConfig", "HubSpotConnector"]

_API_EXCEPTIONS = (
    objects_api.ApiException,
    properties_api.ApiException,
    assoc_api.ApiException,
)
PRIMARY_TYPE = 1  # contact → company, primary
UNLABELED_TYPE = 279  # contact → company, unlabeled
_TEXT = FieldSpec("text", max_length=65_536)
LIFECYCLE = "lifecyclestage"

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


class HubSpotConfig(ConnectorConfig):
    """HubSpot settings (``settings:`` in syncer.yaml) and the private app's token."""

    access_token: SecretStr
    host: str = Field(default="https://api.hubapi.com", pattern=r"^https?://")
    property_group: str = Field(default="syncer", pattern=r"^[a-z][a-z0-9_]*$")
    timeout: float = Field(default=30.0, gt=0)


class HubSpotConnector(Connector[HubSpotConfig]):
    """The HubSpot destination. See the module docstring."""

    name: ClassVar[str] = "hubspot"
    config_model: ClassVar[type[ConnectorConfig]] = HubSpotConfig
    # 100/10 s is the Free/Starter burst limit; the limiter adopts the portal's real limit
    # from the X-HubSpot-RateLimit-Max header of the first answer.
    capabilities: ClassVar[Capabilities] = Capabilities(
        max_batch=100,
        rate_limit=RateLimit(100, 10.0),
        associations=True,
        association_batch=100,
        removal_modes=frozenset({"none", "clear", "archive"}),
        concurrency=4,  # urllib3's pool is thread-safe; writes share no mutable state
    )
    objects: ClassVar[dict[str, ObjectSpec]] = {
        "companies": ObjectSpec("companies", "syncer_account_id", default_field=_TEXT),
        "contacts": ObjectSpec(
            "contacts",
            "syncer_user_id",
            fields={"email": FieldSpec("email", FieldType.EMAIL, max_length=254)},
            default_field=_TEXT,
            after=("companies",),
        ),
    }

    def __init__(self, config: HubSpotConfig) -> None:
        super().__init__(config)
        token = config.access_token.get_secret_value()
        self._batch = _api(objects_api, "BatchApi", config.host, token)
        self._props = _api(properties_api, "CoreApi", config.host, token)
        self._groups = _api(properties_api, "GroupsApi", config.host, token)
        self._assoc = _api(assoc_api, "BatchApi", config.host, token)

    # --- the contract ---------------------------------------------------------------------

    def write(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
        """Upsert by syncer's unique property; contacts new to syncer matched by email first."""
        key_field = self.object_spec(object_name).key_field
        results: list[WriteResult] = []
        by_id: list[WriteRecord] = list(batch)
        if object_name == "contacts":
            by_email, by_id, refused = self._adopt_by_email(batch, key_field)
            results += refused
            if by_email:
                results += self._upsert(object_name, by_email, key_field, id_property="email")
        if by_id:
            results += self._upsert(object_name, by_id, key_field, id_property=key_field)
        return results

    def ensure(self, object_name: str, fields: Sequence[FieldSpec]) -> EnsureReport:
        """Create the property group and missing properties; report type mismatches."""
        key_field = self.object_spec(object_name).key_field
        report = EnsureReport()
        groups = self._call("GET groups", self._groups.get_all_with_http_info, object_name)
        if not any(g.get("name") == self.config.property_group for g in groups["results"]):
            self._call(
                "POST group",
                self._groups.create_with_http_info,
                object_name,
                {"name": self.config.property_group, "label": "syncer", "displayOrder": -1},
                ok=(409,),
            )
        existing = {
            p["name"]: p
            for p in self._call("GET properties", self._props.get_all_with_http_info, object_name)[
                "results"
            ]
        }
        wanted = {f.name: f for f in fields}
        wanted.setdefault(key_field, FieldSpec(key_field))
        for name, spec in wanted.items():
            kind, field_type = _PROPERTY_TYPES[spec.type]
            have = existing.get(name)
            if have is None:
                created = self._call(
                    "POST property",
                    self._props.create_with_http_info,
                    object_name,
                    self._property_body(name, spec, kind, field_type, unique=name == key_field),
                    ok=(409,),
                )
                if created:
                    report.created.append(name)
                    continue
                # 409: made since we listed them (another run, a person): check what it is.
                have = self._call(
                    f"GET property {name}",
                    self._props.get_by_name_with_http_info,
                    object_name,
                    name,
                )
            problem = _property_problem(name, have, spec, kind, key_field)
            (report.problems if problem else report.existing).append(problem or name)
        return report

    def _property_body(
        self, name: str, spec: FieldSpec, kind: str, field_type: str, *, unique: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": name,
            "label": name.replace("_", " "),
            "type": kind,
            "fieldType": field_type,
            "groupName": self.config.property_group,
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

    def associate(self, changes: Sequence[AssociationChange]) -> Sequence[AssociationResult]:
        """Create (primary: types 1 and 279) or archive contact → company associations."""
        results: list[AssociationResult] = []
        groups: dict[tuple[str, str, bool], list[AssociationChange]] = {}
        for change in changes:
            groups.setdefault((change.from_object, change.to_object, change.remove), []).append(
                change
            )
        for (source, target, remove), group in groups.items():
            if remove:
                inputs = [
                    {"from": {"id": c.from_remote_id}, "to": [{"id": c.to_remote_id}]}
                    for c in group
                ]
                call: Callable[..., Any] = self._assoc.archive_with_http_info
            else:
                inputs = [
                    {
                        "from": {"id": c.from_remote_id},
                        "to": {"id": c.to_remote_id},
                        "types": [
                            {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": t}
                            for t in _types(c.kind)
                        ],
                    }
                    for c in group
                ]
                call = self._assoc.create_with_http_info
            answer = self._call(
                f"POST associations {source}->{target}", call, source, target, {"inputs": inputs}
            )
            failed = _failed_pairs(answer)
            for c in group:
                reason = failed.get((c.from_remote_id, c.to_remote_id))
                results.append(AssociationResult(c, rejected=reason))
        return results

    def archive(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
        """Archive records by their HubSpot id (HubSpot keeps them restorable for 90 days)."""
        inputs = [{"id": r.remote_id} for r in batch if r.remote_id]
        if inputs:
            self._call(
                f"POST {object_name} archive",
                self._batch.archive_with_http_info,
                object_name,
                {"inputs": inputs},
            )
        return [WriteResult(r.key, r.remote_id) for r in batch]

    def close(self) -> None:
        for api in (self._batch, self._props, self._groups, self._assoc):
            pool = getattr(api.api_client.rest_client, "pool_manager", None)
            if pool is not None:
                pool.clear()

    # --- HubSpot specifics ----------------------------------------------------------------

    def _upsert(
        self, object_name: str, records: Sequence[WriteRecord], key_field: str, id_property: str
    ) -> list[WriteResult]:
        lifecycle = [r for r in records if LIFECYCLE in r.changes and r.remote_id]
        if lifecycle:
            # Clear first: HubSpot ignores a lifecycle stage moving backwards [unverified].
            self._call(
                f"POST {object_name} clear lifecyclestage",
                self._batch.update_with_http_info,
                object_name,
                {"inputs": [{"id": r.remote_id, "properties": {LIFECYCLE: ""}} for r in lifecycle]},
            )
        inputs = []
        by_sent_id: dict[str, str] = {}
        for r in records:
            sent_id = r.hints["adopt_email"] if id_property == "email" else r.key
            by_sent_id[sent_id.lower() if id_property == "email" else sent_id] = r.key
            props = {k: ("" if v is None else v) for k, v in r.changes.items()}
            props[key_field] = r.key
            inputs.append({"idProperty": id_property, "id": sent_id, "properties": props})
        answer = self._call(
            f"POST {object_name} batch upsert ({len(inputs)} records)",
            self._batch.upsert_with_http_info,
            object_name,
            {"inputs": inputs},
        )
        results: list[WriteResult] = []
        for item in answer.get("results", []):
            key = item.get("properties", {}).get(key_field)
            if key in by_sent_id.values():
                results.append(WriteResult(key, str(item["id"]), created=item.get("new")))
        for error in answer.get("errors", []):
            context = error.get("context") or {}
            fields = context.get("propertyName") or [None]
            for sent in context.get("ids") or []:
                key = by_sent_id.get(sent.lower() if id_property == "email" else sent)
                if key is not None:
                    results.append(WriteResult(key, rejected=_reason(error), field=fields[0]))
        return results

    def _adopt_by_email(
        self, batch: Sequence[WriteRecord], key_field: str
    ) -> tuple[list[WriteRecord], list[WriteRecord], list[WriteResult]]:
        """Split new contacts into those matching a pre-existing HubSpot contact by email (to be
        upserted by email), the rest, and refusals (the email belongs to another user)."""
        new = [r for r in batch if r.remote_id is None and r.hints.get("email")]
        if not new:
            return [], list(batch), []
        emails = sorted({str(r.hints["email"]).strip().lower() for r in new})
        answer = self._call(
            "POST contacts batch read by email",
            self._batch.read_with_http_info,
            "contacts",
            {
                "idProperty": "email",
                "inputs": [{"id": e} for e in emails],
                "properties": ["email", key_field],
            },
            ok=(404,),  # none of them exists
        )
        found = {
            str(item["properties"].get("email", "")).lower(): item
            for item in answer.get("results", [])
        }
        adopt, rest, refused = [], [], []
        for r in batch:
            email = str(r.hints.get("email") or "").strip().lower()
            item = found.get(email) if r.remote_id is None else None
            if item is None:
                rest.append(r)
                continue
            owner = item["properties"].get(key_field)
            if owner and owner != r.key:
                refused.append(
                    WriteResult(
                        r.key,
                        rejected=f"email {email} belongs to HubSpot contact {item['id']} of "
                        f"syncer user {owner}; two users share one email",
                        field="email",
                    )
                )
            else:
                hints = {**r.hints, "adopt_email": email}
                adopt.append(WriteRecord(r.key, r.payload, r.payload, r.remote_id, hints))
        return adopt, rest, refused

    def _call(
        self, what: str, fn: Callable[..., Any], *args: Any, ok: Iterable[int] = ()
    ) -> dict[str, Any]:
        """One API call: rate-limit headers reported, failures mapped to syncer's errors."""
        label = f"hubspot {what}"
        try:
            response = fn(*args, _preload_content=False, _request_timeout=self.config.timeout)
            status, headers, raw = response.status, response.headers, response.data
        except _API_EXCEPTIONS as exc:
            status, headers, raw = exc.status, exc.headers or {}, exc.body
            if not status:  # the client wraps some transport failures
                retriable = as_retriable(exc.__cause__ or exc, what=label)
                if retriable is not None:
                    raise retriable from exc
                raise
        except Exception as exc:
            retriable = as_retriable(exc, what=label)
            if retriable is not None:
                raise retriable from exc
            raise
        info = rate_limit_info(headers)
        if info is not None:
            self.report_rate_limit(info)
        if status in tuple(ok):
            return {}
        raise_for_status(status, headers, raw, what=label)
        if not raw:
            return {}
        parsed: dict[str, Any] = json.loads(raw)
        return parsed


def _api(package: Any, name: str, host: str, token: str) -> Any:
    """One generated API class on a client of its own package, retries off (the engine's)."""
    configuration = package.Configuration(host=host.rstrip("/"))
    configuration.access_token = token
    configuration.retries = False
    return getattr(package, name)(api_client=package.ApiClient(configuration=configuration))


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


def _types(kind: str) -> tuple[int, ...]:
    return (PRIMARY_TYPE, UNLABELED_TYPE) if kind == "primary" else (UNLABELED_TYPE,)


def _reason(error: Mapping[str, Any]) -> str:
    details = error.get("errors") or []
    if details and isinstance(details[0], Mapping) and details[0].get("message"):
        return f"{error.get('category', 'ERROR')}: {details[0]['message']}"
    return f"{error.get('category', 'ERROR')}: {error.get('message', 'refused')}"


def _failed_pairs(answer: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """(from id, to id) → reason, from the errors of an association batch answer."""
    out: dict[tuple[str, str], str] = {}
    for error in answer.get("errors", []):
        context = error.get("context") or {}
        froms = context.get("fromObjectId") or context.get("from") or []
        tos = context.get("toObjectId") or context.get("to") or []
        for f in froms if isinstance(froms, list) else [froms]:
            for t in tos if isinstance(tos, list) else [tos]:
                out[(str(f), str(t))] = _reason(error)
    return out
