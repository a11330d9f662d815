"""The REST resources of the Salesforce emulator: one method per documented endpoint.

`RestApi.route` maps a request (already authenticated and counted by
`syncer.testing.salesforce_emulator`) to a handler and returns a `Reply`. Handlers raise
`SalesforceApiError` for whole-request failures; the caller turns it into Salesforce's
``[{message, errorCode, fields}]`` body.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from syncer.testing.salesforce_bulk import BulkIngest
from syncer.testing.salesforce_org import Org
from syncer.testing.salesforce_permissions import Permissions
from syncer.testing.salesforce_schema import SalesforceApiError
from syncer.testing.salesforce_soql import execute, parse

COLLECTION_LIMIT = 200
_NOT_SUPPORTED_TYPE = (
    "sObject type '{name}' is not supported. If you are attempting to use a custom object, be "
    "sure to append the '__c' after the entity name. Please reference your WSDL or the "
    "describe call for the appropriate names."
)


@dataclass
class Reply:
    """An answer: status, JSON-able body (or CSV text) and the record count for the log."""

    status: int
    body: Any = None
    records: int = 0
    content_type: str = "application/json;charset=UTF-8"


@dataclass
class RestRequest:
    """What a handler needs to know about the request."""

    method: str
    parts: list[str]  # path after /services/data/vXX.X/, split on "/"
    base: str  # /services/data/vXX.X
    params: dict[str, list[str]]
    body: Any
    lock_row: Callable[[], bool] = field(default=lambda: False)
    #: An injected result fault for this request ("missing_result", "extra_result" or None),
    #: drawn only by the handlers that answer per record (collections, bulk results).
    result_fault: Callable[[], str | None] = field(default=lambda: None)

    def json_object(self) -> dict[str, Any]:
        """The body, which must be a JSON object."""
        if not isinstance(self.body, dict):
            raise SalesforceApiError(
                400, "JSON_PARSER_ERROR", "The request body must be a JSON object"
            )
        return self.body


def not_found() -> SalesforceApiError:
    """Salesforce's answer for an unknown resource."""
    return SalesforceApiError(404, "NOT_FOUND", "The requested resource does not exist")


