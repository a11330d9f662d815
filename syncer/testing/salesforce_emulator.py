"""A local Salesforce REST emulator that the real ``simple-salesforce`` client talks to.

How to connect
--------------
The emulator serves **HTTPS on loopback with a throwaway self-signed certificate** generated
at start-up (``emu.cert_path``; SAN ``127.0.0.1`` and ``localhost``), because simple-salesforce
always builds ``https://{instance}`` URLs -- also in ``sf.Account.describe()``, which ignores an
overwritten ``sf.base_url``. Point the client at ``emu.url`` and trust the certificate through
its ``requests`` session::

    with SalesforceEmulator() as emu:
        sf = emu.client()                 # the same, spelled out:
        session = requests.Session()
        session.trust_env = False         # else REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE win
        session.verify = str(emu.cert_path)
        sf = Salesforce(instance_url=emu.url, session_id=emu.session_id,
                        version=emu.api_version, session=session)

(requests lets the ``REQUESTS_CA_BUNDLE`` and ``CURL_CA_BUNDLE`` environment variables override
``session.verify`` unless ``trust_env`` is off -- a trap for the connector's own session too.)

From a shell: ``curl --cacert <cert_path> -H "Authorization: Bearer test-session"
https://127.0.0.1:<port>/services/data/v59.0/sobjects/Account/describe/`` (or set
``REQUESTS_CA_BUNDLE=<cert_path>`` for any ``requests``-based program). ``tls=False`` serves plain
HTTP for tools that cannot trust a certificate; `client` then overwrites ``base_url``,
``bulk2_url`` and ``tooling_url``, but ``sf.<Object>.*`` helpers still build https URLs and fail.

What is modeled (paths under ``/services/data/vXX.X/``)
-------------------------------------------------------
``sobjects/`` and ``sobjects/{type}/describe/``; ``sobjects/{type}/{id}`` (GET, DELETE);
``sobjects/{type}/{extField}/{value}`` (PATCH upsert); ``composite/sobjects/{type}/{extField}``
(PATCH, sObject Collections upsert, at most 200 records, allOrNone); ``query/?q=`` (the SOQL
subset in `syncer.testing.salesforce_soql`, pages of ``query_page_size`` with
``nextRecordsUrl``); ``tooling/sobjects/CustomField/`` (POST: FullName ``Account.X__c`` and
Metadata ``{type, length, label, externalId, unique, caseSensitive}``); Bulk API 2.0 ingest jobs
(`syncer.testing.salesforce_bulk`); ``limits/``. Objects Account (001) and Contact (003) and the
write rules live in `syncer.testing.salesforce_org`.

Every authenticated request counts one API call; every answer carries
``Sforce-Limit-Info: api-usage=N/M``; once N reaches ``daily_api_limit`` requests answer 403
REQUEST_LIMIT_EXCEEDED. A missing or wrong ``Authorization: Bearer <session_id>`` answers 401
INVALID_SESSION_ID and does not count. Faults (`inject`) come after counting: a faulted request
counts, as it would on a real org.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self
from urllib.parse import parse_qs, unquote, urlsplit

from syncer.testing._http import TrackingServer
from syncer.testing.salesforce_bulk import BulkIngest
from syncer.testing.salesforce_org import Org
from syncer.testing.salesforce_rest import Reply, RestApi, RestRequest, not_found
from syncer.testing.salesforce_schema import SalesforceApiError
from syncer.testing.selfsigned import write_self_signed_certificate

if TYPE_CHECKING:
    from simple_salesforce import Salesforce

__all__ = ["Fault", "FaultKind", "LoggedRequest", "SalesforceApiError", "SalesforceEmulator"]

FaultKind = Literal[
    "server_error", "timeout", "disconnect", "lock_row", "missing_result", "extra_result"
]
# Assumption: the bodies of 5xx answers (Salesforce documents the statuses, not these bodies).
_SERVER_ERRORS = {
    500: "UNKNOWN_EXCEPTION",
    502: "BAD_GATEWAY",
    503: "SERVER_UNAVAILABLE",
}
_PATH = re.compile(r"^/services/data/v(\d+\.\d)(?:/(.*))?$")


@dataclass
class Fault:
    """An injected failure; change its fields at run time under ``emu.lock`` if you must.

    ``server_error`` answers ``status`` with a Salesforce error body; ``timeout`` waits
    ``delay`` seconds and closes the connection without an answer; ``disconnect`` closes it at
    once; ``lock_row`` fails single records with UNABLE_TO_LOCK_ROW (collections and bulk);
    ``missing_result`` and ``extra_result`` break the one-result-per-record contract of an
    sObject Collections answer (the last record unanswered, or the first answered twice) and of
    a bulk job's successful results (the first row left out, or a row for a key not sent).
    ``rate`` is the chance per request (per record for ``lock_row``), drawn from the seeded
    generator; ``times`` caps how often it fires (``None``: unlimited); ``path`` is a prefix
    of the path after ``/services/data/vXX.X/`` (``"composite/"``, ``"jobs/ingest"``).
    """

    kind: FaultKind
    rate: float = 1.0
    times: int | None = None
    path: str | None = None
    method: str | None = None
    status: int = 503
    delay: float = 1.0

    def matches(self, kind: str, method: str, rel: str) -> bool:
        """True if this fault may fire for this kind of failure on this request."""
        return (
            self.kind == kind
            and self.times != 0
            and (self.method is None or self.method.upper() == method)
            and (self.path is None or rel.startswith(self.path.strip("/")))
        )


@dataclass(frozen=True)
class LoggedRequest:
    """One request the emulator answered (or dropped, for timeout/disconnect faults)."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int
    records: int
    body: Any
    fault: str | None
    time: float


