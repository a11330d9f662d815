"""Salesforce Bulk API 2.0 upserts: one ingest job for many records (job → CSV upload →
UploadComplete → poll → successful and failed results, matched back by external id).

The engine hands a chunk of ``bulk_batch_size`` records to ``write_bulk`` once a run has more
changed records than ``bulk_threshold``; each HTTP call of the job goes through the connector's
HTTP base, and the job reports how many it took (polls included), so that the run's request count
is the destination's.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from syncer.connectors.base import BulkResult, WriteResult
from syncer.connectors.http import HttpAnswer
from syncer.errors import FatalError, RetriableError, SyncerError

__all__ = ["MAX_UPLOAD_BYTES", "abort_jobs", "upsert_job"]

#: CSV bytes per upload: the limits page says 150 MB per file, the request guide "up to 150MB
#: (after base64 encoding)" — about 100 MB of CSV, the stricter reading.
MAX_UPLOAD_BYTES = 100_000_000

#: One request through the connector: (what, method, url, **requests keyword arguments).
Request = Callable[..., HttpAnswer]


def upsert_job(
    request: Request,
    jobs_url: str,
    *,
    object_name: str,
    key_field: str,
    rows: Sequence[Mapping[str, Any]],
    poll_seconds: float,
    deadline_seconds: float,
    max_bytes: int = MAX_UPLOAD_BYTES,
    running: dict[str, str] | None = None,
) -> BulkResult:
    """Upsert ``rows`` (flat field → value, ``key_field`` in each; None clears a field) in as
    many jobs as ``max_bytes`` of CSV per upload needs; one result per row, in the order of
    ``rows``. ``running`` (CSV digest → job id) remembers a job still running at the deadline,
    so that the engine's retry polls it again instead of submitting the same rows twice."""
    calls = 0
    running = {} if running is None else running

    def http(what: str, method: str, url: str, **kwargs: Any) -> HttpAnswer:
        nonlocal calls
        calls += 1
        return request(what, method, url, **kwargs)

    out: dict[str, WriteResult] = {}
    digests = []
    for data in _csv_chunks(rows, max_bytes):
        digest = hashlib.sha256(data).hexdigest()
        digests.append(digest)
        # Remembered until the whole call succeeds: a retry after a later chunk's deadline
        # reads this chunk's finished job again instead of submitting its rows once more.
        job_id = running.get(digest) or _submit(http, jobs_url, object_name, key_field, data)
        running[digest] = job_id
        state = _wait(http, f"{jobs_url}{job_id}/", poll_seconds, deadline_seconds)
        if state["state"] != "JobComplete":
            raise FatalError(
                f"salesforce bulk job {job_id} {state['state']}: "
                f"{state.get('errorMessage', 'no message')}"
            )
        out.update(_results(http, f"{jobs_url}{job_id}/", key_field))
    for digest in digests:
        running.pop(digest, None)
    # The job's results as it gives them: a record without one gets none (the pipeline records
    # it as failed), a result for a key not sent is handed on (the pipeline stops the run).
    order = {str(row[key_field]): i for i, row in enumerate(rows)}
    results = sorted(out.values(), key=lambda r: order.get(r.key, len(order)))
    return BulkResult(results, calls)


def abort_jobs(request: Request, jobs_url: str, running: dict[str, str]) -> None:
    """Abort jobs left running (``PATCH state: Aborted``); best effort, on close."""
    for job_id in list(running.values()):
        with contextlib.suppress(SyncerError):
            request("abort bulk job", "PATCH", f"{jobs_url}{job_id}/", json={"state": "Aborted"})
    running.clear()


def _submit(http: Request, jobs_url: str, object_name: str, key_field: str, data: bytes) -> str:
    """Create a job, upload its CSV, close it: the job's id."""
    job = http(
        "create bulk job", "POST", jobs_url,
        json={
            "object": object_name,
            "externalIdFieldName": key_field,
            "operation": "upsert",
            "contentType": "CSV",
            "lineEnding": "LF",
        },
    ).json()  # fmt: skip
    job_url = f"{jobs_url}{job['id']}/"
    http(
        "upload bulk CSV", "PUT", f"{job_url}batches/",
        data=data, headers={"Content-Type": "text/csv"},
    )  # fmt: skip
    http("close bulk job", "PATCH", job_url, json={"state": "UploadComplete"})
    return str(job["id"])


def _wait(http: Request, job_url: str, poll_seconds: float, deadline_seconds: float) -> Any:
    """Poll until the job ends; at the deadline a RetriableError (the job stays remembered)."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        state = http("poll bulk job", "GET", job_url).json()
        if state["state"] in ("JobComplete", "Failed", "Aborted"):
            return state
        if time.monotonic() > deadline:
            raise RetriableError(
                f"salesforce bulk job {state.get('id', job_url)} still {state['state']} at the "
                "deadline; the next attempt polls the same job (it is not submitted again)"
            )
        time.sleep(poll_seconds)


def _results(http: Request, job_url: str, key_field: str) -> dict[str, WriteResult]:
    """Both result files, matched back by external id (Salesforce promises no row order)."""
    out: dict[str, WriteResult] = {}
    for kind in ("successfulResults", "failedResults"):
        text = http(f"read {kind}", "GET", f"{job_url}{kind}/").text
        for row in csv.DictReader(io.StringIO(text)):
            key = row.get(key_field, "")
            if kind == "successfulResults":
                created = row.get("sf__Created") == "true"
                out[key] = WriteResult(key, row.get("sf__Id") or None, created=created)
            else:
                out[key] = WriteResult(key, rejected=row.get("sf__Error") or "failed")
    return out


def _csv_chunks(rows: Sequence[Mapping[str, Any]], max_bytes: int) -> list[bytes]:
    """The rows as CSV uploads of at most ``max_bytes`` each (one header for all)."""
    columns = sorted({c for row in rows for c in row})
    header = _line(columns, {c: c for c in columns})
    chunks: list[bytes] = []
    current: list[bytes] = []
    size = len(header)
    for row in rows:
        # "#N/A" clears a field in Bulk API 2.0; an empty cell leaves it as it is.
        line = _line(
            columns, {c: ("#N/A" if row.get(c, "") is None else row.get(c, "")) for c in columns}
        )
        if len(header) + len(line) > max_bytes:
            raise FatalError(
                f"salesforce bulk: one record is {len(line)} bytes of CSV, over the "
                f"{max_bytes}-byte upload limit (bulk_max_bytes)"
            )
        if current and size + len(line) > max_bytes:
            chunks.append(header + b"".join(current))
            current, size = [], len(header)
        current.append(line)
        size += len(line)
    if current:
        chunks.append(header + b"".join(current))
    return chunks


def _line(columns: Sequence[str], values: Mapping[str, Any]) -> bytes:
    buffer = io.StringIO()
    csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n").writerow(values)
    return buffer.getvalue().encode("utf-8")
