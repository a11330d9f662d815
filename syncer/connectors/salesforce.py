"""Salesforce: Accounts and Contacts upserted by External ID fields, on simple-salesforce.

* **Upserts** by ``Syncer_Account_Id__c`` / ``Syncer_User_Id__c`` (Text(255), External ID,
  Unique) through sObject Collections (``PATCH composite/sobjects/{type}/{field}``, 200 records,
  ``allOrNone: false``); the answer is positional, one result per record.
* A Contact's ``AccountId`` is set by an external-id reference to its **primary** account
  (Salesforce allows one): ``"Account": {"Syncer_Account_Id__c": "34"}``.
* **Bulk API 2.0** for runs with more changed records than ``bulk_threshold``: the engine hands
  chunks of ``bulk_batch`` records to :meth:`SalesforceConnector.write_bulk`
  (:mod:`syncer.connectors.salesforce_bulk`).
* Per-record errors: ``DUPLICATE_EXTERNAL_ID``, ``STRING_TOO_LONG``, ``INVALID_EMAIL_ADDRESS``
  and other validation errors reject that record with Salesforce's message;
  ``UNABLE_TO_LOCK_ROW`` makes the batch retriable (upserts are idempotent). A record syncer
  wrote before that Salesforce no longer holds (``ENTITY_IS_DELETED``, ``REQUIRED_FIELD_MISSING``
  for a record syncer knows, or an upsert that *created* it from the changed fields alone) has
  its remote id dropped and its whole payload sent once more; if it is still in the recycle bin
  the rejection says to undelete it or empty it from the bin.
* Every request goes through the HTTP base (:class:`syncer.connectors.http.HttpConnector`):
  the status table, transport errors, and the **daily API budget** — every answer's
  ``Sforce-Limit-Info`` is reported to the engine; once the org has used ``daily_limit_share`` of
  its allocation the run stops before the next request (syncer must not starve the org's other
  integrations), as does 403 ``REQUEST_LIMIT_EXCEEDED``. Settings and login:
  :mod:`.salesforce_config`.
* ``ensure`` reports exactly which fields an admin must add, or creates and grants them when
  ``allow_create_fields`` is on (:mod:`.salesforce_access`); a 401 signs in once more.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from functools import partial
from typing import Any, ClassVar

from syncer.connectors.base import (
    BulkResult,
    Capabilities,
    ConnectorConfig,
    EnsureReport,
    ObjectSpec,
    WriteRecord,
    WriteResult,
)
from syncer.connectors.http import HttpAnswer, HttpConnector
from syncer.connectors.http_status import Action, Failure, StatusRule
from syncer.connectors.salesforce_access import ensure_object
from syncer.connectors.salesforce_bulk import abort_jobs, upsert_job
from syncer.connectors.salesforce_config import SalesforceConfig, login, relogin
from syncer.connectors.salesforce_fields import SUFFIX, full_companions
from syncer.connectors.salesforce_results import collection_results
from syncer.fields import FieldSpec, FieldType

__all__ = ["SalesforceConfig", "SalesforceConnector"]

_TEXT = FieldSpec("text", max_length=255)
_LIMIT_EXCEEDED = "REQUEST_LIMIT_EXCEEDED"
_SPENT = "the org's daily API request limit is spent; run again once it resets"


class SalesforceConnector(HttpConnector[SalesforceConfig]):
    """The Salesforce destination. See the module docstring."""

    name: ClassVar[str] = "salesforce"
    config_model: ClassVar[type[ConnectorConfig]] = SalesforceConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        max_batch=200,
        associations=False,
        removal_modes=frozenset({"none", "clear"}),
        bulk_threshold=2000,  # the config's defaults; the properties below read the config
        bulk_batch=10_000,
        update_hints=frozenset({"primary_account_key"}),  # every Contact write sets AccountId
    )
    # REQUEST_LIMIT_EXCEEDED: the org's daily budget, not a permission problem.
    status_overrides: ClassVar[Sequence[StatusRule]] = (
        StatusRule(403, Action.FATAL, Failure.TRANSIENT, _SPENT, body_contains=_LIMIT_EXCEEDED),
    )
    objects: ClassVar[dict[str, ObjectSpec]] = {
        "Account": ObjectSpec(
            "Account",
            "Syncer_Account_Id__c",
            fields={
                # Required on create and never nillable: a clear leaves them with their last value.
                "Name": FieldSpec("Name", max_length=255, required=True),
                **full_companions(
                    "Syncer_Users_Full__c",
                    "Syncer_User_Emails_Full__c",
                    "Syncer_Member_Stages_Full__c",
                ),
            },
            default_field=_TEXT,
            custom_suffix=SUFFIX,
        ),
        "Contact": ObjectSpec(
            "Contact",
            "Syncer_User_Id__c",
            fields={
                "Email": FieldSpec("Email", FieldType.EMAIL, max_length=80),
                "FirstName": FieldSpec("FirstName", max_length=40),
                "LastName": FieldSpec("LastName", max_length=80, required=True),
                **full_companions("Syncer_Accounts_Full__c", "Syncer_Account_Ids_Full__c"),
            },
            default_field=_TEXT,
            after=("Account",),
            custom_suffix=SUFFIX,
        ),
    }

    def __init__(self, config: SalesforceConfig) -> None:
        super().__init__(config)
        self.sf = login(config)
        self._running_jobs: dict[str, str] = {}  # bulk CSV digest -> job id past its deadline

    @property
    def bulk_threshold(self) -> int | None:
        return self.config.bulk_threshold

    @property
    def bulk_batch_size(self) -> int:
        return self.config.bulk_batch

    # --- the contract ---------------------------------------------------------------------

    def write(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
        """sObject Collections upsert by the object's External ID field."""
        spec = self.object_spec(object_name)
        body = {
            "allOrNone": False,
            "records": [self._record(object_name, spec.key_field, r) for r in batch],
        }
        path = f"composite/sobjects/{object_name}/{spec.key_field}"
        answer = self._rest(f"PATCH {path} ({len(batch)} records)", "PATCH", path, json=body)
        results, again = collection_results(object_name, spec.key_field, batch, answer.json())
        if again:
            results += self.write(object_name, again)
        return results

    def write_bulk(self, object_name: str, records: Sequence[WriteRecord]) -> BulkResult:
        """Bulk API 2.0 upsert of many records (the engine uses it above ``bulk_threshold``);
        the request count is every HTTP call of the job, polls included."""
        key_field = self.object_spec(object_name).key_field
        return upsert_job(
            self._rest,
            self.sf.bulk2_url + "ingest/",
            object_name=object_name,
            key_field=key_field,
            rows=[self._record(object_name, key_field, r, flat=True) for r in records],
            poll_seconds=self.config.bulk_poll_seconds,
            deadline_seconds=self.config.bulk_wait_seconds,
            max_bytes=self.config.bulk_max_bytes,
            running=self._running_jobs,
        )

    def ensure(self, object_name: str, fields: Sequence[FieldSpec]) -> EnsureReport:
        """Check the fields with describe; create missing ones through the Tooling API and grant
        field-level security if allowed (:mod:`.salesforce_access`), otherwise say exactly what
        an admin must add; every field verified visible before any write."""
        return ensure_object(
            self._rest,
            object_name=object_name,
            key_field=self.object_spec(object_name).key_field,
            fields=fields,
            allow_create=self.config.allow_create_fields,
        )

    def check(self) -> None:
        """One authenticated read (the org's limits); see :meth:`HttpConnector._check_call`."""
        self._check_call("GET limits", partial(self._send, "GET", "limits/", {}))

    def close(self) -> None:
        abort_jobs(self._rest, self.sf.bulk2_url + "ingest/", self._running_jobs)
        self.sf.session.close()

    def _reauthenticate(self) -> bool:
        """After a 401 (the session expired or was revoked) sign in once more; a bare session
        id cannot (a ConfigError saying what to configure)."""
        old, self.sf = self.sf, relogin(self.config)
        old.session.close()
        return True

    # --- Salesforce specifics -------------------------------------------------------------

    def _record(
        self, object_name: str, key_field: str, r: WriteRecord, *, flat: bool = False
    ) -> dict[str, Any]:
        values: dict[str, Any] = dict(r.changes)
        values[key_field] = r.key
        if object_name == "Contact" and "primary_account_key" in r.hints:
            account = r.hints["primary_account_key"]
            ref = self.objects["Account"].key_field
            if flat and account:
                values[f"Account.{ref}"] = account
            elif flat:
                values["AccountId"] = None  # "#N/A": a relationship column cannot clear it
            elif account:
                values["Account"] = {ref: account}
            else:
                values["AccountId"] = None
        if flat:
            return values
        return {"attributes": {"type": object_name}, **values}

    def _rest(
        self, what: str, method: str, url: str, *, ok: Collection[int] = (), **kwargs: Any
    ) -> HttpAnswer:
        """One request through the HTTP base; ``url`` relative to the REST base, or absolute;
        statuses in ``ok`` are returned, not raised."""
        return self._call(what, partial(self._send, method, url, kwargs), ok=ok)

    def _send(self, method: str, url: str, kwargs: Mapping[str, Any]) -> HttpAnswer:
        """One request on the client's session (signed in by :func:`login`), as an answer."""
        extra = kwargs.get("headers", {})
        options = {k: v for k, v in kwargs.items() if k != "headers"}
        response = self.sf.session.request(
            method,
            url if "://" in url else self.sf.base_url + url,
            headers={**self.sf.headers, **extra},
            timeout=self.config.timeout,
            **options,
        )
        return HttpAnswer(response.status_code, response.headers, response.content)
