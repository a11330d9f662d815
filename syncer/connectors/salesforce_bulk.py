"""Salesforce Bulk API 2.0 upserts: one ingest job for many records (job → CSV upload →
UploadComplete → poll → successful and failed results, matched back by external id).

The engine hands a chunk of ``bulk_batch_size`` records to ``write_bulk`` once a run has more
changed records than ``bulk_threshold``; each HTTP call of the job goes through the connector's
HTTP base, and the job reports how many it took (polls included), so that the run's request count
is the destination's.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from syncer.connectors.base import BulkResult, WriteResult
from syncer.connectors.http import HttpAnswer
from syncer.errors import FatalError, RetriableError

__all__ = ["upsert_job"]

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
) -> BulkResult:
    """Upsert ``rows`` (flat field → value, ``key_field`` in each; None clears a field) in one
    job; one result per row, in the order of ``rows``."""
    calls = 0

    def http(what: str, method: str, url: str, **kwargs: Any) -> HttpAnswer:
        nonlocal calls
        calls += 1
        return request(what, method, url, **kwargs)

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
        data=_csv(rows).encode("utf-8"), headers={"Content-Type": "text/csv"},
    )  # fmt: skip
    http("close bulk job", "PATCH", job_url, json={"state": "UploadComplete"})
    deadline = time.monotonic() + deadline_seconds
    while True:
        state = http("poll bulk job", "GET", job_url).json()
        if state["state"] in ("JobComplete", "Failed", "Aborted"):
            break
        if time.monotonic() > deadline:
            raise RetriableError(f"salesforce bulk job {job['id']} still {state['state']}")
        time.sleep(poll_seconds)
    if state["state"] != "JobComplete":
        raise FatalError(
            f"salesforce bulk job {job['id']} {state['state']}: "
            f"{state.get('errorMessage', 'no message')}"
        )
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
    results = [
        out.get(str(row[key_field]))
        or WriteResult(str(row[key_field]), rejected="missing from the bulk job's results")
        for row in rows
    ]
    return BulkResult(results, calls)


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    columns = sorted({c for row in rows for c in row})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        # "#N/A" clears a field in Bulk API 2.0; an empty cell leaves it as it is.
        writer.writerow(
            {c: ("#N/A" if row.get(c, "") is None else row.get(c, "")) for c in columns}
        )
    return buffer.getvalue()
