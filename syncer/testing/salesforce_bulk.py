"""Bulk API 2.0 ingest jobs for the Salesforce emulator (operation ``upsert``).

Lifecycle: ``POST jobs/ingest/`` creates an Open job; ``PUT jobs/ingest/{id}/batches`` uploads
its one CSV; ``PATCH jobs/ingest/{id}/`` with ``{"state": "UploadComplete"}`` closes it (or
``Aborted`` aborts it). Each ``GET jobs/ingest/{id}/`` after closing counts as a poll: the job
answers InProgress until it has been polled ``polls`` times and ``delay`` seconds have passed,
then processes every row through `Org.upsert` (the same rules as sObject Collections) and
answers JobComplete. Results are CSV: ``successfulResults/`` (``sf__Id``, ``sf__Created`` and
the uploaded columns), ``failedResults/`` (``sf__Id``, ``sf__Error`` and the uploaded columns)
and ``unprocessedrecords/``. An empty cell leaves a field unchanged and ``#N/A`` sets it to
null; a ``Relationship.ExtId__c`` column sets a lookup by external id. A header naming an
unknown field fails the whole job (state Failed, ``errorMessage`` ``InvalidBatch : Field name
not found : X``), as Salesforce does.
"""

from __future__ import annotations

import csv
import io
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from syncer.testing.salesforce_org import Org, RowOutcome
from syncer.testing.salesforce_schema import SalesforceApiError

_DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^",
               "BACKQUOTE": "`"}  # fmt: skip
_LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}


def _state_error(job: IngestJob, wanted: str) -> SalesforceApiError:
    # Assumption: Salesforce answers a request in the wrong job state with 409 INVALIDJOBSTATE.
    return SalesforceApiError(
        409, "INVALIDJOBSTATE", f"Job {job.id} is in state {job.state}; {wanted}"
    )


@dataclass
class IngestJob:
    """One ingest job and, once processed, its per-row outcomes."""

    id: str
    object: str
    external_id_field: str
    line_ending: str
    column_delimiter: str
    api_version: str
    created: str
    state: str = "Open"
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] | None = None
    outcomes: list[RowOutcome] = field(default_factory=list)
    error_message: str | None = None
    closed_at: float = 0.0
    polls: int = 0

    def info(self, base: str) -> dict[str, Any]:
        """The job info JSON answered by create, close/abort and get."""
        failed = sum(1 for o in self.outcomes if not o.success)
        result: dict[str, Any] = {
            "id": self.id,
            "operation": "upsert",
            "object": self.object,
            "createdById": "005Rm0000000001AAA",
            "createdDate": self.created,
            "systemModstamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
            "state": self.state,
            "externalIdFieldName": self.external_id_field,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.api_version),
            "jobType": "V2Ingest",
            "contentUrl": f"{base.lstrip('/')}/jobs/ingest/{self.id}/batches",
            "lineEnding": self.line_ending,
            "columnDelimiter": self.column_delimiter,
            "numberRecordsProcessed": len(self.outcomes),
            "numberRecordsFailed": failed,
            "retries": 0,
            "totalProcessingTime": 0,
            "apiActiveProcessingTime": 0,
            "apexProcessingTime": 0,
        }
        if self.error_message:
            result["errorMessage"] = self.error_message
        return result