def _error(exc: SalesforceApiError) -> Reply:
    return Reply(exc.status, exc.body())


class SalesforceEmulator:
    """A threaded HTTPS server on loopback speaking the Salesforce REST subset syncer uses.

    State (records, jobs, usage, faults, log) is in memory and guarded by ``self.lock``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        session_id: str = "test-session",
        api_version: str = "59.0",
        daily_api_limit: int = 15000,
        tls: bool = True,
        seed: int = 0,
        bulk_polls: int = 2,
        bulk_delay: float = 0.0,
        query_page_size: int = 2000,
    ) -> None:
        self.host, self.tls = host, tls
        self.session_id = session_id
        self.api_version = api_version
        self.daily_api_limit = daily_api_limit
        self.query_page_size = query_page_size
        self.lock = threading.RLock()
        self.org = Org()
        self.bulk = BulkIngest(self.org, api_version, polls=bulk_polls, delay=bulk_delay)
        self._usage = 0
        self._rng = random.Random(seed)
        self._faults: list[Fault] = []
        self._log: list[LoggedRequest] = []
        self.rest = RestApi(
            self.org,
            self.bulk,
            page_size=query_page_size,
            usage=lambda: (self._usage, self.daily_api_limit),
        )
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._tmp: Path | None = None
        self.cert_path: Path | None = None

    # -- life cycle ----

    def _bind(self) -> _Server:
        server = _Server((self.host, self._port), _Handler)
        server.emulator = self
        if self.tls:
            import ssl

            self._tmp = Path(tempfile.mkdtemp(prefix="syncer-sf-emulator-"))
            self.cert_path, key_path = write_self_signed_certificate(self._tmp, self.host)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.cert_path, key_path)
            # The handshake then runs in the connection's thread, not in the accept loop.
            server.socket = context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._port = server.server_address[1]
        self._server = server
        return server

    def start(self) -> Self:
        """Bind and serve in a background thread; returns self."""
        self._thread = self._bind().serve_in_thread("salesforce-emulator")
        return self

    def serve_forever(self) -> None:
        """Bind and serve in this thread until interrupted (for ``syncer emulate``)."""
        server = self._bind()
        try:
            server.serve_forever()
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving and delete the throwaway certificate."""
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
                self._thread.join(timeout=5)
            self._server.server_close()
            self._server.close_connections()
            self._server = self._thread = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (after start)."""
        return self._port

    @property
    def url(self) -> str:
        """The instance URL, e.g. ``https://127.0.0.1:51234``."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self._port}"

    @property
    def base_path(self) -> str:
        """``/services/data/vXX.X`` for this emulator's API version."""
        return f"/services/data/v{self.api_version}"

    def client(self, **kwargs: Any) -> Salesforce:
        """A real ``simple_salesforce.Salesforce`` wired to this emulator (see module docs)."""
        import requests
        from simple_salesforce import Salesforce

        session = requests.Session()
        # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override session.verify, and proxy
        # variables could route loopback elsewhere: ignore the environment for this session.
        session.trust_env = False
        if self.tls:
            session.verify = str(self.cert_path)
        sf = Salesforce(
            instance_url=self.url, session_id=self.session_id, version=self.api_version,
            session=session, **kwargs,
        )  # fmt: skip
        if not self.tls:
            sf.base_url = f"{self.url}{self.base_path}/"
            sf.bulk2_url = f"{sf.base_url}jobs/"
            sf.tooling_url = f"{sf.base_url}tooling/"
        return sf

    # -- switches and inspection ----

    @property
    def api_usage(self) -> int:
        """API calls counted so far today; assign to simulate an org near its limit."""
        return self._usage

    @api_usage.setter
    def api_usage(self, used: int) -> None:
        with self.lock:
            self._usage = used

    @property
    def allow_field_creation(self) -> bool:
        """False makes Tooling CustomField creation answer 403 INSUFFICIENT_ACCESS."""
        return self.org.allow_field_creation

    @allow_field_creation.setter
    def allow_field_creation(self, allowed: bool) -> None:
        with self.lock:
            self.org.allow_field_creation = allowed

    # -- documented strictness (issue 17): field-level security, session expiry ----

    @property
    def manage_permissions(self) -> bool:
        """False: the integration user may not create permission sets or field permissions
        (403 INSUFFICIENT_ACCESS_OR_READONLY), so an admin must grant field access."""
        return self.rest.permissions.manage_permissions

    @manage_permissions.setter
    def manage_permissions(self, allowed: bool) -> None:
        with self.lock:
            self.rest.permissions.manage_permissions = allowed

    def expire_session(self) -> str:
        """End the current session (requests with it answer 401 INVALID_SESSION_ID, as after a
        timeout); return the session id the next login is given."""
        with self.lock:
            self.session_id = f"session-{secrets.token_hex(8)}"
            return self.session_id

    def inject(
        self,
        kind: FaultKind,
        *,
        rate: float = 1.0,
        times: int | None = None,
        path: str | None = None,
        method: str | None = None,
        status: int = 503,
        delay: float = 1.0,
    ) -> Fault:
        """Add a fault (see `Fault`); returns it so a test can inspect ``times`` left."""
        fault = Fault(kind, rate, times, path, method, status, delay)
        with self.lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        with self.lock:
            self._faults.clear()

    def records(self, type_name: str, *, deleted: bool = False) -> dict[str, dict[str, Any]]:
        """Live records of a type by id (``deleted=True``: the recycle bin); copies."""
        with self.lock:
            return self.org.records(type_name, deleted=deleted)

    def find(self, type_name: str, field_name: str, value: Any) -> list[dict[str, Any]]:
        """Live records whose field equals ``value``."""
        with self.lock:
            return self.org.find(type_name, field_name, value)

    def insert(self, type_name: str, **values: Any) -> str:
        """Create a record directly, without validation or an API call; returns its id."""
        with self.lock:
            return self.org.insert(type_name, values)

    def delete(self, type_name: str, record_id: str) -> None:
        """Move a record to the recycle bin (upserts on its external id: ENTITY_IS_DELETED)."""
        with self.lock:
            self.org.delete(type_name, record_id)

    def add_field(self, full_name: str, **metadata: Any) -> str:
        """Create a custom field without an API call, e.g.
        ``add_field("Account.Syncer_Account_Id__c", type="Text", length=255, label="Id",
        externalId=True, unique=True)``; returns the field id."""
        with self.lock:
            return self.org.add_field(full_name, metadata)

    def requests(
        self, method: str | None = None, path: str | None = None, status: int | None = None
    ) -> list[LoggedRequest]:
        """Logged requests, oldest first; ``path`` matches as a substring of the URL path."""
        with self.lock:
            return [
                r
                for r in self._log
                if (method is None or r.method == method.upper())
                and (path is None or path in r.path)
                and (status is None or r.status == status)
            ]

    def write_requests(self, path: str | Path) -> Path:
        """Write the request log as JSON lines; returns the path."""
        target = Path(path)
        with self.lock, target.open("w", encoding="utf-8") as out:
            for entry in self._log:
                out.write(json.dumps(asdict(entry), default=str) + "\n")
        return target

    def reset_log(self) -> None:
        """Forget logged requests."""
        with self.lock:
            self._log.clear()

    # -- request pipeline ----

    def _draw(self, kind: str, method: str, rel: str) -> Fault | None:
        with self.lock:
            for fault in self._faults:
                if fault.matches(kind, method, rel) and self._rng.random() < fault.rate:
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def _result_fault(self, method: str, rel: str) -> str | None:
        for kind in ("missing_result", "extra_result"):
            if self._draw(kind, method, rel) is not None:
                return kind
        return None

    def _limit_header(self) -> str:
        return f"api-usage={self._usage}/{self.daily_api_limit}"

    def _log_request(self, entry: LoggedRequest) -> None:
        with self.lock:
            self._log.append(entry)

    def handle(
        self, method: str, path: str, params: dict[str, list[str]], headers: Any, raw: bytes
    ) -> tuple[Reply, Fault | None, Any]:
        """Answer one request: (reply, the fault that replaces it, the body for the log).

        Order: path, session (401, not counted), daily limit (403), count, faults, JSON, route.
        """
        body: Any = raw.decode("utf-8", "replace") if raw else None
        match = _PATH.match(path)
        if match is None:
            return _error(not_found()), None, body
        version, rel = match.group(1), (match.group(2) or "").strip("/")
        if headers.get("Authorization", "") != f"Bearer {self.session_id}":
            expired = {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
            return Reply(401, [expired]), None, body
        with self.lock:
            if self._usage >= self.daily_api_limit:
                refused = {
                    "message": "TotalRequests Limit exceeded.",
                    "errorCode": "REQUEST_LIMIT_EXCEEDED",
                }
                return Reply(403, [refused]), None, body
            self._usage += 1
        for kind in ("timeout", "disconnect", "server_error"):
            fault = self._draw(kind, method, rel)
            if fault is not None:
                code = _SERVER_ERRORS.get(fault.status, "UNKNOWN_EXCEPTION")
                message = f"injected fault: HTTP {fault.status}"
                return Reply(fault.status, [{"message": message, "errorCode": code}]), fault, body
        if raw and "json" in headers.get("Content-Type", "application/json"):
            try:
                body = json.loads(raw)
            except ValueError as exc:
                return _error(SalesforceApiError(400, "JSON_PARSER_ERROR", str(exc))), None, body
        request = RestRequest(
            method,
            rel.split("/") if rel else [],
            f"/services/data/v{version}",
            params,
            body,
            lock_row=lambda: self._draw("lock_row", method, rel) is not None,
            result_fault=lambda: self._result_fault(method, rel),
        )
        try:
            with self.lock:
                return self.rest.route(request), None, body
        except SalesforceApiError as exc:
            return _error(exc), None, body


class _Server(TrackingServer):
    allow_reuse_address = True
    emulator: SalesforceEmulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Dropped connections and refused TLS handshakes are expected here: stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one TLS handshake per client connection
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """The emulator keeps its own request log."""

    def _serve(self) -> None:
        emu = self.server.emulator
        split = urlsplit(self.path)
        path, params = unquote(split.path), parse_qs(split.query)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        reply, fault, body = emu.handle(self.command, path, params, self.headers, raw)
        entry = LoggedRequest(
            method=self.command,
            path=path,
            query=params,
            status=reply.status,
            records=reply.records,
            body=body,
            fault=fault.kind if fault else None,
            time=time.time(),
        )
        if fault is not None and fault.kind in ("timeout", "disconnect"):
            if fault.kind == "timeout":
                time.sleep(fault.delay)
            self.close_connection = True
            emu._log_request(replace(entry, status=0))
            return
        payload = b""
        if isinstance(reply.body, str):
            payload = reply.body.encode("utf-8")
        elif reply.body is not None:
            payload = json.dumps(reply.body).encode("utf-8")
        self.send_response(reply.status)
        self.send_header("Sforce-Limit-Info", emu._limit_header())
        if payload:
            self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        emu._log_request(entry)

    # BaseHTTPRequestHandler dispatches on these names.
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815
