"""Salesforce sObject Collections answers → syncer's per-record results.

The answer to ``PATCH composite/sobjects/{type}/{field}`` is positional: one
``{id, success, created, errors[{statusCode, message, fields}]}`` per record sent, in order.
An answer of another length cannot be attributed to records: every record of the batch is then
rejected (never taken for written) and the next run sends them again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from syncer.connectors.base import WriteRecord, WriteResult
from syncer.errors import RetriableError

__all__ = ["collection_results"]

_RETRIABLE_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE"})


def collection_results(
    object_name: str, key_field: str, batch: Sequence[WriteRecord], answer: Any
) -> tuple[list[WriteResult], list[WriteRecord]]:
    """The results of a Collections upsert, and the records to send once more whole (a record
    syncer wrote before that Salesforce no longer holds). ``UNABLE_TO_LOCK_ROW`` makes the
    batch retriable (upserts are idempotent)."""
    items = answer if isinstance(answer, list) else []
    if len(items) != len(batch):
        reason = (
            f"Salesforce answered {len(items)} results for {len(batch)} records; results "
            "cannot be matched to records, so none is taken for written"
        )
        return [WriteResult(r.key, rejected=reason) for r in batch], []
    results: list[WriteResult] = []
    again: list[WriteRecord] = []
    for record, item in zip(batch, items, strict=True):
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
                results.append(WriteResult(record.key, item.get("id"), created=item.get("created")))
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
                    f" — the {object_name} with {key_field} {record.key} is in Salesforce's "
                    "recycle bin: undelete it, or empty it from the bin so that syncer creates "
                    "it again"
                )
            results.append(WriteResult(record.key, rejected=reason, field=(fields or [None])[0]))
    return results, again


def _whole(record: WriteRecord) -> WriteRecord:
    """``record`` with every field and without its stale remote id, sent once more."""
    hints = {**record.hints, "full_retry": True}
    return WriteRecord(record.key, record.payload, record.payload, None, hints)


def _message(errors: Sequence[Mapping[str, Any]]) -> str:
    return "; ".join(f"{e.get('statusCode')}: {e.get('message')}" for e in errors) or "failed"
