"""A small threaded HTTP server that destination emulators build on.

It owns what every emulator needs and no vendor knows about: a ``ThreadingHTTPServer`` on
loopback and a random port, JSON request parsing, a request log tests assert on, fault switches
(error statuses, slow answers, dropped connections, partial batch failures) that are
deterministic by seed and settable while the server runs, and a rolling-window rate counter.

An emulator subclasses :class:`EmulatorServer` and overrides the hooks:

* :meth:`EmulatorServer.handle` (required): answer one request (routing, state, vendor shapes);
* :meth:`EmulatorServer.authenticate`: answer a request that lacks valid credentials;
* :meth:`EmulatorServer.fault_response`: the vendor's body for an injected error status;
* :meth:`EmulatorServer.finalize`: add headers every answer carries (rate-limit headers);
* :meth:`EmulatorServer.is_write`: which requests :meth:`EmulatorServer.write_requests` lists.

A request goes: authenticate → fault switches → handle → finalize → log. Faults therefore never
hide an authentication error, and an injected fault never reaches the emulator's state unless the
rule says ``apply=True`` (the write lands but the answer is lost — the "sent but not recorded"
case an idempotent engine must survive).
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypedDict, Unpack
from urllib.parse import parse_qs, unquote, urlsplit

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed HTTP request, as a handler sees it.

    ``body`` is the parsed JSON (None when the request had no body); ``json_error`` says why the
    body was not valid JSON, so the emulator can answer in its vendor's words. ``fault`` is set
    when a :attr:`FaultKind.PARTIAL` rule fired: the handler decides which inputs fail.
    ``context`` is scratch space shared by the hooks of one request (e.g. rate-limit counters).
    """

    method: str
    path: str
    query: Mapping[str, Sequence[str]]
    headers: Mapping[str, str]
    body: Any = None
    json_error: str | None = None
    fault: FaultRule | None = None
    context: dict[str, Any] = field(default_factory=dict)

    def query_value(self, name: str) -> str | None:
        """The first value of query parameter ``name``, or None."""
        values = self.query.get(name)
        return values[0] if values else None

    def header(self, name: str) -> str | None:
        """A request header by case-insensitive name, or None."""
        return self.headers.get(name.lower())


@dataclass(slots=True)
class Response:
    """An answer: a status, an optional JSON body (None: empty body) and extra headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class FaultKind(StrEnum):
    """What an injected fault does to a request."""

    STATUS = "status"
    """Answer with an error status (the emulator's body for it) instead of processing."""
    DELAY = "delay"
    """Wait ``delay_s`` (longer than the client's timeout), then process (``apply``) or not."""
    DISCONNECT = "disconnect"
    """Close the connection without an answer; with ``apply`` the request is processed first."""
    PARTIAL = "partial"
    """Process the request, but the emulator fails some inputs of the batch (a 207 or similar)."""


@dataclass(slots=True)
class FaultRule:
    """One fault switch, made by the ``inject_*`` methods; a test may keep it to read ``fired``.

    A rule matches requests by ``method`` and ``path_prefix`` (None: any). Of the matching
    requests, the first ``after`` pass untouched; after that each one is faulted with probability
    ``rate`` (drawn from the server's seeded generator), at most ``count`` times (None: no end).
    ``options`` carries vendor details (a 429's policy, a partial failure's input rate, body or
    header overrides).
    """

    kind: FaultKind
    rate: float = 1.0
    status: int | None = None
    delay_s: float = 0.0
    apply: bool = False
    path_prefix: str | None = None
    method: str | None = None
    after: int = 0
    count: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    seen: int = 0
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        """Whether this rule applies to a request (ignoring ``after``, ``count`` and ``rate``)."""
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)

    @property
    def exhausted(self) -> bool:
        """True once the rule has fired ``count`` times."""
        return self.count is not None and self.fired >= self.count


class FaultWhere(TypedDict, total=False):
    """Which requests a fault switch matches and how often it fires (see :class:`FaultRule`)."""

    rate: float
    path_prefix: str | None
    method: str | None
    count: int | None
    after: int


