"""An in-memory destination for tests and the conformance suite, with fault switches.

:class:`MemoryConnector` keeps records in dicts keyed by product key (in a :class:`MemoryStore`
that a second connector can share, as a rerun after a crash does), answers in a shuffled order
(destinations do not promise input order), and logs every call. Its switches, all in
:class:`MemoryConfig`, inject what real destinations do: transient failures with Retry-After,
whole-batch refusals, per-record refusals, a crash after the k-th acknowledged batch, latency, and
a server-side rate limit that answers 429 when exceeded. Random choices come from ``seed``, so a
sequential run is reproducible.

It is registered under no entry point: tests construct it.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import Field, SecretStr

from syncer.connectors.base import (
    AssociationChange,
    AssociationResult,
    Capabilities,
    Connector,
    ConnectorConfig,
    EnsureReport,
    ObjectSpec,
    RateLimitInfo,
    WriteRecord,
    WriteResult,
)
from syncer.errors import BatchRejected, ConfigError, RetriableError
from syncer.fields import FieldSpec, FieldType

__all__ = [
    "FakeClock",
    "MemoryCall",
    "MemoryConfig",
    "MemoryConnector",
    "MemoryStore",
    "StoredRecord",
]


class FakeClock:
    """A monotonic clock whose ``sleep`` advances time at once: limiter, retry policy and
    memory destination share one, so tests of waiting are instant and exact. Thread-safe."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        """Advance the clock by ``seconds`` (and remember the wait)."""
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(seconds, 0.0)

    @property
    def slept(self) -> float:
        """Total seconds slept."""
        with self._lock:
            return sum(self.sleeps)


class MemoryConfig(ConnectorConfig):
    """Fault switches of the in-memory destination (all off by default)."""

    seed: int = 0
    #: Share of calls that fail with a transient 429 before doing anything.
    retriable_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    #: The Retry-After those failures carry (None: let the engine back off).
    retry_after: float | None = Field(default=None, ge=0.0)
    #: A batch holding any of these keys is refused as a whole (HTTP 400), like HubSpot does
    #: for one invalid record.
    reject_batch_keys: frozenset[str] = frozenset()
    #: These records are refused one by one inside an otherwise accepted batch (HTTP 207).
    reject_keys: frozenset[str] = frozenset()
    #: After this many acknowledged write calls, the next one is applied and then raises a plain
    #: RuntimeError — a crash after the destination wrote but before the engine heard back.
    crash_after_batches: int | None = Field(default=None, ge=0)
    #: Seconds each call takes.
    latency: float = Field(default=0.0, ge=0.0)
    #: The destination's own limit: more calls than this in the window answer 429.
    server_requests: int | None = Field(default=None, ge=1)
    server_per_seconds: float = Field(default=10.0, gt=0.0)
    #: Longest value accepted in a field without a declared limit.
    max_value_length: int = Field(default=65_536, ge=1)
    #: The preflight's credentials check (``check``) refuses them: a wrong token.
    refuse_credentials: bool = False
    #: Unused by the fake, present so config handling of secrets is exercised.
    api_token: SecretStr | None = None


@dataclass(slots=True)
class StoredRecord:
    """What the memory destination holds for one key."""

    remote_id: str
    fields: dict[str, str]
    archived: bool = False
    writes: int = 0


@dataclass(frozen=True, slots=True)
class MemoryCall:
    """One call the connector received: ``op`` (write/archive/associate), object, keys, outcome
    (``ok``, ``retriable``, ``rate_limited``, ``batch_rejected``, ``crash``)."""

    op: str
    object_name: str | None
    keys: tuple[str, ...]
    outcome: str
    at: float

    @property
    def size(self) -> int:
        return len(self.keys)


@dataclass
class MemoryStore:
    """The destination's data, shareable between connector instances (crash, then rerun)."""

    records: dict[str, dict[str, StoredRecord]] = field(default_factory=dict)
    associations: set[tuple[str, str, str, str, str]] = field(default_factory=set)
    next_id: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, object_name: str) -> int:
        """Records held for ``object_name`` (archived ones included)."""
        return len(self.records.get(object_name, {}))


_TEXT = FieldSpec("text", max_length=65_536)


