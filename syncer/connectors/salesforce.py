"""Salesforce: Accounts and Contacts upserted by External ID fields, on simple-salesforce.

* **Upserts** by ``Syncer_Account_Id__c`` / ``Syncer_User_Id__c`` (Text(255), External ID,
  Unique) through sObject Collections (``PATCH composite/sobjects/{type}/{field}``, 200 records,
  ``allOrNone: false``); the answer is positional, one result per record.
* A Contact's ``AccountId`` is set by an external-id reference to its **primary** account
  (Salesforce allows one): ``"Account": {"Syncer_Account_Id__c": "34"}``.
* **Bulk API 2.0** for runs with more changed records than ``bulk_threshold``: the engine hands
  large chunks to :meth:`SalesforceConnector.write_bulk` (job → CSV upload → UploadComplete →
  poll → successful/failed results, matched back by external id).
* Per-record errors: ``DUPLICATE_EXTERNAL_ID``, ``STRING_TOO_LONG``, ``INVALID_EMAIL_ADDRESS``
  and other validation errors reject that record with Salesforce's message;
  ``UNABLE_TO_LOCK_ROW`` makes the batch retriable (upserts are idempotent). A record syncer
  wrote before that Salesforce no longer holds (``ENTITY_IS_DELETED``, ``REQUIRED_FIELD_MISSING``
  for a record syncer knows, or an upsert that *created* it from the changed fields alone) has
  its remote id dropped and its whole payload sent once more; if it is still in the recycle bin
  the rejection says to undelete it or empty it from the bin.
* **Daily API budget**: every answer's ``Sforce-Limit-Info`` is reported to the engine; once the
  org has used ``daily_limit_share`` of its allocation the run stops before the next request
  (syncer must not starve the org's other integrations), as does 403 ``REQUEST_LIMIT_EXCEEDED``.
* ``ensure`` describes the objects and reports exactly which fields an admin must add, or creates
  them through the Tooling API when ``allow_create_fields`` is on.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import requests
from pydantic import Field, SecretStr, model_validator
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError

from syncer.connectors.base import (
    BulkResult,
    Capabilities,
    Connector,
    ConnectorConfig,
    EnsureReport,
    ObjectSpec,
    RateLimitInfo,
    WriteRecord,
    WriteResult,
)
from syncer.connectors.http_status import (
    Action,
    Failure,
    StatusRule,
    as_retriable,
    raise_for_status,
)
from syncer.errors import ConfigError, FatalError, RetriableError
from syncer.fields import FieldSpec, FieldType

__all__ = ["SalesforceConfig", "SalesforceConnector"]

_TEXT = FieldSpec("text", max_length=255)
_LONG_TEXT_MAX = 131_072
# Optional Long Text Area companions of the token fields: the full list for display (reports,
# list views and SOQL cannot filter Long Text, so the Text(255) field stays the one to filter).
_FULL = FieldSpec("full", FieldType.TOKENS, max_length=_LONG_TEXT_MAX, companions=False)
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


def _full_companions(*names: str) -> dict[str, FieldSpec]:
    return {name: dataclasses.replace(_FULL, name=name) for name in names}


_RETRIABLE_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE"})
_OVERRIDES = (
    StatusRule(
        403,
        Action.FATAL,
        Failure.TRANSIENT,
        "the org's daily API request limit is spent; run again once it resets",
        body_contains="REQUEST_LIMIT_EXCEEDED",
    ),
)
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


class SalesforceConfig(ConnectorConfig):
    """How to reach the org: a session (instance URL + session id), a username/password/security
    token login, or a JWT bearer (consumer key + private key file)."""

    instance_url: str | None = None
    session_id: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    security_token: SecretStr | None = None
    domain: str = "login"  # "test" for sandboxes
    consumer_key: str | None = None
    jwt_key_file: Path | None = None
    api_version: str = "59.0"
    bulk_threshold: int = Field(default=2000, ge=1)
    bulk_batch: int = Field(default=10_000, ge=1)
    bulk_poll_seconds: float = Field(default=2.0, gt=0)
    daily_limit_share: float = Field(default=0.9, gt=0, le=1)
    #: TLS verification: True, False, or a CA bundle path (the emulator's self-signed cert).
    verify: bool | str = True
    allow_create_fields: bool = False
    timeout: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _one_login(self) -> SalesforceConfig:
        ways = {
            "session": self.session_id is not None and self.instance_url is not None,
            "password": self.username is not None and self.password is not None,
            "jwt": self.username is not None
            and self.consumer_key is not None
            and self.jwt_key_file is not None,
        }
        if not any(ways.values()):
            raise ValueError(
                "give instance_url + session_id, or username + password (+ security_token), or "
                "username + consumer_key + jwt_key_file (JWT bearer)"
            )
        return self


class SalesforceConnector(Connector[SalesforceConfig]):
    """The Salesforce destination. See the module docstring."""

    name: ClassVar[str] = "salesforce"
    config_model: ClassVar[type[ConnectorConfig]] = SalesforceConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        max_batch=200,
        associations=False,
        removal_modes=frozenset({"none", "clear"}),
        bulk_threshold=2000,
    )
    objects: ClassVar[dict[str, ObjectSpec]] = {
        "Account": ObjectSpec(
            "Account",
            "Syncer_Account_Id__c",
            fields={
                "Name": FieldSpec("Name", max_length=255),
                **_full_companions(
                    "Syncer_Users_Full__c",
                    "Syncer_User_Emails_Full__c",
                    "Syncer_Member_Stages_Full__c",
                ),
            },
            default_field=_TEXT,
            custom_suffix="__c",
        ),
        "Contact": ObjectSpec(
            "Contact",
            "Syncer_User_Id__c",
            fields={
                "Email": FieldSpec("Email", FieldType.EMAIL, max_length=80),
                "FirstName": FieldSpec("FirstName", max_length=40),
                "LastName": FieldSpec("LastName", max_length=80),
                **_full_companions("Syncer_Accounts_Full__c", "Syncer_Account_Ids_Full__c"),
            },
            default_field=_TEXT,
            after=("Account",),
            custom_suffix="__c",
        ),
    }

    def __init__(self, config: SalesforceConfig, *, client: Salesforce | None = None) -> None:
        super().__init__(config)
        self.sf = client or _login(config)
        self._exhausted: str | None = None
        # The bulk threshold is a setting of this destination, so the instance's capabilities
        # carry it (the engine reads them from the instance).
        self.capabilities = dataclasses.replace(  # type: ignore[misc]
            type(self).capabilities, bulk_threshold=config.bulk_threshold
        )

    # --- the contract ---------------------------------------------------------------------

    def write(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
        """sObject Collections upsert by the object's External ID field."""
        spec = self.object_spec(object_name)
        body = {
            "allOrNone": False,
            "records": [self._record(object_name, spec.key_field, r) for r in batch],
        }
        answer = self._call(
            f"PATCH composite/sobjects/{object_name}/{spec.key_field} ({len(batch)} records)",
            lambda: self.sf.restful(
                f"composite/sobjects/{object_name}/{spec.key_field}",
                method="PATCH",
                json=body,
                timeout=self.config.timeout,
            ),
        )
        results: list[WriteResult] = []
        again: list[WriteRecord] = []
        for record, item in zip(batch, answer or [], strict=True):
            errors = item.get("errors") or []
            codes = {e.get("statusCode") for e in errors}
            # A record syncer wrote before that Salesforce no longer holds (deleted, or emptied
            # from the recycle bin) was (re)created from the changed fields only, or refused for
            # lacking the others: drop its remote id and send the whole payload once more.
            gone = record.remote_id is not None and "full_retry" not in record.hints
            if item.get("success"):
                if gone and item.get("created") and record.changes != record.payload:
                    again.append(_whole(record))
                else:
                    results.append(
                        WriteResult(record.key, item.get("id"), created=item.get("created"))
                    )
            elif codes & _RETRIABLE_CODES:
                raise RetriableError(
                    f"salesforce upsert {object_name}: {_message(errors)} (record {record.key})"
                )
            elif gone and codes & {"ENTITY_IS_DELETED", "REQUIRED_FIELD_MISSING"}:
                again.append(_whole(record))
            else:
                fields = [f for e in errors for f in e.get("fields") or []]
                reason = _message(errors)
                if "ENTITY_IS_DELETED" in codes:
                    reason += (
                        f" — the {object_name} with {spec.key_field} {record.key} is in "
                        "Salesforce's recycle bin: undelete it, or empty it from the bin so "
                        "that syncer creates it again"
                    )
                results.append(
                    WriteResult(record.key, rejected=reason, field=(fields or [None])[0])
                )
        if again:
            results += self.write(object_name, again)
        return results

    def write_bulk(self, object_name: str, records: Sequence[WriteRecord]) -> BulkResult:
        """Bulk API 2.0 upsert of many records (the engine uses it above ``bulk_threshold``);
        the request count is every HTTP call of the job, polls included."""
        spec = self.object_spec(object_name)
        calls = 0

        def http(method: str, url: str, what: str, **kwargs: Any) -> requests.Response:
            nonlocal calls
            calls += 1
            return self._http(method, url, what, **kwargs)

        rows = [self._record(object_name, spec.key_field, r, flat=True) for r in records]
        columns = sorted({c for row in rows for c in row})
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            # "#N/A" clears a field in Bulk API 2.0; an empty cell leaves it as it is.
            writer.writerow(
                {c: ("#N/A" if row.get(c, "") is None else row.get(c, "")) for c in columns}
            )
        jobs = self.sf.bulk2_url + "ingest/"
        job = http(
            "POST", jobs, "create bulk job",
            json={
                "object": object_name,
                "externalIdFieldName": spec.key_field,
                "operation": "upsert",
                "contentType": "CSV",
                "lineEnding": "LF",
            },
        ).json()  # fmt: skip
        job_url = f"{jobs}{job['id']}/"
        http(
            "PUT", f"{job_url}batches/", "upload bulk CSV",
            data=buffer.getvalue().encode("utf-8"), headers={"Content-Type": "text/csv"},
        )  # fmt: skip
        http("PATCH", job_url, "close bulk job", json={"state": "UploadComplete"})
        deadline = time.monotonic() + max(self.config.timeout * 10, 600)
        while True:
            state = http("GET", job_url, "poll bulk job").json()
            if state["state"] in ("JobComplete", "Failed", "Aborted"):
                break
            if time.monotonic() > deadline:
                raise RetriableError(f"salesforce bulk job {job['id']} still {state['state']}")
            time.sleep(self.config.bulk_poll_seconds)
        if state["state"] != "JobComplete":
            raise FatalError(
                f"salesforce bulk job {job['id']} {state['state']}: "
                f"{state.get('errorMessage', 'no message')}"
            )
        out: dict[str, WriteResult] = {}
        for kind in ("successfulResults", "failedResults"):
            text = http("GET", f"{job_url}{kind}/", f"read {kind}").text
            for row in csv.DictReader(io.StringIO(text)):
                key = row.get(spec.key_field, "")
                if kind == "successfulResults":
                    out[key] = WriteResult(
                        key, row.get("sf__Id") or None, created=row.get("sf__Created") == "true"
                    )
                else:
                    out[key] = WriteResult(key, rejected=row.get("sf__Error") or "failed")
        results = [
            out.get(r.key) or WriteResult(r.key, rejected="missing from the bulk job's results")
            for r in records
        ]
        return BulkResult(results, calls)

    def ensure(self, object_name: str, fields: Sequence[FieldSpec]) -> EnsureReport:
        """Check the fields with describe; create missing ones through the Tooling API if
        allowed, otherwise say exactly what an admin must add."""
        spec = self.object_spec(object_name)
        describe = self._call(
            f"describe {object_name}",
            lambda: self.sf.restful(
                f"sobjects/{object_name}/describe/", timeout=self.config.timeout
            ),
        )
        have = {f["name"]: f for f in describe["fields"]}
        report = EnsureReport()
        wanted = {f.name: f for f in fields}
        wanted.setdefault(spec.key_field, FieldSpec(spec.key_field))
        for name, field in wanted.items():
            if name in have:
                problem = _check_field(object_name, field, have[name], spec.key_field)
                (report.problems if problem else report.existing).append(problem or name)
                continue
            if not name.endswith("__c"):
                report.problems.append(f"standard field {object_name}.{name} does not exist")
                continue
            metadata = {**_metadata(field), "label": name[:-3].replace("_", " ")}
            if name == spec.key_field:
                metadata.update(externalId=True, unique=True, caseSensitive=True)
            if not self.config.allow_create_fields:
                report.problems.append(
                    f"add {object_name}.{name}: {metadata['type']}"
                    + (f"({metadata['length']})" if "length" in metadata else "")
                    + (", External ID, Unique" if name == spec.key_field else "")
                    + " — or set allow_create_fields: true to let syncer create it"
                )
                continue
            self._call(
                f"create field {object_name}.{name}",
                partial(
                    self.sf.restful,
                    "tooling/sobjects/CustomField/",
                    method="POST",
                    json={"FullName": f"{object_name}.{name}", "Metadata": metadata},
                    timeout=self.config.timeout,
                ),
            )
            report.created.append(name)
        return report

    def close(self) -> None:
        self.sf.session.close()

    # --- Salesforce specifics -------------------------------------------------------------

    def _record(
        self, object_name: str, key_field: str, r: WriteRecord, *, flat: bool = False
    ) -> dict[str, Any]:
        values: dict[str, Any] = dict(r.changes)
        values[key_field] = r.key
        if object_name == "Contact" and "primary_account_key" in r.hints:
            account = r.hints["primary_account_key"]
            ref = self.objects["Account"].key_field
            if flat:
                values[f"Account.{ref}"] = account
            elif account:
                values["Account"] = {ref: account}
            else:
                values["AccountId"] = None
        if flat:
            return values
        return {"attributes": {"type": object_name}, **values}

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """One REST call: budget checked first, limits reported, errors mapped."""
        if self._exhausted:
            raise FatalError(self._exhausted)
        label = f"salesforce {what}"
        try:
            answer = fn()
        except SalesforceError as exc:
            raise_for_status(exc.status, {}, exc.content, what=label, overrides=_OVERRIDES)
            raise
        except Exception as exc:
            retriable = as_retriable(exc, what=label)
            if retriable is not None:
                raise retriable from exc
            raise
        self._report_usage()
        return answer

    def _http(self, method: str, url: str, what: str, **kwargs: Any) -> requests.Response:
        """A raw request on the client's session (Bulk API 2.0 has no simple-salesforce call
        that exposes the job's results per record)."""
        if self._exhausted:
            raise FatalError(self._exhausted)
        label = f"salesforce {what}"
        headers = {**self.sf.headers, **kwargs.pop("headers", {})}
        try:
            response = self.sf.session.request(
                method, url, headers=headers, timeout=self.config.timeout, **kwargs
            )
        except Exception as exc:
            retriable = as_retriable(exc, what=label)
            if retriable is not None:
                raise retriable from exc
            raise
        raise_for_status(
            response.status_code, response.headers, response.text, what=label,
            overrides=_OVERRIDES,
        )  # fmt: skip
        limit_info = response.headers.get("Sforce-Limit-Info")
        if limit_info:
            self.sf.api_usage = Salesforce.parse_api_usage(limit_info)
        self._report_usage()
        return response

    def _report_usage(self) -> None:
        usage = (self.sf.api_usage or {}).get("api-usage")
        if usage is None:
            return
        used, total = int(usage.used), int(usage.total)
        self.report_rate_limit(RateLimitInfo(daily_limit=total, daily_remaining=total - used))
        if total and used >= self.config.daily_limit_share * total:
            self._exhausted = (
                f"salesforce: the org has used {used:,} of its {total:,} daily API requests, "
                f"over the {self.config.daily_limit_share:.0%} share syncer may use "
                "(daily_limit_share); the run stops here and the next run resumes"
            )