class FaultInjector:
    """The fault switches of one server: thread-safe, deterministic by seed.

    With requests sent one at a time the same seed faults the same requests on every run; with
    concurrent requests the order in which they reach :meth:`decide` decides.
    """

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def add(self, rule: FaultRule) -> FaultRule:
        """Switch a fault on; rules are tried in the order they were added."""
        if not 0.0 <= rule.rate <= 1.0:
            raise ValueError(f"fault rate must be within [0, 1], got {rule.rate}")
        if rule.after < 0 or (rule.count is not None and rule.count < 0):
            raise ValueError("fault 'after' and 'count' must not be negative")
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: FaultRule) -> None:
        """Switch one fault off (no error if it is already gone)."""
        with self._lock:
            if rule in self._rules:
                self._rules.remove(rule)

    def clear(self) -> None:
        """Switch every fault off."""
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[FaultRule]:
        """The active rules, in the order they are tried."""
        with self._lock:
            return list(self._rules)

    def decide(self, method: str, path: str) -> FaultRule | None:
        """The rule that faults this request, if any (and count it as fired)."""
        with self._lock:
            for rule in self._rules:
                if rule.exhausted or not rule.matches(method, path):
                    continue
                rule.seen += 1
                if rule.seen <= rule.after:
                    continue
                if rule.rate < 1.0 and self._rng.random() >= rule.rate:
                    continue
                rule.fired += 1
                return rule
        return None


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One request as the log keeps it.

    ``status`` is None when the connection was dropped without an answer; ``n_inputs`` is the
    length of a body's ``inputs`` list (batch endpoints), else None; ``time`` is the server
    clock (monotonic seconds) when the request arrived; ``fault`` names the injected fault kind.
    """

    method: str
    path: str
    query: Mapping[str, Sequence[str]]
    status: int | None
    body: Any
    n_inputs: int | None
    time: float
    write: bool
    fault: str | None = None


class RequestLog:
    """Every request a server answered (or dropped), in arrival order; thread-safe."""

    def __init__(self) -> None:
        self._entries: list[LoggedRequest] = []
        self._lock = threading.Lock()

    def append(self, entry: LoggedRequest) -> None:
        """Record one request."""
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[LoggedRequest]:
        """A copy of every entry."""
        with self._lock:
            return list(self._entries)

    def select(
        self,
        *,
        path_contains: str | None = None,
        method: str | None = None,
        write: bool | None = None,
        status: int | None = None,
    ) -> list[LoggedRequest]:
        """The entries matching every given criterion."""
        return [
            entry
            for entry in self.entries()
            if (path_contains is None or path_contains in entry.path)
            and (method is None or entry.method == method.upper())
            and (write is None or entry.write == write)
            and (status is None or entry.status == status)
        ]

    def reset(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class SlidingWindow:
    """Counts events in a rolling window of ``interval_s`` seconds, allowing at most ``limit``."""

    def __init__(self, limit: int, interval_s: float, clock: Clock = time.monotonic) -> None:
        if limit < 1 or interval_s <= 0:
            raise ValueError("a rate window needs limit >= 1 and a positive interval")
        self.limit = limit
        self.interval_s = interval_s
        self._clock = clock
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.interval_s:
            self._times.popleft()

    def acquire(self) -> tuple[bool, int, float]:
        """Count one event if there is room: (allowed, remaining after it, seconds until room)."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            if len(self._times) >= self.limit:
                wait = self._times[0] + self.interval_s - now
                return False, 0, max(wait, 0.0)
            self._times.append(now)
            return True, self.limit - len(self._times), 0.0

    def remaining(self) -> int:
        """Events still allowed in the current window."""
        with self._lock:
            self._expire(self._clock())
            return self.limit - len(self._times)

    def reset(self) -> None:
        """Forget every counted event."""
        with self._lock:
            self._times.clear()


class TrackingServer(ThreadingHTTPServer):
    """A threaded server that keeps its open connections, so that stopping can end them.

    Idle keep-alive connections would otherwise keep their handler threads blocked on read
    after the server stopped. The Salesforce emulator (TLS, its own handler) builds on it too.
    """

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Track the connection so :meth:`close_connections` can end it."""
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Forget the connection once its handler is done."""
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut down open connections; their handler threads then see EOF and finish."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                connection.shutdown(socket.SHUT_RDWR)

    def serve_in_thread(self, name: str, poll_interval: float = 0.5) -> threading.Thread:
        """Serve in a new daemon thread called ``name``; returns the thread, started."""
        thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": poll_interval},
            name=name,
            daemon=True,
        )
        thread.start()
        return thread