class BulkIngest:
    """The ingest jobs of one emulated org."""

    #: Bytes of CSV one upload may hold. Salesforce's limits page says 150 MB per file and its
    #: request guide "up to 150MB (after base64 encoding)", i.e. about 100 MB of CSV: the
    #: emulator takes the stricter reading (issue 17).
    max_upload_bytes: int = 100_000_000
    #: Lenient switch: result files in upload order (Salesforce does not promise any order).
    ordered_results: bool = False

    def __init__(self, org: Org, api_version: str, *, polls: int = 2, delay: float = 0.0) -> None:
        self.org = org
        self.api_version = api_version
        self.polls = polls
        self.delay = delay
        self.jobs: dict[str, IngestJob] = {}

    def job(self, job_id: str) -> IngestJob:
        """The job with this id or 404 NOT_FOUND."""
        if job_id not in self.jobs:
            raise SalesforceApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return self.jobs[job_id]

    def create(self, body: Mapping[str, Any]) -> IngestJob:
        """``POST jobs/ingest/``: validate the request and open a job."""
        operation = body.get("operation")
        if operation != "upsert":
            raise SalesforceApiError(
                400, "API_ERROR",
                f"operation {operation!r}: the emulator supports only 'upsert' ingest jobs",
            )  # fmt: skip
        obj = self.org.object(str(body.get("object", "")))
        ext_name = body.get("externalIdFieldName")
        if not ext_name:
            raise SalesforceApiError(
                400, "INVALIDJOB", f"External ID was blank for {obj.name}. An External ID "
                "must be specified for upsert.",
            )  # fmt: skip
        ext = self.org.external_id_field(obj, str(ext_name))
        if body.get("contentType", "CSV") != "CSV":
            raise SalesforceApiError(400, "INVALIDJOB", "contentType must be CSV")
        line_ending = str(body.get("lineEnding", "LF"))
        delimiter = str(body.get("columnDelimiter", "COMMA"))
        if line_ending not in _LINE_ENDINGS or delimiter not in _DELIMITERS:
            raise SalesforceApiError(400, "INVALIDJOB", "invalid lineEnding or columnDelimiter")
        job = IngestJob(
            id=self.org.new_id("750"), object=obj.name, external_id_field=ext.name,
            line_ending=line_ending, column_delimiter=delimiter, api_version=self.api_version,
            created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
        )  # fmt: skip
        self.jobs[job.id] = job
        return job

    def upload(self, job_id: str, data: str) -> int:
        """``PUT .../batches``: store the job's CSV (one upload per job); return its row count."""
        job = self.job(job_id)
        if job.state != "Open" or job.rows is not None:
            raise _state_error(job, "data can be uploaded once, to an Open job")
        self._check_size(data)
        if _LINE_ENDINGS[job.line_ending] == "\n" and "\r\n" in data:
            raise SalesforceApiError(
                400, "INVALIDJOB", "LineEnding is invalid on user data. Current LineEnding "
                "setting is LF",
            )  # fmt: skip
        reader = csv.reader(io.StringIO(data), delimiter=_DELIMITERS[job.column_delimiter])
        table = [row for row in reader if row]
        if not table:
            raise SalesforceApiError(400, "INVALIDJOB", "Found no data to process")
        job.header, job.rows = table[0], table[1:]
        return len(job.rows)

    def set_state(self, job_id: str, state: str) -> IngestJob:
        """``PATCH jobs/ingest/{id}/``: close (UploadComplete) or abort a job."""
        job = self.job(job_id)
        if state == "UploadComplete":
            if job.state != "Open" or job.rows is None:
                raise _state_error(job, "an Open job with uploaded data can be closed")
            job.state, job.closed_at = "UploadComplete", time.monotonic()
        elif state == "Aborted":
            if job.state not in ("Open", "UploadComplete", "InProgress"):
                raise _state_error(job, "only an unfinished job can be aborted")
            job.state = "Aborted"
        else:
            raise SalesforceApiError(400, "INVALIDJOB", f"Invalid state: {state}")
        return job

    def poll(self, job_id: str, lock_row: Callable[[], bool]) -> IngestJob:
        """``GET jobs/ingest/{id}/``: advance a closed job and process it when its time comes."""
        job = self.job(job_id)
        if job.state in ("UploadComplete", "InProgress"):
            job.polls += 1
            due = job.polls >= self.polls and time.monotonic() - job.closed_at >= self.delay
            job.state = "InProgress"
            if due:
                self._process(job, lock_row)
        return job

    def _process(self, job: IngestJob, lock_row: Callable[[], bool]) -> None:
        rows: list[dict[str, Any]] = []
        for values in job.rows or []:
            row: dict[str, Any] = {}
            for column, cell in zip(job.header, values, strict=False):
                if cell == "":
                    continue  # an empty cell leaves the field as it is
                relationship, dot, ext = column.partition(".")
                value = _cell(cell, relationship=bool(dot))
                row[relationship] = {ext: value} if dot else value
            rows.append(row)
        obj = self.org.object(job.object)
        for column in job.header:
            relationship, dot, _ext = column.partition(".")
            known = obj.relationship(relationship) if dot else obj.get_field(column)
            if known is None:
                job.state, job.error_message = (
                    "Failed",
                    f"InvalidBatch : Field name not found : {column}",
                )
                return
        try:
            job.outcomes = self.org.upsert(
                job.object, job.external_id_field, rows, lock_row=lock_row
            )
        except SalesforceApiError as exc:
            job.state, job.error_message = "Failed", f"InvalidBatch : {exc.message}"
            return
        job.state = "JobComplete"

    def results(
        self, job_id: str, kind: str, fault: Callable[[], str | None] = lambda: None
    ) -> str:
        """The CSV of ``successfulResults``, ``failedResults`` or ``unprocessedrecords``;
        ``fault`` (drawn for successful results only) may leave the first row out
        (``"missing_result"``) or add a row for an external id that was not sent
        (``"extra_result"``)."""
        job = self.job(job_id)
        kind = kind.lower()
        out = io.StringIO()
        writer = csv.writer(
            out,
            delimiter=_DELIMITERS[job.column_delimiter],
            lineterminator=_LINE_ENDINGS[job.line_ending],
            quoting=csv.QUOTE_ALL,
        )
        if kind == "unprocessedrecords":
            writer.writerow(job.header)
            if job.state in ("Failed", "Aborted"):
                writer.writerows(job.rows or [])
            return out.getvalue()
        if job.state not in ("JobComplete", "Failed", "Aborted"):
            raise _state_error(job, "results are available once the job is complete")
        success = kind == "successfulresults"
        writer.writerow(["sf__Id", "sf__Created" if success else "sf__Error", *job.header])
        injected = fault() if success else None
        written = 0
        for outcome, values in self._result_order(job):
            if outcome.success and success:
                written += 1
                if injected == "missing_result" and written == 1:
                    continue
                writer.writerow([outcome.id, str(outcome.created).lower(), *values])
                if injected == "extra_result" and written == 1:
                    names = [h.lower() for h in job.header]
                    column = names.index(job.external_id_field.lower())
                    ghost = [*values]
                    ghost[column] = f"{ghost[column]}-not-sent"
                    writer.writerow(["001000000000NOTSENT", "true", *ghost])
            elif not outcome.success and not success:
                writer.writerow(["", " ".join(e.as_bulk() for e in outcome.errors), *values])
        return out.getvalue()

    # -- documented strictness (issue 17) ----

    def _check_size(self, data: str) -> None:
        """Refuse an upload over ``max_upload_bytes`` (the status is not documented: 400)."""
        size = len(data.encode("utf-8"))
        if size > self.max_upload_bytes:
            raise SalesforceApiError(
                400, "INVALIDJOB",
                f"Upload of {size} bytes exceeds the limit of {self.max_upload_bytes} bytes",
            )  # fmt: skip

    def _result_order(self, job: IngestJob) -> list[tuple[RowOutcome, list[str]]]:
        """Outcomes with their rows; shuffled unless ``ordered_results`` (no order promised)."""
        pairs = list(zip(job.outcomes, job.rows or [], strict=False))
        if not self.ordered_results:
            random.Random(job.id).shuffle(pairs)
        return pairs


def _cell(cell: str, *, relationship: bool) -> Any:
    """A CSV cell's value: ``#N/A`` nulls a field. In a ``Relationship.ExtId__c`` column the
    documentation does not say it clears the lookup, so the emulator (stricter) looks up an
    external id ``#N/A``; the connector clears ``AccountId`` instead."""
    return None if cell == "#N/A" and not relationship else cell
