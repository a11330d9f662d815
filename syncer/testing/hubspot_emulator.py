"""A local emulator of the HubSpot CRM API subset syncer's HubSpot connector uses.

The real ``hubspot-api-client`` talks to it over loopback::

    with HubSpotEmulator() as hs:
        client = hubspot.Client.create(access_token="test-token", host=hs.url, retry=False)
        client.crm.contacts.batch_api.upsert(...)
        assert hs.find("contacts", "email", "ada@example.com")

Endpoints (HubSpot's paths, request and response shapes):

* ``POST /crm/v3/objects/{contacts|companies}/batch/{create,read,update,upsert,archive}``,
  ``GET /crm/v3/objects/{type}/{id}``, ``POST /crm/v3/objects/{type}/search``;
* ``GET|POST /crm/v3/properties/{type}``, ``GET /crm/v3/properties/{type}/{name}``,
  ``GET|POST /crm/v3/properties/{type}/groups``;
* ``POST /crm/v4/associations/{from}/{to}/batch/{create,archive,read,labels/archive}``,
  ``GET /crm/v4/associations/{from}/{to}/labels`` (contact → company: 1 primary, 279 unlabeled;
  company → contact: 2 and 280).

Limits and errors: bearer token (401 otherwise); 100 inputs per object batch; ``idProperty``
must be a unique property (or ``email`` on contacts); two inputs for one record → 400; unique
values clash → CONFLICT; invalid emails, unknown or read-only properties, text over 65,536
characters, bad numbers/options/dates → VALIDATION_ERROR. By default a batch answers 207 with
``numErrors``/``errors`` for the failed inputs and applies the rest; ``batch_errors="whole_batch"``
reproduces the whole-batch 400/409 integrators report (nothing applied). Results come back
shuffled (deterministically by seed) so clients must match them by key. Every answer carries the
``X-HubSpot-RateLimit-*`` headers; a rolling window of ``rate_limit_max`` requests per
``rate_limit_interval_ms`` and a daily budget answer 429 with HubSpot's body. Small interval
values are the time scale (``rate_limit_max=100, rate_limit_interval_ms=1000`` emulates
100 / 10 s ten times faster).
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from syncer.testing._http import EmulatorServer, FaultRule, Request, Response, SlidingWindow
from syncer.testing._hubspot_search import search
from syncer.testing._hubspot_state import (
    ALWAYS_RETURNED,
    COMPANY_PRIMARY,
    COMPANY_UNLABELED,
    DEFAULT_PROPERTIES,
    LAST_MODIFIED,
    PRIMARY,
    TYPE_IDS,
    UNLABELED,
    HubSpotError,
    HubSpotState,
)

BatchErrors = Literal["multi_status", "whole_batch"]
#: A batch answer that breaks the one-result-per-input contract (:meth:`inject_result_fault`).
ResultFault = Literal["missing", "extra"]
AUTH_MESSAGE = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you "
    "can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)
_LIMIT_MESSAGES = {
    "SECONDLY": "You have reached your secondly limit.",
    "DAILY": "You have reached your daily limit.",
}
_LABELS = {PRIMARY: "Primary", COMPANY_PRIMARY: "Primary", UNLABELED: None, COMPANY_UNLABELED: None}
_TO_COMPANY_VIEW = {COMPANY_PRIMARY: PRIMARY, COMPANY_UNLABELED: UNLABELED}
_TO_CONTACT_VIEW = {PRIMARY: COMPANY_PRIMARY, UNLABELED: COMPANY_UNLABELED}
_WRITES = (
    re.compile(r"^/crm/v3/objects/[^/]+/batch/(create|update|upsert|archive)$"),
    re.compile(r"^/crm/v4/associations/[^/]+/[^/]+/batch/(create|archive|labels/archive)$"),
    re.compile(r"^/crm/v3/properties/[^/]+(/groups)?$"),
)


class HubSpotEmulator(EmulatorServer):
    """HubSpot's CRM API subset on loopback, with fault switches and a request log.

    Args:
        host, port: where to listen (port 0: a free one; read it from ``url``).
        access_token: the bearer token requests must carry.
        rate_limit_max, rate_limit_interval_ms: the rolling burst window (HubSpot Pro: 190/10 s).
        daily_limit: requests per "day" (until :meth:`reset_rate_limits`).
        seed: makes result order, partial failures and fault rates reproducible.
        batch_errors: ``"multi_status"`` (207 per-input errors) or ``"whole_batch"`` (the first
            failing input fails the whole batch with its 400/409; nothing is applied).
        shuffle_results: return batch results out of input order (HubSpot does not promise order).
        retry_after: send ``Retry-After`` (whole seconds) on 429s.
        lifecycle_forward_only: ignore writes that move ``lifecyclestage`` backwards [unverified].
        clock: monotonic seconds for the rate window and the request log.
        now: wall-clock time for record timestamps.
    """

    BATCH_MAX = 100
    #: Lenient switches (issue 17): off, the emulator answers as HubSpot documents. A test turns
    #: one on by name when it needs the old behaviour.
    #: 207 multi-status even when inputs carry no unique ``objectWriteTraceId`` (HubSpot: one bad
    #: input then fails the whole request).
    multi_status_without_trace_id: bool = False
    #: v4 association errors whose context names the (fromObjectId, toObjectId) pair; HubSpot's
    #: documentation does not promise it, so by default an error names only the missing ids.
    association_errors_name_pairs: bool = False
    #: Answer as to an OAuth app's token: no ``X-HubSpot-RateLimit-Daily*`` headers (changelog).
    oauth_app: bool = False
    HISTORY_BATCH_MAX = 50
    ASSOCIATION_WRITE_MAX = 2_000  # [secondary source]
    ASSOCIATION_READ_MAX = 1_000  # changelogs say 1,000 and later 100 [unverified]
    ASSOCIATION_PAGE = 500  # associations per object per page of a batch read [unverified]

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        access_token: str = "test-token",
        *,
        rate_limit_max: int = 190,
        rate_limit_interval_ms: int = 10_000,
        daily_limit: int = 1_000_000,
        seed: int = 0,
        batch_errors: BatchErrors = "multi_status",
        shuffle_results: bool = True,
        retry_after: bool = True,
        lifecycle_forward_only: bool = True,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(host, port, seed=seed, clock=clock)
        self.access_token = access_token
        self.shuffle_results = shuffle_results
        self.retry_after = retry_after
        self.batch_errors = batch_errors
        self._lock = threading.RLock()
        self._rng = random.Random(seed)
        self._state = HubSpotState(now, lifecycle_forward_only=lifecycle_forward_only)
        self._window = SlidingWindow(rate_limit_max, rate_limit_interval_ms / 1000, clock)
        self._daily_limit = daily_limit
        self._daily_used = 0

    # -- switches ----------------------------------------------------------------------------

    @property
    def batch_errors(self) -> BatchErrors:
        """How failing inputs are answered: ``"multi_status"`` (207) or ``"whole_batch"``."""
        return self._batch_errors

    @batch_errors.setter
    def batch_errors(self, mode: BatchErrors) -> None:
        if mode not in ("multi_status", "whole_batch"):
            raise ValueError(f"batch_errors must be 'multi_status' or 'whole_batch', got {mode!r}")
        self._batch_errors = mode

    def set_rate_limit(
        self,
        max_requests: int | None = None,
        interval_ms: int | None = None,
        daily: int | None = None,
    ) -> None:
        """Change the limits while running; the rolling window starts empty."""
        with self._lock:
            self._window = SlidingWindow(
                max_requests or self._window.limit,
                (interval_ms / 1000) if interval_ms else self._window.interval_s,
                self.clock,
            )
            if daily is not None:
                self._daily_limit = daily

    def reset_rate_limits(self) -> None:
        """Empty the rolling window and the daily count."""
        with self._lock:
            self._window.reset()
            self._daily_used = 0

    def inject_rate_limited(
        self, *, policy: Literal["SECONDLY", "DAILY"] = "SECONDLY", **where: Any
    ) -> FaultRule:
        """Answer matching requests 429 with HubSpot's body for ``policy`` (see inject_status)."""
        return self.inject_status(429, policy=policy, **where)

    def inject_server_error(self, status: int = 503, **where: Any) -> FaultRule:
        """Answer matching requests with a 5xx (500, 502, 503, 504; see ``inject_status``)."""
        if not 500 <= status <= 599:
            raise ValueError(f"a server error is a 5xx status, got {status}")
        return self.inject_status(status, **where)

    # inject_partial_failure(rate=..., input_rate=0.5, category="VALIDATION_ERROR", message=...)
    # comes from EmulatorServer; the options are read in _injected_failures.

    # -- inspection and seeding for tests ----------------------------------------------------

    def objects(self, object_type: str) -> dict[str, dict[str, str]]:
        """Record id → property values, for ``contacts`` or ``companies``."""
        with self._lock:
            otype = self._state.object_type(object_type)
            return {i: dict(o.properties) for i, o in self._state.objects[otype].items()}

    def contacts(self) -> dict[str, dict[str, str]]:
        """Contact id → property values."""
        return self.objects("contacts")

    def companies(self) -> dict[str, dict[str, str]]:
        """Company id → property values."""
        return self.objects("companies")

    def find(self, object_type: str, prop: str, value: str) -> list[str]:
        """Ids of the records whose ``prop`` equals ``value`` (emails ignore case), sorted."""
        wanted = value.lower() if prop == "email" else value
        return sorted(
            (
                i
                for i, props in self.objects(object_type).items()
                if (props.get(prop, "").lower() if prop == "email" else props.get(prop)) == wanted
            ),
            key=int,
        )

    def associations(self, contact_id: str) -> dict[str, set[int]]:
        """Company id → contact→company association type ids (1 primary, 279 unlabeled)."""
        with self._lock:
            return self._state.links_of_contact(contact_id)

    def primary_company(self, contact_id: str) -> str | None:
        """The contact's primary company id, if any."""
        return next((c for c, t in self.associations(contact_id).items() if PRIMARY in t), None)

    def property_definitions(self, object_type: str) -> dict[str, dict[str, Any]]:
        """Property name → definition (HubSpot's JSON shape)."""
        with self._lock:
            return dict(self._state.properties[self._state.object_type(object_type)])

    def property_groups(self, object_type: str) -> dict[str, dict[str, Any]]:
        """Group name → group (HubSpot's JSON shape)."""
        with self._lock:
            return dict(self._state.groups[self._state.object_type(object_type)])

    def add_object(self, object_type: str, properties: Mapping[str, Any]) -> str:
        """Create a record directly (e.g. a contact that existed before syncer); returns its id."""
        with self._lock:
            otype = self._state.object_type(object_type)
            return self._state.write(otype, None, self._state.clean(otype, dict(properties))).id

    def add_property(
        self,
        object_type: str,
        name: str,
        *,
        type: str = "string",
        field_type: str = "text",
        group: str | None = None,
        unique: bool = False,
        options: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Create a property directly, as if someone had made it in HubSpot's settings."""
        with self._lock:
            otype = self._state.object_type(object_type)
            default_group = {"contacts": "contactinformation", "companies": "companyinformation"}
            body = {
                "name": name,
                "label": name,
                "type": type,
                "fieldType": field_type,
                "groupName": group or default_group[otype],
                "hasUniqueValue": unique,
                "options": options or [],
            }
            return self._state.add_property(otype, body)

    def add_association(self, contact_id: str, company_id: str, *, primary: bool = False) -> None:
        """Associate a contact with a company directly (e.g. one syncer did not create)."""
        with self._lock:
            for otype, obj_id in (("contacts", contact_id), ("companies", company_id)):
                if obj_id not in self._state.objects[otype]:
                    raise KeyError(f"no {otype[:-1]} with id {obj_id}")
            self._state.associate(contact_id, company_id, {PRIMARY} if primary else {UNLABELED})

    # -- hooks -------------------------------------------------------------------------------

    def authenticate(self, request: Request) -> Response | None:
        """401 with HubSpot's body unless ``Authorization: Bearer <access_token>``."""
        scheme, _, token = (request.header("authorization") or "").partition(" ")
        if scheme.lower() == "bearer" and token.strip() == self.access_token:
            return None
        body = {
            "status": "error",
            "message": AUTH_MESSAGE,
            "correlationId": _correlation_id(),
            "category": "INVALID_AUTHENTICATION",
        }
        return Response(401, body)

    def fault_response(self, rule: FaultRule, request: Request) -> Response:
        """HubSpot's bodies for injected statuses; ``body``/``headers`` options override."""
        status = rule.status or 500
        if status == 429:
            request.context["limited"] = True
            response = self._rate_limited(
                str(rule.options.get("policy", "SECONDLY")), self._window.interval_s
            )
        else:
            category = "INTERNAL_ERROR" if status >= 500 else "EMULATOR_FAULT"
            response = Response(
                status,
                {
                    "status": "error",
                    "message": f"Injected {status} (emulator fault switch)",
                    "correlationId": _correlation_id(),
                    "category": category,
                },
            )
        if "body" in rule.options:
            response.body = rule.options["body"]
        response.headers.update(rule.options.get("headers", {}))
        return response

    def finalize(self, request: Request, response: Response) -> None:
        """Every answer carries HubSpot's rate-limit headers."""
        remaining = (
            0
            if request.context.get("limited")
            else request.context.get("remaining", self._window.remaining())
        )
        for name, value in (
            ("X-HubSpot-RateLimit-Max", self._window.limit),
            ("X-HubSpot-RateLimit-Remaining", remaining),
            ("X-HubSpot-RateLimit-Interval-Milliseconds", round(self._window.interval_s * 1000)),
            ("X-HubSpot-RateLimit-Daily", self._daily_limit),
            ("X-HubSpot-RateLimit-Daily-Remaining", max(self._daily_limit - self._daily_used, 0)),
        ):
            if not (self.oauth_app and "Daily" in name):
                response.headers.setdefault(name, str(value))

    def is_write(self, method: str, path: str) -> bool:
        """Batch create/update/upsert/archive, association writes, property and group creation."""
        return method == "POST" and any(p.match(path) for p in _WRITES)

    def handle(self, request: Request) -> Response:
        """Rate limit, then route."""
        limited = self._acquire(request)
        if limited is not None:
            return limited
        try:
            if request.json_error:
                raise HubSpotError("VALIDATION_ERROR", f"Invalid input JSON: {request.json_error}")
            return self._route(request)
        except HubSpotError as error:
            return Response(error.status, error.body(_correlation_id()))

    # -- rate limits -------------------------------------------------------------------------

    def _acquire(self, request: Request) -> Response | None:
        with self._lock:
            if self._daily_used >= self._daily_limit:
                request.context["limited"] = True
                midnight = (datetime.now(UTC) + timedelta(days=1)).replace(
                    hour=0, minute=0, second=0, microsecond=0
                )
                return self._rate_limited("DAILY", (midnight - datetime.now(UTC)).total_seconds())
            allowed, remaining, wait_s = self._window.acquire()
            if not allowed:
                request.context["limited"] = True
                return self._rate_limited("SECONDLY", wait_s)
            self._daily_used += 1
            request.context["remaining"] = remaining
            return None

    def _rate_limited(self, policy: str, wait_s: float) -> Response:
        body = {
            "status": "error",
            "message": _LIMIT_MESSAGES.get(policy, _LIMIT_MESSAGES["SECONDLY"]),
            "errorType": "RATE_LIMIT",
            "correlationId": _correlation_id(),
            "policyName": policy,
        }
        headers = {"Retry-After": str(max(1, math.ceil(wait_s)))} if self.retry_after else {}
        return Response(429, body, headers)

    # -- routing -----------------------------------------------------------------------------

    def _route(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        method = request.method
        match parts:
            case ["crm", "v3", "objects", otype, "batch", op] if method == "POST":
                return self._objects_batch(request, self._state.object_type(otype), op)
            case ["crm", "v3", "objects", otype, "search"] if method == "POST":
                otype = self._state.object_type(otype)
                with self._lock:
                    answer = search(
                        otype,
                        request.body,
                        self._state.objects[otype],
                        self._state.properties[otype],
                    )
                return Response(200, answer)
            case ["crm", "v3", "objects", otype, obj_id] if method == "GET":
                return self._get_object(request, self._state.object_type(otype), obj_id)
            case ["crm", "v3", "properties", otype, *rest]:
                return self._properties(request, self._state.object_type(otype), rest)
            case ["crm", "v4", "associations", from_type, to_type, "labels"] if method == "GET":
                swap = self._direction(from_type, to_type)
                types = (COMPANY_PRIMARY, COMPANY_UNLABELED) if swap else (PRIMARY, UNLABELED)
                return Response(
                    200,
                    {
                        "results": [
                            {"category": "HUBSPOT_DEFINED", "typeId": t, "label": _LABELS[t]}
                            for t in types
                        ]
                    },
                )
            case ["crm", "v4", "associations", from_type, to_type, "batch", *op] if (
                method == "POST"
            ):
                return self._associations(request, from_type, to_type, "/".join(op))
        raise HubSpotError(
            "OBJECT_NOT_FOUND",
            f"{method} {request.path} is not an endpoint the HubSpot emulator knows",
            status=404,
        )

    def _inputs(self, body: Any, limit: int) -> list[dict[str, Any]]:
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
            raise HubSpotError(
                "VALIDATION_ERROR",
                "Invalid input JSON: Cannot build BatchInput, "
                "some of required attributes are not set [inputs]",
            )
        inputs = body["inputs"]
        if len(inputs) > limit:
            raise HubSpotError(
                "VALIDATION_ERROR",
                f"The maximum number of inputs supported in a "
                f"batch is {limit}. Please reduce the number of items and try again",
            )
        if not all(isinstance(i, dict) for i in inputs):
            raise HubSpotError(
                "VALIDATION_ERROR", "Invalid input JSON: every input must be an object"
            )
        return inputs

    def _ordered(self, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.shuffle_results:
            with self._lock:
                self._rng.shuffle(results)
        return results

    def inject_result_fault(
        self, kind: ResultFault, *, otype: str = "contacts", count: int | None = 1
    ) -> FaultRule:
        """Make ``otype`` batch upserts answer out of contract: ``"missing"`` applies every
        input but leaves the first one's result out; ``"extra"`` adds a result for a record
        that was not sent (a copy of the first result under another key and id)."""
        return self.inject_partial_failure(
            path_prefix=f"/crm/v3/objects/{otype}/batch/upsert", count=count, result=kind
        )

    def _result_fault(self, request: Request, results: list[dict[str, Any]], key: str) -> None:
        """Apply an injected :data:`ResultFault` to a batch's results (input order)."""
        kind = request.fault.options.get("result") if request.fault is not None else None
        if kind == "missing" and results:
            del results[0]
        elif kind == "extra" and results:
            extra = {**results[0], "id": str(10**12 + len(results))}
            props = dict(extra.get("properties") or {})
            props[key] = f"{props.get(key)}-not-sent"
            results.append({**extra, "properties": props})

    def _injected_failures(self, request: Request, n_inputs: int) -> dict[int, HubSpotError]:
        """Which inputs an injected partial failure fails (at least one), and with what."""
        rule = request.fault
        if rule is None or n_inputs == 0 or "result" in rule.options:
            return {}
        share = float(rule.options.get("input_rate", 0.5))
        with self._lock:
            chosen = self._rng.sample(
                range(n_inputs), max(1, min(n_inputs, round(n_inputs * share)))
            )
        category = str(rule.options.get("category", "VALIDATION_ERROR"))
        message = str(
            rule.options.get("message", "Injected per-input failure (emulator fault switch)")
        )
        return {
            i: HubSpotError(category, message, status=rule.options.get("status")) for i in chosen
        }

    # -- documented strictness (issue 17) ---------------------------------------------------

    def _multi_status(self, inputs: list[dict[str, Any]]) -> bool:
        """Whether per-input errors may come back as a 207: HubSpot's error-handling reference
        enables multi-status only when every input carries a unique ``objectWriteTraceId``."""
        if self.multi_status_without_trace_id:
            return True
        traces = [i.get("objectWriteTraceId") for i in inputs]
        return None not in traces and len({str(t) for t in traces}) == len(traces)

    def _assoc_error_context(
        self, item: Mapping[str, Any], error: HubSpotError
    ) -> dict[str, list[str]]:
        """What a failed association input's error names: the ids HubSpot could not find (the
        strict reading), or with ``association_errors_name_pairs`` the pair itself."""
        if not self.association_errors_name_pairs:
            return {k: [str(v) for v in vs] for k, vs in error.context.items()}
        to = item.get("to")
        return {
            "fromObjectId": [str((item.get("from") or {}).get("id"))],
            "toObjectId": [str(to.get("id") if isinstance(to, dict) else to)],
        }

    # -- objects -----------------------------------------------------------------------------

    def _id_property(self, otype: str, name: Any, *, required: bool) -> str:
        if not name:
            if required:
                raise HubSpotError(
                    "VALIDATION_ERROR",
                    "idProperty is required for upsert: name a "
                    "property with unique values (or email for contacts)",
                )
            return "hs_object_id"
        name = str(name)
        if name not in self._state.properties[otype]:
            raise HubSpotError("VALIDATION_ERROR", f'Property "{name}" does not exist')
        if name not in self._state.unique_properties(otype):
            raise HubSpotError(
                "VALIDATION_ERROR",
                f"Unable to perform update/upsert by non-unique {TYPE_IDS[otype]} property: {name}",
                context={"idProperty": [name]},
            )
        return name

    def _objects_batch(self, request: Request, otype: str, op: str) -> Response:
        inputs = self._inputs(request.body, self.BATCH_MAX)
        if op == "read":
            return self._batch_read(request, otype, inputs)
        if op == "archive":
            with self._lock:
                for item in inputs:
                    self._state.archive(otype, str(item.get("id")))
            return Response(204)
        if op not in ("create", "update", "upsert"):
            raise HubSpotError("OBJECT_NOT_FOUND", f"Unknown batch operation {op}", status=404)
        keys: dict[tuple[str, str], int] = {}
        with self._lock:
            for item in inputs:
                if op == "create":
                    continue
                if item.get("id") in (None, ""):
                    raise HubSpotError(
                        "VALIDATION_ERROR", f"Invalid input JSON: every {op} input needs an id"
                    )
                id_prop = self._id_property(otype, item.get("idProperty"), required=op == "upsert")
                value = str(item["id"])
                key = (id_prop, value.strip().lower() if id_prop == "email" else value)
                keys[key] = keys.get(key, 0) + 1
        duplicates = sorted(v for (_, v), n in keys.items() if n > 1)
        if duplicates:
            raise HubSpotError(
                "VALIDATION_ERROR",
                f"Duplicate IDs found in batch input: {duplicates}. IDs must be unique",
                context={"ids": duplicates},
            )
        failures = self._injected_failures(request, len(inputs))
        whole_batch = self.batch_errors == "whole_batch" or not self._multi_status(inputs)
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        with self._lock:
            if whole_batch:
                self._state.begin()
            for index, item in enumerate(inputs):
                try:
                    if index in failures:
                        raise failures[index]
                    results.append(self._write_one(otype, op, item))
                except HubSpotError as error:
                    if whole_batch:
                        self._state.rollback()
                        raise
                    errors.append(error.standard_error(_input_context(item)))
            if whole_batch:
                self._state.commit()
        if inputs and results:
            self._result_fault(request, results, str(inputs[0].get("idProperty") or ""))
        status = 207 if errors else (201 if op == "create" else 200)
        return Response(status, _batch_body(self._ordered(results), errors))

    def _write_one(self, otype: str, op: str, item: Mapping[str, Any]) -> dict[str, Any]:
        state = self._state
        values = state.clean(otype, item.get("properties"))
        current = None
        if op != "create":
            id_prop = self._id_property(otype, item.get("idProperty"), required=op == "upsert")
            current = state.lookup(otype, id_prop, str(item["id"]))
            if current is None and (op == "update" or id_prop == "hs_object_id"):
                raise HubSpotError(
                    "OBJECT_NOT_FOUND",
                    f"Could not get some {otype[:-1].upper()} "
                    "objects, they may be deleted or not exist. Check that ids "
                    "are valid.",
                )
            if current is None:  # an upsert creates the record with its key
                values = {**values, **state.clean(otype, {id_prop: str(item["id"])})}
        obj = state.write(otype, current, values)
        result = obj.to_json()
        if op == "upsert":
            result["new"] = current is None
        if item.get("objectWriteTraceId") is not None:
            result["objectWriteTraceId"] = str(item["objectWriteTraceId"])
        return result

    def _batch_read(self, request: Request, otype: str, inputs: list[dict[str, Any]]) -> Response:
        body = request.body
        history = body.get("propertiesWithHistory") or []
        if history and len(inputs) > self.HISTORY_BATCH_MAX:
            raise HubSpotError(
                "VALIDATION_ERROR",
                "The maximum number of inputs supported in a "
                "batch request for property histories is "
                f"{self.HISTORY_BATCH_MAX}. Please reduce the number of items and "
                "try again",
            )
        with self._lock:
            id_prop = self._id_property(otype, body.get("idProperty"), required=False)
            names = list(body.get("properties") or DEFAULT_PROPERTIES[otype])
            extra = [id_prop] if id_prop != "hs_object_id" else []
            names = list(dict.fromkeys([*names, *ALWAYS_RETURNED, LAST_MODIFIED[otype], *extra]))
            results, missing = [], []
            for item in inputs:
                obj = self._state.lookup(otype, id_prop, str(item.get("id")))
                if obj is None:
                    missing.append(str(item.get("id")))
                    continue
                result = obj.to_json(names)
                if history:
                    result["propertiesWithHistory"] = {
                        n: [{"value": v, "timestamp": obj.updated_at, "sourceType": "API"}]
                        for n in history
                        if (v := obj.properties.get(n)) is not None
                    }
                results.append(result)
        errors = []
        if missing:
            error = HubSpotError(
                "OBJECT_NOT_FOUND",
                f"Could not get some {otype[:-1].upper()} "
                "objects, they may be deleted or not exist. Check that ids are "
                "valid.",
            )
            errors.append(error.standard_error({"ids": missing}))
        return Response(207 if errors else 200, _batch_body(self._ordered(results), errors))

    def _get_object(self, request: Request, otype: str, obj_id: str) -> Response:
        names = [n for v in request.query.get("properties", []) for n in v.split(",") if n]
        with self._lock:
            id_prop = self._id_property(otype, request.query_value("idProperty"), required=False)
            obj = self._state.lookup(otype, id_prop, obj_id)
            if obj is None:
                raise HubSpotError(
                    "OBJECT_NOT_FOUND", f"No {otype[:-1]} with {id_prop} {obj_id}", status=404
                )
            names = list(dict.fromkeys([*(names or DEFAULT_PROPERTIES[otype]), *ALWAYS_RETURNED]))
            return Response(200, obj.to_json(names))

    # -- properties --------------------------------------------------------------------------

    def _properties(self, request: Request, otype: str, rest: list[str]) -> Response:
        method = request.method
        with self._lock:
            state = self._state
            if rest == [] and method == "GET":
                return Response(200, {"results": list(state.properties[otype].values())})
            if rest == [] and method == "POST":
                return Response(201, state.add_property(otype, request.body))
            if rest == ["groups"] and method == "GET":
                return Response(200, {"results": list(state.groups[otype].values())})
            if rest == ["groups"] and method == "POST":
                return Response(201, state.add_group(otype, request.body))
            if len(rest) == 1 and method == "GET":
                definition = state.properties[otype].get(rest[0])
                if definition is None:
                    raise HubSpotError(
                        "OBJECT_NOT_FOUND",
                        f"Unable to find property {rest[0]} for object type {TYPE_IDS[otype]}",
                        status=404,
                    )
                return Response(200, definition)
        raise HubSpotError(
            "OBJECT_NOT_FOUND", f"{method} {request.path} is not emulated", status=404
        )

    # -- associations ------------------------------------------------------------------------

    def _direction(self, from_type: str, to_type: str) -> bool:
        """False for contacts → companies, True for companies → contacts; else a 400."""
        pair = (self._state.object_type(from_type), self._state.object_type(to_type))
        if pair not in (("contacts", "companies"), ("companies", "contacts")):
            raise HubSpotError(
                "VALIDATION_ERROR",
                f"Associations {from_type} → {to_type} are not "
                "emulated (contacts ↔ companies only)",
            )
        return pair[0] == "companies"

    def _associations(self, request: Request, from_type: str, to_type: str, op: str) -> Response:
        swap = self._direction(from_type, to_type)
        if op not in ("create", "archive", "labels/archive", "read"):
            raise HubSpotError(
                "OBJECT_NOT_FOUND", f"Unknown association operation {op}", status=404
            )
        limit = self.ASSOCIATION_READ_MAX if op == "read" else self.ASSOCIATION_WRITE_MAX
        inputs = self._inputs(request.body, limit)
        if op == "read":
            return self._associations_read(inputs, swap)
        failures = self._injected_failures(request, len(inputs)) if op == "create" else {}
        results, errors = [], []
        with self._lock:
            for index, item in enumerate(inputs):
                try:
                    if index in failures:
                        raise failures[index]
                    if op == "archive":
                        for target in _ids(item.get("to")):
                            contact, company = self._pair(_one_id(item.get("from")), target, swap)
                            self._state.remove_labels(contact, company, {UNLABELED})
                        continue
                    source, target = _one_id(item.get("from")), _one_id(item.get("to"))
                    contact, company = self._pair(source, target, swap)
                    types = self._association_types(item.get("types"), swap)
                    if op == "labels/archive":
                        self._state.remove_labels(contact, company, types)
                        continue
                    now = self._state.associate(contact, company, types)
                    shown = [_TO_CONTACT_VIEW[t] if swap else t for t in sorted(now)]
                    results.append(
                        {
                            "fromObjectTypeId": TYPE_IDS["companies" if swap else "contacts"],
                            "fromObjectId": int(source),
                            "toObjectTypeId": TYPE_IDS["contacts" if swap else "companies"],
                            "toObjectId": int(target),
                            "labels": [lbl for t in shown if (lbl := _LABELS[t]) is not None],
                        }
                    )
                except HubSpotError as error:
                    errors.append(error.standard_error(self._assoc_error_context(item, error)))
        if op != "create":
            return Response(204)
        return Response(207 if errors else 201, _batch_body(self._ordered(results), errors))

    def _pair(self, source: str, target: str, swap: bool) -> tuple[str, str]:
        contact, company = (target, source) if swap else (source, target)
        for otype, obj_id in (("contacts", contact), ("companies", company)):
            if obj_id not in self._state.objects[otype]:
                raise HubSpotError(
                    "OBJECT_NOT_FOUND",
                    f"No {otype[:-1]} with id {obj_id} exists",
                    context={"ids": [obj_id]},
                )
        return contact, company

    @staticmethod
    def _association_types(types: Any, swap: bool) -> set[int]:
        allowed = (COMPANY_PRIMARY, COMPANY_UNLABELED) if swap else (PRIMARY, UNLABELED)
        if not isinstance(types, list) or not types:
            raise HubSpotError(
                "VALIDATION_ERROR",
                "Each association input needs types: [{associationCategory, associationTypeId}]",
            )
        chosen: set[int] = set()
        for spec in types:
            type_id = spec.get("associationTypeId") if isinstance(spec, dict) else None
            category = spec.get("associationCategory") if isinstance(spec, dict) else None
            if (
                category != "HUBSPOT_DEFINED"
                or not isinstance(type_id, int)
                or type_id not in allowed
            ):
                raise HubSpotError(
                    "VALIDATION_ERROR",
                    f"Invalid association type {spec!r}: the "
                    f"emulator knows HUBSPOT_DEFINED {list(allowed)}",
                )
            chosen.add(_TO_COMPANY_VIEW.get(type_id, type_id) if swap else type_id)
        return chosen

    def _associations_read(self, inputs: list[dict[str, Any]], swap: bool) -> Response:
        results, errors = [], []
        with self._lock:
            for item in inputs:
                source = _one_id(item)
                links = (
                    self._state.links_of_company(source)
                    if swap
                    else self._state.links_of_contact(source)
                )
                if not links:
                    error = HubSpotError(
                        "OBJECT_NOT_FOUND",
                        f"No {'contact' if swap else 'company'}"
                        f" is associated with {'company' if swap else 'contact'} "
                        f"{source}.",
                    )
                    errors.append(error.standard_error({"fromObjectId": [source]}))
                    continue
                offset = int(item.get("after") or 0)
                targets = sorted(links, key=int)
                page = targets[offset : offset + self.ASSOCIATION_PAGE]
                entry: dict[str, Any] = {
                    "from": {"id": source},
                    "to": [
                        {
                            "toObjectId": int(t),
                            "associationTypes": [
                                {
                                    "category": "HUBSPOT_DEFINED",
                                    "typeId": shown,
                                    "label": _LABELS[shown],
                                }
                                for shown in sorted(
                                    _TO_CONTACT_VIEW[x] if swap else x for x in links[t]
                                )
                            ],
                        }
                        for t in page
                    ],
                }
                if offset + self.ASSOCIATION_PAGE < len(targets):
                    after = str(offset + self.ASSOCIATION_PAGE)
                    entry["paging"] = {"next": {"after": after}}
                results.append(entry)
        return Response(207 if errors else 200, _batch_body(self._ordered(results), errors))


def _correlation_id() -> str:
    return str(uuid.uuid4())


def _batch_body(results: list[dict[str, Any]], errors: list[dict[str, Any]]) -> dict[str, Any]:
    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    body: dict[str, Any] = {
        "status": "COMPLETE",
        "results": results,
        "startedAt": stamp,
        "completedAt": stamp,
    }
    if errors:
        body["numErrors"] = len(errors)
        body["errors"] = errors
    return body


def _input_context(item: Mapping[str, Any]) -> dict[str, list[str]]:
    """What a 207 error names of its input: the id it was addressed by and its trace id."""
    context: dict[str, list[str]] = {}
    if item.get("id") not in (None, ""):
        context["ids"] = [str(item["id"])]
    if item.get("objectWriteTraceId") is not None:
        context["objectWriteTraceId"] = [str(item["objectWriteTraceId"])]
    return context


def _one_id(ref: Any) -> str:
    if isinstance(ref, dict) and ref.get("id") not in (None, ""):
        return str(ref["id"])
    raise HubSpotError("VALIDATION_ERROR", f"Invalid input JSON: expected {{id: ...}}, got {ref!r}")


def _ids(refs: Any) -> list[str]:
    return [_one_id(r) for r in refs] if isinstance(refs, list) else [_one_id(refs)]