class RestApi:
    """Routes and handlers over one org, its bulk jobs and its open query cursors."""

    ROUTES: tuple[tuple[str, str, str], ...] = (
        ("GET", r"limits", "limits"),
        ("GET", r"sobjects", "describe_global"),
        ("GET", r"sobjects/[^/]+/describe", "describe"),
        ("GET", r"sobjects/[^/]+/[^/]+", "get_record"),
        ("DELETE", r"sobjects/[^/]+/[^/]+", "delete_record"),
        ("PATCH", r"sobjects/[^/]+/[^/]+/.+", "upsert_one"),
        ("PATCH", r"composite/sobjects/[^/]+/[^/]+", "collections_upsert"),
        ("GET", r"query", "query"),
        ("GET", r"query/[^/]+", "query_more"),
        ("POST", r"tooling/sobjects/CustomField", "create_field"),
        ("POST", r"jobs/ingest", "create_job"),
        ("GET", r"jobs/ingest", "list_jobs"),
        ("GET", r"jobs/ingest/[^/]+", "get_job"),
        ("PATCH", r"jobs/ingest/[^/]+", "set_job_state"),
        ("DELETE", r"jobs/ingest/[^/]+", "delete_job"),
        ("PUT", r"jobs/ingest/[^/]+/batches", "upload"),
        ("GET", r"jobs/ingest/[^/]+/(successfulResults|failedResults|unprocessedrecords)",
         "job_results"),
    )  # fmt: skip

    def __init__(
        self,
        org: Org,
        bulk: BulkIngest,
        *,
        page_size: int,
        usage: Callable[[], tuple[int, int]],
    ) -> None:
        self.org = org
        self.bulk = bulk
        self.page_size = page_size
        self.usage = usage
        self.cursors: dict[str, list[dict[str, Any]]] = {}  # query locator -> result rows
        self.permissions = Permissions(org)  # field-level security (issue 17)

    def route(self, req: RestRequest) -> Reply:
        """Dispatch to the handler for this method and path (404 or 405 otherwise)."""
        answered = self.permissions.route(req.method, req.parts, req.params, req.body)
        if answered is not None:
            return Reply(*answered)
        rel = "/".join(req.parts)
        allowed = []
        for method, pattern, handler in self.ROUTES:
            if re.fullmatch(pattern, rel, re.IGNORECASE):
                if method == req.method:
                    reply: Reply = getattr(self, handler)(req)
                    return reply
                allowed.append(method)
        if allowed:
            raise SalesforceApiError(
                405,
                "METHOD_NOT_ALLOWED",
                f"HTTP Method '{req.method}' not allowed. Allowed are {','.join(allowed)}",
            )
        raise not_found()

    # -- org, describe, records ----

    def limits(self, req: RestRequest) -> Reply:
        """``GET limits/``: the daily API allocation (other limits are not modeled)."""
        used, limit = self.usage()
        return Reply(200, {"DailyApiRequests": {"Max": limit, "Remaining": max(limit - used, 0)}})

    def describe_global(self, req: RestRequest) -> Reply:
        """``GET sobjects/``."""
        sobjects = [o.summary(req.base) for o in self.org.objects.values()]
        return Reply(200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects})

    def describe(self, req: RestRequest) -> Reply:
        """``GET sobjects/{type}/describe/``."""
        return Reply(200, self.org.object(req.parts[1]).describe(req.base))

    def _existing(self, req: RestRequest) -> tuple[str, dict[str, Any]]:
        obj, rec, deleted = self.org.lookup(req.parts[2])
        if obj.name.lower() != req.parts[1].lower() or rec is None:
            raise not_found()
        if deleted:
            raise SalesforceApiError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
        return obj.name, rec

    def get_record(self, req: RestRequest) -> Reply:
        """``GET sobjects/{type}/{id}``."""
        name, rec = self._existing(req)
        attributes = {"type": name, "url": f"{req.base}/sobjects/{name}/{rec['Id']}"}
        return Reply(200, {"attributes": attributes, **rec}, records=1)

    def delete_record(self, req: RestRequest) -> Reply:
        """``DELETE sobjects/{type}/{id}``: to the recycle bin."""
        name, rec = self._existing(req)
        self.org.delete(name, rec["Id"])
        return Reply(204)

    # -- writes ----

    def upsert_one(self, req: RestRequest) -> Reply:
        """``PATCH sobjects/{type}/{extField}/{value}``: 201 created, 200 updated, 300 ambiguous."""
        obj = self.org.object(req.parts[1])
        ext = self.org.external_id_field(obj, req.parts[2])
        record = {k: v for k, v in req.json_object().items() if k != "attributes"}
        record[ext.name] = "/".join(req.parts[3:])
        matches = self.org.find(obj.name, ext.name, record[ext.name])
        if len(matches) > 1:
            return Reply(300, [f"{req.base}/sobjects/{obj.name}/{m['Id']}" for m in matches])
        (outcome,) = self.org.upsert(obj.name, ext.name, [record], lock_row=req.lock_row)
        if not outcome.success:
            errors = [
                {"message": e.message, "errorCode": e.status_code, "fields": [*e.fields]}
                for e in outcome.errors
            ]
            return Reply(400, errors, records=1)
        return Reply(201 if outcome.created else 200, outcome.as_json(), records=1)

    def collections_upsert(self, req: RestRequest) -> Reply:
        """``PATCH composite/sobjects/{type}/{extField}``: positional UpsertResults, 200."""
        payload = req.json_object()
        records = payload.get("records")
        if not isinstance(records, list) or not records:
            raise SalesforceApiError(400, "INVALID_FIELD", "records: a non-empty list is required")
        if len(records) > COLLECTION_LIMIT:
            raise SalesforceApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        obj = self.org.object(req.parts[2])
        rows = []
        for record in records:
            attributes = record.get("attributes") if isinstance(record, dict) else None
            if not isinstance(attributes, dict) or "type" not in attributes:
                raise SalesforceApiError(
                    400,
                    "INVALID_INPUT",
                    "When using sObject Collections, every record needs an attributes map "
                    "with a type",
                )
            if str(attributes["type"]).lower() != obj.name.lower():
                raise SalesforceApiError(
                    400,
                    "INVALID_TYPE",
                    f"Record type {attributes['type']} does not match the request URI's {obj.name}",
                )
            rows.append({k: v for k, v in record.items() if k != "attributes"})
        all_or_none = bool(payload.get("allOrNone"))
        outcomes = self.org.upsert(
            obj.name, req.parts[3], rows, all_or_none=all_or_none, lock_row=req.lock_row
        )
        answer = [o.as_json() for o in outcomes]
        fault = req.result_fault()
        if fault == "missing_result":
            answer.pop()  # positional: the last record goes unanswered
        elif fault == "extra_result":
            answer.append(dict(answer[0]))
        return Reply(200, answer, records=len(rows))

    def create_field(self, req: RestRequest) -> Reply:
        """``POST tooling/sobjects/CustomField/``: 201 with the new field's id."""
        field_id = self.org.create_custom_field(req.json_object())
        body = {"id": field_id, "success": True, "errors": [], "warnings": [], "infos": []}
        return Reply(201, body)

    # -- query ----

    def query(self, req: RestRequest) -> Reply:
        """``GET query/?q=``: the first page; later pages through ``nextRecordsUrl``."""
        parsed = parse((req.params.get("q") or [""])[0])
        if parsed.object.lower() not in self.org.objects:
            raise SalesforceApiError(
                400, "INVALID_TYPE", _NOT_SUPPORTED_TYPE.format(name=parsed.object)
            )
        obj = self.org.object(parsed.object)
        selected, rows = execute(parsed, obj, self.org.live(obj.name))
        if parsed.fields is None:
            return Reply(200, {"totalSize": len(rows), "done": True, "records": []})
        page = []
        for row in rows:
            attributes = {"type": obj.name, "url": f"{req.base}/sobjects/{obj.name}/{row['Id']}"}
            page.append({"attributes": attributes, **{name: row.get(name) for name in selected}})
        locator = self.org.new_id("01g")
        self.cursors[locator] = page
        return self._page(locator, 0, req.base)

    def query_more(self, req: RestRequest) -> Reply:
        """``GET query/{locator}-{offset}``."""
        locator, _, offset = req.parts[1].partition("-")
        if locator not in self.cursors or not offset.isdigit():
            raise SalesforceApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(locator, int(offset), req.base)

    def _page(self, locator: str, offset: int, base: str) -> Reply:
        rows = self.cursors[locator]
        end = offset + self.page_size
        answer: dict[str, Any] = {"totalSize": len(rows), "done": end >= len(rows)}
        if end < len(rows):
            answer["nextRecordsUrl"] = f"{base}/query/{locator}-{end}"
        else:
            del self.cursors[locator]
        answer["records"] = rows[offset:end]
        return Reply(200, answer, records=len(answer["records"]))

    # -- Bulk API 2.0 ingest ----

    def create_job(self, req: RestRequest) -> Reply:
        """``POST jobs/ingest/``."""
        return Reply(200, self.bulk.create(req.json_object()).info(req.base))

    def list_jobs(self, req: RestRequest) -> Reply:
        """``GET jobs/ingest/``: every job, one page."""
        jobs = [j.info(req.base) for j in self.bulk.jobs.values()]
        return Reply(200, {"done": True, "nextRecordsUrl": None, "records": jobs})

    def get_job(self, req: RestRequest) -> Reply:
        """``GET jobs/ingest/{id}/``: a poll, which may advance and process the job."""
        return Reply(200, self.bulk.poll(req.parts[2], req.lock_row).info(req.base))

    def set_job_state(self, req: RestRequest) -> Reply:
        """``PATCH jobs/ingest/{id}/`` with ``{"state": "UploadComplete" | "Aborted"}``."""
        state = str(req.json_object().get("state"))
        return Reply(200, self.bulk.set_state(req.parts[2], state).info(req.base))

    def delete_job(self, req: RestRequest) -> Reply:
        """``DELETE jobs/ingest/{id}/``."""
        self.bulk.job(req.parts[2])
        del self.bulk.jobs[req.parts[2]]
        return Reply(204)

    def upload(self, req: RestRequest) -> Reply:
        """``PUT jobs/ingest/{id}/batches``: the job's CSV; 201 Created, no body."""
        data = req.body if isinstance(req.body, str) else ""
        return Reply(201, None, records=self.bulk.upload(req.parts[2], data))

    def job_results(self, req: RestRequest) -> Reply:
        """``GET jobs/ingest/{id}/successfulResults|failedResults|unprocessedrecords/``."""
        text = self.bulk.results(req.parts[2], req.parts[3], req.result_fault)
        return Reply(200, text, content_type="text/csv;charset=UTF-8")
