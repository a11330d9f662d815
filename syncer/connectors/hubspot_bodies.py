"""HubSpot's request and answer bodies: what the connector sends for a batch of records or
associations, and how an answer (a 207 with per-input errors among them) maps back to syncer's
per-record results. Pure functions: no call is made here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from syncer.connectors.base import AssociationChange, AssociationResult, WriteRecord, WriteResult

__all__ = [
    "PRIMARY_TYPE",
    "TRACE",
    "UNLABELED_TYPE",
    "association_inputs",
    "association_results",
    "clear_inputs",
    "split_by_email",
    "upsert_inputs",
    "upsert_results",
]

PRIMARY_TYPE = 1  # contact → company, primary
UNLABELED_TYPE = 279  # contact → company, unlabeled
TRACE = "objectWriteTraceId"


def upsert_inputs(
    records: Sequence[WriteRecord], key_field: str, id_property: str
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The batch upsert's inputs, and the id each record was sent by → its key (HubSpot does
    not keep input order). Records adopted by email are sent by their email."""
    inputs = []
    by_sent_id: dict[str, str] = {}
    for r in records:
        sent_id = r.hints["adopt_email"] if id_property == "email" else r.key
        by_sent_id[sent_id.lower() if id_property == "email" else sent_id] = r.key
        props = {k: ("" if v is None else v) for k, v in r.changes.items()}
        props[key_field] = r.key
        # The record key as objectWriteTraceId: HubSpot answers per-input errors (a 207) only
        # when every input carries a unique one, and names the failed input by it.
        inputs.append({"idProperty": id_property, "id": sent_id, "properties": props, TRACE: r.key})
    return inputs, by_sent_id


def clear_inputs(records: Sequence[WriteRecord], prop: str) -> list[dict[str, Any]]:
    """Batch update inputs that clear ``prop`` on records syncer knows, by HubSpot id."""
    return [{"id": r.remote_id, "properties": {prop: ""}, TRACE: r.key} for r in records]


def upsert_results(
    answer: Mapping[str, Any], key_field: str, id_property: str, by_sent_id: Mapping[str, str]
) -> list[WriteResult]:
    """The answer's results as it gives them (matched by ``objectWriteTraceId``, else by the key
    property; a result for a key not sent is handed on, and the pipeline stops the run), and
    its errors matched by trace id, else by the id sent. Records an error names by no key are
    rejected with its reason — never taken for written; a record the answer neither returns
    nor names gets no result (the pipeline records it as failed and sends it again)."""
    sent = set(by_sent_id.values())
    out: dict[str, WriteResult] = {}
    for item in answer.get("results", []):
        # The key property where HubSpot returns it (it names the record), else the trace id.
        held = item.get("properties", {}).get(key_field)
        key = str(held or item.get(TRACE) or "")
        if key not in out:
            out[key] = WriteResult(key, str(item["id"]), created=item.get("new"))
    unattributed: list[str] = []
    for error in answer.get("errors", []):
        context = error.get("context") or {}
        fields = context.get("propertyName") or [None]
        keys = [k for k in context.get(TRACE) or [] if k in sent]
        if not keys:
            ids = [i.lower() if id_property == "email" else i for i in context.get("ids") or []]
            keys = [by_sent_id[i] for i in ids if i in by_sent_id]
        if not keys:
            unattributed.append(_reason(error))
        for key in keys:
            out.setdefault(key, WriteResult(key, rejected=_reason(error), field=fields[0]))
    if unattributed:
        reason = f"not confirmed written: {'; '.join(unattributed)}"
        for key in sent - out.keys():
            out[key] = WriteResult(key, rejected=reason)
    return list(out.values())


def split_by_email(
    batch: Sequence[WriteRecord], found: Mapping[str, Mapping[str, Any]], key_field: str
) -> tuple[list[WriteRecord], list[WriteRecord], list[WriteResult]]:
    """Split a batch by the contacts ``found`` by email (lower-cased email → contact): those to
    adopt (upserted by email), the rest, and refusals (the email belongs to another user)."""
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


def association_inputs(changes: Sequence[AssociationChange], *, remove: bool) -> list[Any]:
    """Inputs of an associations v4 batch create (primary: types 1 and 279) or archive."""
    if remove:
        return [{"from": {"id": c.from_remote_id}, "to": [{"id": c.to_remote_id}]} for c in changes]
    return [
        {
            "from": {"id": c.from_remote_id},
            "to": {"id": c.to_remote_id},
            "types": [
                {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": t}
                for t in _types(c.kind)
            ],
        }
        for c in changes
    ]


def association_results(
    changes: Sequence[AssociationChange], answer: Mapping[str, Any]
) -> list[AssociationResult]:
    """Per-pair results of an associations v4 batch create: a pair is made only if the answer
    returns it; a pair an error names is rejected with that error; any other pair is rejected
    too (an error HubSpot does not attribute to a pair may concern it — never success)."""
    made = {
        (str(r.get("fromObjectId")), str(r.get("toObjectId"))) for r in answer.get("results", [])
    }
    named: dict[tuple[str, str], str] = {}
    unattributed: list[str] = []
    for error in answer.get("errors", []):
        context = error.get("context") or {}
        froms, tos = context.get("fromObjectId") or [], context.get("toObjectId") or []
        if not (froms and tos):
            unattributed.append(_reason(error))
        for f in froms if isinstance(froms, list) else [froms]:
            for t in tos if isinstance(tos, list) else [tos]:
                named[(str(f), str(t))] = _reason(error)
    other = "; ".join(unattributed) or "HubSpot's answer has neither a result nor an error for it"
    results = []
    for c in changes:
        pair = (str(c.from_remote_id), str(c.to_remote_id))
        reason = None if pair in made else named.get(pair, f"not confirmed made: {other}")
        results.append(AssociationResult(c, rejected=reason))
    return results


def _types(kind: str) -> tuple[int, ...]:
    return (PRIMARY_TYPE, UNLABELED_TYPE) if kind == "primary" else (UNLABELED_TYPE,)


def _reason(error: Mapping[str, Any]) -> str:
    details = error.get("errors") or []
    if details and isinstance(details[0], Mapping) and details[0].get("message"):
        return f"{error.get('category', 'ERROR')}: {details[0]['message']}"
    return f"{error.get('category', 'ERROR')}: {error.get('message', 'refused')}"
