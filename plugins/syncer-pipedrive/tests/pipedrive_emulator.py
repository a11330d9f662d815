"""A local emulator of the Pipedrive API subset the syncer-pipedrive connector uses.

Built on syncer's shared emulator server (loopback, request log, fault switches). Every row of
``API-FIDELITY.md`` names the documented behaviour and its source; where the documentation is
strict, the emulator is too:

* auth: ``x-api-token: <token>`` or ``Authorization: Bearer <token>`` (``api_token`` in the query
  on ``/v1`` only); anything else → 401 with Pipedrive's error envelope;
* ``GET /v1/users/me``;
* ``GET|POST /api/v2/{personFields|organizationFields}``: standard fields plus custom ones, whose
  ``field_code`` is a generated 40-character hex hash; cursor pagination (limit ≤ 500);
* ``POST /api/v2/{persons|organizations}``, ``GET|PATCH|DELETE …/{id}`` (404 for unknown or deleted
  ids), ``GET …?ids=&custom_fields=`` (≤ 100 ids, ≤ 15 field keys), ``GET …/search`` (term,
  ``fields``, ``exact_match`` case-insensitive, limit ≤ 100);
* v2's strict input: unknown body keys, unknown custom field keys, a number sent as text, text
  over the field type's length, a date not ``YYYY-MM-DD``, an unknown ``org_id`` → 400;
* every answer carries ``x-ratelimit-limit``, ``x-ratelimit-remaining`` and ``x-ratelimit-reset``
  for a rolling burst window; over it → 429 (with ``Retry-After`` unless ``retry_after=False``).

Run it in the foreground for a manual sync: ``python pipedrive_emulator.py --port 8765``.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pipedrive_rules import (
    BODY_KEYS,
    CREATABLE,
    FIELD_LISTS,
    KINDS,
    SEARCHABLE,
    STANDARD_FIELDS,
    PipedriveError,
    check_value,
    error_body,
)

from syncer.testing._http import EmulatorServer, FaultRule, Request, Response, SlidingWindow

# GET /v1/users/me (marketplace-getting-user-data): the user and the bound company.
USER = {"id": 1, "name": "Emulator Admin", "email": "admin@example.com", "company_id": 1,
        "company_name": "Emulated Co", "company_domain": "emulated", "is_admin": 1}  # fmt: skip


class PipedriveEmulator(EmulatorServer):
    """Pipedrive's persons/organizations API subset on loopback. ``rate_limit`` requests per
    ``rate_window_s`` (the burst window: 20 per 2 s on the smallest plan with an API token)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_token: str = "test-token",
        *,
        rate_limit: int = 10_000,
        rate_window_s: float = 2.0,
        retry_after: bool = True,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(host, port, seed=seed, clock=clock)
        self.api_token = api_token
        self.retry_after = retry_after
        self._window = SlidingWindow(rate_limit, rate_window_s, clock)
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._codes = itertools.count(1)
        self.fields: dict[str, list[dict[str, Any]]] = {
            otype: [self._field(c, n, t, custom=False) for c, n, t in std]
            for otype, std in STANDARD_FIELDS.items()
        }
        self.records: dict[str, dict[int, dict[str, Any]]] = {"persons": {}, "organizations": {}}

    # -- inspection for tests ----------------------------------------------------------------

    def field_code(self, object_type: str, name: str) -> str:
        """The key of the custom field named ``name``."""
        with self._lock:
            return next(
                f["field_code"] for f in self.fields[object_type] if f["field_name"] == name
            )

    def by_field(self, object_type: str, name: str) -> dict[str, dict[str, Any]]:
        """Live records keyed by the value of custom field ``name`` (e.g. syncer's key field)."""
        code = self.field_code(object_type, name)
        with self._lock:
            return {
                r["custom_fields"][code]: r
                for r in self.records[object_type].values()
                if not r["is_deleted"] and r["custom_fields"].get(code) is not None
            }

    def add_field(self, object_type: str, name: str, field_type: str = "varchar") -> str:
        """Create a custom field directly (as an admin would in Pipedrive); returns its key."""
        with self._lock:
            made = self._field(None, name, field_type, custom=True)
            self.fields[object_type].append(made)
            return str(made["field_code"])

    def add_record(self, object_type: str, body: dict[str, Any]) -> int:
        """Create a record directly, bypassing the rate limit and the log; returns its id."""
        with self._lock:
            return int(self._create(object_type, body)["id"])

    def set_rate_limit(self, limit: int, window_s: float) -> None:
        """Change the burst window while running (it starts empty)."""
        self._window = SlidingWindow(limit, window_s, self.clock)

    # -- hooks ---------------------------------------------------------------------------------

    def authenticate(self, request: Request) -> Response | None:
        """401 unless the token comes as x-api-token, Bearer, or (v1 only) api_token."""
        bearer = request.header("authorization") or ""
        tokens = {request.header("x-api-token"), bearer.removeprefix("Bearer ").strip()}
        if request.path.startswith("/v1/"):
            tokens.add(request.query_value("api_token"))
        if self.api_token in tokens:
            return None
        return Response(401, error_body(401, "unauthorized access"))

    def fault_response(self, rule: FaultRule, request: Request) -> Response:
        """Pipedrive's envelope for an injected status; a 429 looks like a real one."""
        status = rule.status or 500
        response = (
            self._limited(request, 1.0)
            if status == 429
            else Response(status, error_body(status, f"Injected {status} (emulator fault)"))
        )
        if "body" in rule.options:
            response.body = rule.options["body"]
        response.headers.update(rule.options.get("headers", {}))
        return response

    def finalize(self, request: Request, response: Response) -> None:
        """The burst window's headers on every answer (core-api-concepts-rate-limiting)."""
        remaining = 0 if request.context.get("limited") else self._window.remaining()
        response.headers.setdefault("x-ratelimit-limit", str(self._window.limit))
        response.headers.setdefault("x-ratelimit-remaining", str(remaining))
        response.headers.setdefault("x-ratelimit-reset", str(math.ceil(self._window.interval_s)))

    def is_write(self, method: str, path: str) -> bool:
        """POST, PATCH and DELETE write."""
        return method in ("POST", "PATCH", "DELETE")

    def handle(self, request: Request) -> Response:
        """Rate limit, then route; PipedriveError becomes its envelope."""
        allowed, _remaining, wait = self._window.acquire()
        if not allowed:
            return self._limited(request, wait)
        try:
            if request.json_error:
                raise PipedriveError(400, f"Invalid JSON: {request.json_error}")
            with self._lock:
                return self._route(request)
        except PipedriveError as exc:
            return Response(exc.status, error_body(exc.status, exc.message))

    def _limited(self, request: Request, wait_s: float) -> Response:
        request.context["limited"] = True
        headers = {"Retry-After": str(max(1, math.ceil(wait_s)))} if self.retry_after else {}
        return Response(429, error_body(429, "Request over limit"), headers)

    # -- routing -------------------------------------------------------------------------------

    def _route(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        method = request.method
        match parts:
            case ["v1", "users", "me"] if method == "GET":
                return _ok(USER)
            case ["api", "v2", flist] if flist in FIELD_LISTS and method == "GET":
                return self._list_fields(request, FIELD_LISTS[flist])
            case ["api", "v2", flist] if flist in FIELD_LISTS and method == "POST":
                return _ok(self._add_field(FIELD_LISTS[flist], request.body))
            case ["api", "v2", otype, "search"] if otype in KINDS and method == "GET":
                return self._search(request, otype)
            case ["api", "v2", otype] if otype in KINDS and method == "GET":
                return self._list(request, otype)
            case ["api", "v2", otype] if otype in KINDS and method == "POST":
                return _ok(self._view(self._create(otype, self._checked(otype, request.body))))
            case ["api", "v2", otype, ident] if otype in KINDS and ident.isdigit():
                return self._one(request, otype, int(ident))
        raise PipedriveError(404, f"Unknown method {method} {request.path}")

    def _one(self, request: Request, otype: str, ident: int) -> Response:
        record = self.records[otype].get(ident)
        if record is None or record["is_deleted"]:
            raise PipedriveError(404, f"{KINDS[otype].capitalize()} not found")
        if request.method == "GET":
            return _ok(self._view(record))
        if request.method == "PATCH":
            self._apply(record, self._checked(otype, request.body, create=False))
            return _ok(self._view(record))
        if request.method == "DELETE":
            record["is_deleted"] = True
            return _ok({"id": ident})
        raise PipedriveError(405, "Method not allowed")

    # -- fields --------------------------------------------------------------------------------

    def _field(self, code: str | None, name: str, ftype: str, *, custom: bool) -> dict[str, Any]:
        if code is None:  # a custom field's code: a generated 40-character hash
            code = hashlib.sha1(f"{name}:{next(self._codes)}".encode()).hexdigest()
        return {"field_name": name, "field_code": code, "field_type": ftype,
                "is_custom_field": custom, "is_optional_response_field": False,
                "options": None, "subfields": None}  # fmt: skip

    def _list_fields(self, request: Request, otype: str) -> Response:
        limit = _int(request.query_value("limit"), 100, "limit")
        if not 1 <= limit <= 500:
            raise PipedriveError(400, "limit must be between 1 and 500")
        start = _int(request.query_value("cursor"), 0, "cursor")
        page = self.fields[otype][start : start + limit]
        more = start + limit < len(self.fields[otype])
        return _ok(page, {"next_cursor": str(start + limit) if more else None})

    def _add_field(self, otype: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("field_name"), str):
            raise PipedriveError(400, "field_name is required")
        if body.get("field_type") not in CREATABLE:
            raise PipedriveError(400, f"field_type {body.get('field_type')!r} is not valid")
        made = self._field(None, body["field_name"], body["field_type"], custom=True)
        self.fields[otype].append(made)
        return made

    def _custom(self, otype: str) -> dict[str, dict[str, Any]]:
        return {f["field_code"]: f for f in self.fields[otype] if f["is_custom_field"]}

    # -- records -------------------------------------------------------------------------------

    def _checked(self, otype: str, body: Any, *, create: bool = True) -> dict[str, Any]:
        """v2's strict validation of a create or update body."""
        if not isinstance(body, dict):
            raise PipedriveError(400, "The request body must be a JSON object")
        unknown = sorted(set(body) - BODY_KEYS[otype])
        if unknown:
            raise PipedriveError(400, f"Unknown parameters: {', '.join(unknown)}")
        if create and not body.get("name"):
            raise PipedriveError(400, "Name must be given")
        if "name" in body and not isinstance(body["name"], str):
            raise PipedriveError(400, "name must be a string")
        for email in body.get("emails") or []:
            if not isinstance(email, dict) or not isinstance(email.get("value"), str):
                raise PipedriveError(400, "emails must be objects with a value")
        org = body.get("org_id")
        if org is not None and (
            not isinstance(org, int) or self.records["organizations"].get(org) is None
        ):
            raise PipedriveError(400, f"Organization with id {org!r} does not exist")
        fields = self._custom(otype)
        for code, value in (body.get("custom_fields") or {}).items():
            if code not in fields:
                raise PipedriveError(400, f"Unknown custom field key {code}")
            check_value(fields[code], value)
        return body

    def _create(self, otype: str, body: dict[str, Any]) -> dict[str, Any]:
        now = _now()
        record: dict[str, Any] = {"id": next(self._ids), "name": "", "owner_id": USER["id"],
                                  "add_time": now, "update_time": now, "is_deleted": False,
                                  "custom_fields": {}}  # fmt: skip
        if otype == "persons":
            record.update({"org_id": None, "emails": [], "phones": []})
        self._apply(record, body)
        self.records[otype][record["id"]] = record
        return record

    def _apply(self, record: dict[str, Any], body: dict[str, Any]) -> None:
        for key, value in body.items():
            if key == "custom_fields":
                record["custom_fields"].update(value)
            else:
                record[key] = value
        record["update_time"] = _now()

    def _view(self, record: dict[str, Any], codes: set[str] | None = None) -> dict[str, Any]:
        """A record as v2 returns it: every custom field under ``custom_fields`` (null when
        unset), or only ``codes``."""
        otype = "persons" if "emails" in record else "organizations"
        custom = {c: record["custom_fields"].get(c) for c in self._custom(otype)}
        if codes is not None:
            custom = {c: v for c, v in custom.items() if c in codes}
        return {
            **{k: v for k, v in record.items() if k != "custom_fields"},
            "custom_fields": custom,
        }

    def _list(self, request: Request, otype: str) -> Response:
        ids = [i for i in (request.query_value("ids") or "").split(",") if i]
        if len(ids) > 100 or not all(i.isdigit() for i in ids):
            raise PipedriveError(400, "ids must be at most 100 integers")
        codes = {c for c in (request.query_value("custom_fields") or "").split(",") if c}
        if len(codes) > 15:
            raise PipedriveError(400, "A maximum of 15 custom field keys is allowed")
        live = [r for r in self.records[otype].values() if not r["is_deleted"]]
        chosen = [r for r in live if not ids or str(r["id"]) in ids]
        return _ok([self._view(r, codes or None) for r in chosen], {"next_cursor": None})

    def _search(self, request: Request, otype: str) -> Response:
        term = request.query_value("term")
        exact = request.query_value("exact_match") == "true"
        if term is None or len(term) < (1 if exact else 2):
            raise PipedriveError(400, "term must be at least 2 characters (1 with exact_match)")
        allowed = {"custom_fields", "notes", "name"} | ({"email", "phone"} if otype == "persons"
                                                       else {"address"})  # fmt: skip
        fields = set((request.query_value("fields") or ",".join(allowed)).split(","))
        if not fields <= allowed:
            raise PipedriveError(400, f"fields must be among {sorted(allowed)}")
        limit = _int(request.query_value("limit"), 100, "limit")
        if not 1 <= limit <= 100:
            raise PipedriveError(400, "limit must be between 1 and 100")
        searchable = {c for c, f in self._custom(otype).items() if f["field_type"] in SEARCHABLE}
        wanted = term.lower()
        items = []
        for r in self.records[otype].values():
            values = [r["name"]] if "name" in fields else []
            if "email" in fields:
                values += [e["value"] for e in r.get("emails", [])]
            customs = [str(v) for c, v in r["custom_fields"].items()
                       if c in searchable and v is not None]  # fmt: skip
            values += customs if "custom_fields" in fields else []
            hit = any((v.lower() == wanted) if exact else (wanted in v.lower()) for v in values)
            if hit and not r["is_deleted"]:
                item = {"id": r["id"], "type": KINDS[otype], "name": r["name"],
                        "visible_to": 3, "owner": {"id": r["owner_id"]},
                        "custom_fields": customs}  # fmt: skip
                if otype == "persons":
                    item["emails"] = [e["value"] for e in r["emails"]]
                    item["organization"] = {"id": r["org_id"]} if r["org_id"] else None
                items.append({"result_score": 1.0, "item": item})
        return _ok({"items": items[:limit]}, {"next_cursor": None})


def _ok(data: Any, additional: dict[str, Any] | None = None) -> Response:
    body: dict[str, Any] = {"success": True, "data": data}
    if additional is not None:
        body["additional_data"] = additional
    return Response(200, body)


def _int(text: str | None, default: int, name: str) -> int:
    if text is None:
        return default
    if not text.isdigit():
        raise PipedriveError(400, f"{name} must be an integer")
    return int(text)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", default="test-token")
    args = parser.parse_args()
    emulator = PipedriveEmulator(port=args.port, api_token=args.token)
    print(f"Pipedrive emulator on http://127.0.0.1:{args.port} (token {args.token!r})")
    emulator.serve_forever()