def _login(config: SalesforceConfig) -> Salesforce:
    session = requests.Session()
    session.verify = config.verify
    if isinstance(config.verify, str):
        session.trust_env = False  # else REQUESTS_CA_BUNDLE overrides verify
    common: dict[str, Any] = {"version": config.api_version, "session": session}
    try:
        if config.session_id is not None and config.instance_url is not None:
            return Salesforce(
                instance_url=config.instance_url,
                session_id=config.session_id.get_secret_value(),
                **common,
            )
        if config.consumer_key is not None and config.jwt_key_file is not None:
            return Salesforce(
                username=config.username,
                consumer_key=config.consumer_key,
                privatekey_file=str(config.jwt_key_file),
                domain=config.domain,
                **common,
            )
        return Salesforce(
            username=config.username,
            password=config.password.get_secret_value() if config.password else None,
            security_token=(
                config.security_token.get_secret_value() if config.security_token else ""
            ),
            domain=config.domain,
            **common,
        )
    except SalesforceError as exc:
        raise ConfigError(f"salesforce login failed: {exc}") from None


def _whole(record: WriteRecord) -> WriteRecord:
    """``record`` with every field and without its stale remote id, sent once more."""
    hints = {**record.hints, "full_retry": True}
    return WriteRecord(record.key, record.payload, record.payload, None, hints)


def _message(errors: Sequence[Mapping[str, Any]]) -> str:
    return "; ".join(f"{e.get('statusCode')}: {e.get('message')}" for e in errors) or "failed"


def _long(field: FieldSpec) -> bool:
    return field.type in (FieldType.STRING, FieldType.TOKENS) and (field.max_length or 0) > 255


def _metadata(field: FieldSpec) -> dict[str, Any]:
    """Tooling API metadata of the custom field that holds ``field``."""
    if _long(field):
        length = min(field.max_length or _LONG_TEXT_MAX, _LONG_TEXT_MAX)
        return {"type": "LongTextArea", "length": length, "visibleLines": 5}
    return dict(_FIELD_TYPES[field.type])


def _check_field(
    object_name: str, spec: FieldSpec, field: Mapping[str, Any], key_field: str
) -> str | None:
    """What is wrong with an existing field for what syncer writes into it, if anything."""
    name = spec.name
    if name == key_field and not (field.get("externalId") and field.get("unique")):
        return f"field {name} exists but is not External ID + Unique; syncer upserts by it"
    if not name.endswith("__c"):
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