class _Server(TrackingServer):
    emulator: EmulatorServer

    def __init__(self, address: tuple[str, int], emulator: EmulatorServer) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out or a dropped connection is a scenario, not an emulator bug.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the request log is the record."""

    def do_GET(self) -> None:
        """Serve a GET."""
        self._serve()

    def do_POST(self) -> None:
        """Serve a POST."""
        self._serve()

    def do_PUT(self) -> None:
        """Serve a PUT."""
        self._serve()

    def do_PATCH(self) -> None:
        """Serve a PATCH."""
        self._serve()

    def do_DELETE(self) -> None:
        """Serve a DELETE."""
        self._serve()

    def _serve(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: Any = None
        json_error = None
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError as exc:
                json_error = str(exc)
        request = Request(
            method=self.command,
            path=unquote(split.path),
            query=parse_qs(split.query),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            json_error=json_error,
        )
        response = self.server.emulator._process(request)
        if response is None:
            self.close_connection = True
            return
        payload = b"" if response.body is None else json.dumps(response.body).encode()
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = ""
        self.send_response(response.status, reason)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.body is not None:
            self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class EmulatorServer:
    """Base of the destination emulators: lifecycle, fault switches and request log.

    Subclasses must override :meth:`handle` and may override the other hooks (see the module
    docstring). Usable as a context manager (``with Emulator() as emu: emu.url``), with
    :meth:`start`/:meth:`stop`, or in the foreground with :meth:`serve_forever`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seed: int = 0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.host = host
        self.port = port
        self.clock = clock
        self.faults = FaultInjector(seed)
        self.log = RequestLog()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL clients use, e.g. ``http://127.0.0.1:54321`` (known once started)."""
        if self._server is None:
            raise RuntimeError("the emulator is not started: use start() or a with block")
        return f"http://{self.host}:{self.port}"

    def _bind(self) -> _Server:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self._stopping.clear()
        server = _Server((self.host, self.port), self)
        self.port = server.server_address[1]
        self._server = server
        return server

    def start(self) -> Self:
        """Serve in a background thread; returns self once the port is bound."""
        server = self._bind()
        self._thread = server.serve_in_thread(f"{type(self).__name__}:{self.port}", 0.05)
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (Ctrl-C), then stop."""
        server = self._bind()
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self._close()

    def stop(self) -> None:
        """Stop serving, wake sleeping fault handlers and close every connection."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._close()

    def _close(self) -> None:
        if self._server is not None:
            self._stopping.set()
            self._server.close_connections()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- hooks -------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Answer one request. Subclasses must override."""
        raise NotImplementedError

    def authenticate(self, request: Request) -> Response | None:
        """The answer to a request without valid credentials, or None to let it through."""
        return None

    def fault_response(self, rule: FaultRule, request: Request) -> Response:
        """The answer for an injected error status; ``options`` may set ``body`` and ``headers``."""
        status = rule.status or 500
        body = rule.options.get("body", {"status": "error", "message": f"injected {status}"})
        return Response(status, body, dict(rule.options.get("headers", {})))

    def finalize(self, request: Request, response: Response) -> None:
        """Add what every answer carries (rate-limit headers, ...). Runs for every answer."""

    def is_write(self, method: str, path: str) -> bool:
        """Whether a request writes to the destination (for :meth:`write_requests`)."""
        return False

    # -- fault switches ----------------------------------------------------------------------

    def inject_status(self, status: int, **settings: Any) -> FaultRule:
        """Answer matching requests with ``status`` (429, 500, 502, 503, 504, ...) unprocessed.

        ``settings``: the :class:`FaultWhere` keys; any other is an option (``body``,
        ``headers``, or the emulator's own, such as a 429's policy)."""
        return self._inject(FaultKind.STATUS, settings, status=status)

    def inject_timeout(
        self, delay_s: float, *, apply: bool = False, **where: Unpack[FaultWhere]
    ) -> FaultRule:
        """Hold matching requests ``delay_s`` seconds (set it above the client's timeout).

        With ``apply`` the request is then processed (the write lands, the client never hears
        of it); without, the connection is closed unprocessed.
        """
        return self.faults.add(FaultRule(FaultKind.DELAY, delay_s=delay_s, apply=apply, **where))

    def inject_disconnect(self, *, apply: bool = False, **where: Unpack[FaultWhere]) -> FaultRule:
        """Close matching connections without an answer (after processing, with ``apply``)."""
        return self.faults.add(FaultRule(FaultKind.DISCONNECT, apply=apply, **where))

    def inject_partial_failure(self, **settings: Any) -> FaultRule:
        """Fail some inputs of matching batch requests: the :class:`FaultWhere` keys, and
        options the emulator defines."""
        return self._inject(FaultKind.PARTIAL, settings)

    def _inject(self, kind: FaultKind, settings: Mapping[str, Any], **fixed: Any) -> FaultRule:
        """Add a rule of ``kind``: the :class:`FaultWhere` keys of ``settings`` say which
        requests it matches, the rest are its ``options``."""
        where = {k: v for k, v in settings.items() if k in FaultWhere.__annotations__}
        options = {k: v for k, v in settings.items() if k not in where}
        return self.faults.add(FaultRule(kind, **fixed, **where, options=options))

    def fail_after(
        self,
        n_requests: int,
        *,
        status: int | None = 503,
        path_prefix: str | None = None,
        method: str | None = None,
    ) -> FaultRule:
        """Let ``n_requests`` matching requests through, then fail every later one (a crash window).

        ``status=None`` drops the connections instead of answering. Undo with
        :meth:`clear_faults` or ``faults.remove(rule)``.
        """
        if status is None:
            return self.inject_disconnect(path_prefix=path_prefix, method=method, after=n_requests)
        return self.inject_status(status, path_prefix=path_prefix, method=method, after=n_requests)

    def clear_faults(self) -> None:
        """Switch every fault off."""
        self.faults.clear()

    # -- request log -------------------------------------------------------------------------

    def requests(
        self,
        *,
        path_contains: str | None = None,
        method: str | None = None,
        status: int | None = None,
    ) -> list[LoggedRequest]:
        """Logged requests, optionally filtered by path substring, method and status."""
        return self.log.select(path_contains=path_contains, method=method, status=status)

    def write_requests(self) -> list[LoggedRequest]:
        """Logged requests that write (whatever their status)."""
        return self.log.select(write=True)

    def reset_log(self) -> None:
        """Forget the logged requests."""
        self.log.reset()

    # -- the request path --------------------------------------------------------------------

    def _process(self, request: Request) -> Response | None:
        """Answer one request through the hooks and the faults; None means drop the connection."""
        arrived = self.clock()
        fault: FaultRule | None = None
        response = self.authenticate(request)
        if response is None:
            fault = self.faults.decide(request.method, request.path)
            response = self._faulted(fault, request) if fault else self._handle(request)
        if response is not None:
            self.finalize(request, response)
        body = request.body
        inputs = body.get("inputs") if isinstance(body, dict) else None
        self.log.append(
            LoggedRequest(
                method=request.method,
                path=request.path,
                query=request.query,
                status=None if response is None else response.status,
                body=body,
                n_inputs=len(inputs) if isinstance(inputs, list) else None,
                time=arrived,
                write=self.is_write(request.method, request.path),
                fault=None if fault is None else fault.kind.value,
            )
        )
        return response

    def _faulted(self, rule: FaultRule, request: Request) -> Response | None:
        if rule.kind is FaultKind.STATUS:
            return self.fault_response(rule, request)
        if rule.kind is FaultKind.DELAY:
            self._stopping.wait(rule.delay_s)
            return self._handle(request) if rule.apply else None
        if rule.kind is FaultKind.DISCONNECT:
            if rule.apply:
                self._handle(request)
            return None
        return self._handle(replace(request, fault=rule))

    def _handle(self, request: Request) -> Response:
        try:
            return self.handle(request)
        except Exception:  # an emulator bug must show up as a 500 and a traceback, not a hang
            traceback.print_exc()
            return Response(500, {"status": "error", "message": "emulator bug: see its stderr"})