class MemoryConnector(Connector[MemoryConfig]):
    """The in-memory destination. ``MemoryConnector.configured(max_batch=7)`` makes a variant
    with other capabilities (they are class data, as for every connector)."""

    name: ClassVar[str] = "memory"
    config_model: ClassVar[type[ConnectorConfig]] = MemoryConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        max_batch=100,
        associations=True,
        association_batch=100,
        removal_modes=frozenset({"none", "clear", "archive"}),
        update_hints=frozenset(),  # it keeps payloads, never hints
    )
    # Same object and key names as HubSpot, so mappings/hubspot.yaml runs against it unchanged.
    objects: ClassVar[dict[str, ObjectSpec]] = {
        "companies": ObjectSpec(
            "companies",
            key_field="syncer_account_id",
            fields={"name": FieldSpec("name", max_length=255)},
            default_field=_TEXT,
        ),
        "contacts": ObjectSpec(
            "contacts",
            key_field="syncer_user_id",
            fields={"email": FieldSpec("email", FieldType.EMAIL, max_length=254)},
            default_field=_TEXT,
            after=("companies",),
        ),
    }

    def __init__(
        self,
        config: MemoryConfig | None = None,
        *,
        store: MemoryStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(config or MemoryConfig())
        self.store = store if store is not None else MemoryStore()
        self.calls: list[MemoryCall] = []
        self.checks = 0  # preflight credential checks (not writes: not in ``calls``)
        self.ensured: list[str] = []  # objects whose fields ``ensure`` was asked for
        self._clock = clock
        self._sleep = sleep
        self._rng = random.Random(self.config.seed)
        self._acknowledged = 0
        self._window: deque[float] = deque()

    @classmethod
    def configured(cls, **capabilities: Any) -> type[MemoryConnector]:
        """A subclass whose capabilities differ (``max_batch=7``, ``rate_limit=...``)."""
        caps = dataclasses.replace(cls.capabilities, **capabilities)
        return type(cls.__name__, (cls,), {"capabilities": caps, "__doc__": cls.__doc__})

    # --- the contract ---------------------------------------------------------------------

    def check(self) -> None:
        """The preflight's authenticated read: refused with ``refuse_credentials``."""
        self.checks += 1
        if self.config.refuse_credentials:
            raise ConfigError(
                "memory: the destination refused the credentials (HTTP 401); set a valid token"
            )

    def ensure(self, object_name: str, fields: Sequence[FieldSpec]) -> EnsureReport:
        """Every field exists (the fake has no schema); ``ensured`` lists the objects asked."""
        self.ensured.append(object_name)
        return EnsureReport(existing=[f.name for f in fields])

    def write(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
        """Upsert by key: a known key keeps its remote id; answers in shuffled order."""
        spec = self.object_spec(object_name)
        keys = tuple(r.key for r in batch)
        self._arrive("write", object_name, keys)
        with self.store.lock:
            bad = sorted(set(keys) & self.config.reject_batch_keys)
            if bad:
                self._log("write", object_name, keys, "batch_rejected")
                raise BatchRejected(
                    f"memory write {object_name}: HTTP 400, refused the batch — "
                    f"record {bad[0]!r} is invalid",
                    status=400,
                )
            crash = (
                self.config.crash_after_batches is not None
                and self._acknowledged >= self.config.crash_after_batches
            )
            results = [self._upsert(spec, object_name, record) for record in batch]
            self._rng.shuffle(results)
            self._log("write", object_name, keys, "crash" if crash else "ok")
            if crash:
                raise RuntimeError(
                    f"simulated crash after {self._acknowledged} acknowledged batches"
                )
            self._acknowledged += 1
        self._report()
        return results

    def archive(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
        """Mark records archived; archiving an unknown key is not an error (idempotent)."""
        self.object_spec(object_name)
        keys = tuple(r.key for r in batch)
        self._arrive("archive", object_name, keys)
        with self.store.lock:
            held = self.store.records.setdefault(object_name, {})
            results = []
            for record in batch:
                stored = held.get(record.key)
                if stored is not None:
                    stored.archived = True
                results.append(WriteResult(record.key, stored.remote_id if stored else None))
            self._log("archive", object_name, keys, "ok")
        self._report()
        return results

    def associate(self, changes: Sequence[AssociationChange]) -> Sequence[AssociationResult]:
        """Add or remove (from, to, kind) links between known remote ids; idempotent."""
        keys = tuple(f"{c.from_key}->{c.to_key}" for c in changes)
        self._arrive("associate", None, keys)
        with self.store.lock:
            known = {
                (obj, r.remote_id)
                for obj, held in self.store.records.items()
                for r in held.values()
            }
            results = []
            for c in changes:
                link = (c.from_object, c.from_remote_id, c.to_object, c.to_remote_id, c.kind)
                missing = [
                    f"{obj} {rid}"
                    for obj, rid in (
                        (c.from_object, c.from_remote_id),
                        (c.to_object, c.to_remote_id),
                    )
                    if (obj, rid) not in known
                ]
                if missing:
                    results.append(AssociationResult(c, rejected=f"unknown record {missing[0]}"))
                    continue
                if c.remove:
                    self.store.associations.discard(link)
                else:
                    self.store.associations.add(link)
                results.append(AssociationResult(c))
            self._log("associate", None, keys, "ok")
        self._report()
        return results

    # --- what tests read -----------------------------------------------------------------------

    def written_keys(self, outcome: str = "ok") -> list[str]:
        """Keys of write calls with ``outcome``, in call order (a key repeats if sent again)."""
        return [k for c in self.calls if c.op == "write" and c.outcome == outcome for k in c.keys]

    # --- internals -------------------------------------------------------------------------

    def _arrive(self, op: str, object_name: str | None, keys: tuple[str, ...]) -> None:
        """Latency, then the server-side rate limit, then injected transient failures."""
        if self.config.latency:
            self._sleep(self.config.latency)
        with self.store.lock:
            now = self._clock()
            limit = self.config.server_requests
            if limit is not None:
                per = self.config.server_per_seconds
                while self._window and self._window[0] <= now - per:
                    self._window.popleft()
                if len(self._window) >= limit:
                    wait = self._window[0] + per - now
                    self._log(op, object_name, keys, "rate_limited")
                    info = RateLimitInfo(limit=limit, remaining=0, interval_seconds=per)
                    error = RetriableError(
                        f"memory {op}: HTTP 429, rate limited ({limit} per {per:g} s)",
                        retry_after=wait,
                        status=429,
                    )
                else:
                    self._window.append(now)
                    info, error = None, None
            else:
                info, error = None, None
            if error is None and self._rng.random() < self.config.retriable_rate:
                self._log(op, object_name, keys, "retriable")
                error = RetriableError(
                    f"memory {op}: HTTP 429, injected transient failure",
                    retry_after=self.config.retry_after,
                    status=429,
                )
        if info is not None:
            self.report_rate_limit(info)
        if error is not None:
            raise error

    def _report(self) -> None:
        limit = self.config.server_requests
        if limit is None:
            return
        with self.store.lock:
            remaining = max(limit - len(self._window), 0)
        self.report_rate_limit(
            RateLimitInfo(
                limit=limit, remaining=remaining, interval_seconds=self.config.server_per_seconds
            )
        )

    def _upsert(self, spec: ObjectSpec, object_name: str, record: WriteRecord) -> WriteResult:
        if record.key in self.config.reject_keys:
            return WriteResult(record.key, rejected="INVALID: the memory destination refuses it")
        held = self.store.records.setdefault(object_name, {})
        stored = held.get(record.key)
        values = record.payload if stored is None else record.changes
        for name, value in values.items():
            fspec = spec.fields.get(name, spec.default_field)
            limit = (fspec.max_length if fspec else None) or self.config.max_value_length
            if value is not None and len(value) > limit:
                return WriteResult(
                    record.key,
                    rejected=f"VALUE_TOO_LONG: {len(value)} characters, at most {limit}",
                    field=name,
                )
        created = stored is None
        if stored is None:
            stored = StoredRecord(f"{object_name[:2]}-{self.store.next_id}", {})
            self.store.next_id += 1
            held[record.key] = stored
        for name, value in values.items():
            if value is None:
                stored.fields.pop(name, None)
            else:
                stored.fields[name] = value
        stored.archived = False
        stored.writes += 1
        return WriteResult(record.key, remote_id=stored.remote_id, created=created)

    def _log(self, op: str, object_name: str | None, keys: tuple[str, ...], outcome: str) -> None:
        self.calls.append(MemoryCall(op, object_name, keys, outcome, self._clock()))
