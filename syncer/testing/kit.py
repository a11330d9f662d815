"""What a connector author hands the conformance kit, and how the kit runs the engine with it.

* :class:`ConnectorFactory` — what the ``syncer_connector`` fixture returns: a callable making a
  fresh connector bound to the author's emulator or sandbox (a re-run is a new connector, as in
  a new process), and optionally the emulator's :class:`Faults`.
* :class:`Fault` and the :class:`Faults` protocol — the named faults the kit asks an emulator
  to inject (:data:`FaultName`). An emulator that cannot produce one answers ``False`` and the
  test that needs it is skipped, with the reason.
* :class:`EmulatorFaults` — the protocol for any emulator built on
  :class:`syncer.testing._http.EmulatorServer` (429 with ``Retry-After``, 5xx; a partial failure
  when the author says how their emulator produces one).
* :class:`EngineHarness` — one destination's runs through the engine's own pieces: the plan
  (:func:`syncer.plan.plan_changes`) against a sync state in SQLite, the write pipeline
  (:mod:`syncer.engine.operations`), the state committed only for acknowledged records. No store
  and no mapping: the records are the author's (``make_record``), so any connector fits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from sqlalchemy.engine import Engine

from syncer.connectors.base import Connector, RemovalMode, WriteRecord, WriteResult
from syncer.engine.operations import RecordOp, apply_records
from syncer.engine.pipeline import ApplyStats
from syncer.plan import Change, PlanCounts, plan_changes
from syncer.ratelimit import RateLimiter
from syncer.retry import RetryPolicy
from syncer.state import Ack, RecordState, init_state
from syncer.testing._http import EmulatorServer
from syncer.testing.memory import FakeClock

__all__ = [
    "ConnectorFactory",
    "EmulatorFaults",
    "EngineHarness",
    "Fault",
    "FaultName",
    "Faults",
    "HarnessRun",
    "as_factory",
]

#: The faults the kit injects:
#:
#: * ``"rate_limited"`` — the next ``count`` requests answer 429 with ``Retry-After:
#:   retry_after`` (whole seconds);
#: * ``"server_error"`` — the next ``count`` requests answer ``status`` (a 5xx), unprocessed;
#: * ``"partial_failure"`` — the next write of ``object_name`` refuses some of its records (at
#:   least one, not all) and accepts the others: a batch endpoint's per-item errors, or for a
#:   connector writing record by record, one of its requests refused with a 4xx.
FaultName = Literal["rate_limited", "server_error", "partial_failure"]


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault the kit asks for; see :data:`FaultName`."""

    name: FaultName
    object_name: str
    count: int = 1
    retry_after: int = 7
    status: int = 503


@runtime_checkable
class Faults(Protocol):
    """An emulator's fault switch, as the kit drives it."""

    def inject(self, fault: Fault) -> bool:
        """Switch ``fault`` on for the next requests; False if this emulator cannot."""
        ...


@dataclass(frozen=True, slots=True)
class ConnectorFactory:
    """A fresh connector per call, bound to the author's emulator; ``faults`` if it has any."""

    make: Callable[[], Connector[Any]]
    faults: Faults | None = None

    def __call__(self) -> Connector[Any]:
        return self.make()


def as_factory(value: object, where: str) -> ConnectorFactory:
    """The ``syncer_connector`` fixture's value as a :class:`ConnectorFactory` (a bare callable
    is one without faults); TypeError naming ``where`` for anything else."""
    if isinstance(value, ConnectorFactory):
        return value
    if isinstance(value, Connector):
        raise TypeError(
            f"{where}: the syncer_connector fixture returned a connector instance; return a "
            "factory instead (`return lambda: AcmeConnector(...)`, or ConnectorFactory(make, "
            "faults=...)): the kit makes a fresh connector for each run it simulates"
        )
    if callable(value):
        return ConnectorFactory(value)
    raise TypeError(
        f"{where}: the syncer_connector fixture must return a ConnectorFactory or a callable "
        f"making a connector, not {type(value).__name__}"
    )


class EmulatorFaults:
    """:class:`Faults` for an emulator on :class:`~syncer.testing._http.EmulatorServer`.

    429s and 5xx come from its ``inject_status`` (the emulator's ``fault_response`` gives them
    the vendor's body; the kit's ``Retry-After`` header is added). ``partial`` switches a partial
    failure on in the emulator's own way, e.g. ``lambda fault:
    emulator.inject_partial_failure(path_prefix=..., count=1)``; without it that fault is
    unsupported.
    """

    def __init__(
        self, emulator: EmulatorServer, *, partial: Callable[[Fault], object] | None = None
    ) -> None:
        self.emulator = emulator
        self.partial = partial

    def inject(self, fault: Fault) -> bool:
        """Switch ``fault`` on; False for a partial failure without ``partial``."""
        if fault.name == "rate_limited":
            headers = {"Retry-After": str(fault.retry_after)}
            self.emulator.inject_status(429, count=fault.count, headers=headers)
        elif fault.name == "server_error":
            self.emulator.inject_status(fault.status, count=fault.count)
        elif self.partial is not None:
            self.partial(fault)
        else:
            return False
        return True


@dataclass(slots=True)
class HarnessRun:
    """What one harness run did: the plan's counts, the pipeline's, every result it got."""

    counts: PlanCounts
    stats: ApplyStats
    results: dict[str, WriteResult] = field(default_factory=dict)
    connector_calls: int = 0


@dataclass(frozen=True, slots=True)
class _Source:
    """A source record as the plan reads it (:class:`syncer.plan.Formatted`)."""

    key: str
    payload: Mapping[str, str | None]
    hints: Mapping[str, Any]
    rejected: None = None


class EngineHarness:
    """Runs of one destination through the engine's plan, write pipeline and sync state.

    Waits (backoff, Retry-After, the rate limiter) go to :attr:`clock`, a
    :class:`~syncer.testing.memory.FakeClock`: a 7-second Retry-After is honoured instantly
    and read back from ``clock.sleeps``.
    """

    destination = "conformance"

    def __init__(self, state_url: str, *, max_attempts: int = 6) -> None:
        self.state: Engine = init_state(state_url)
        self.records = RecordState(self.state)
        self.clock = FakeClock()
        self.retry = RetryPolicy(
            max_attempts=max_attempts,
            base=0.25,
            cap=2.0,
            deadline=None,
            sleep=self.clock.sleep,
            clock=self.clock,
        )
        self._runs = 0

    def close(self) -> None:
        """Dispose of the state database."""
        self.state.dispose()

    def run(
        self,
        connector: Connector[Any],
        object_name: str,
        source: Iterable[WriteRecord],
        *,
        removal: RemovalMode = "none",
    ) -> HarnessRun:
        """Sync ``source`` (the object's whole source, as ``make_record`` builds it) into
        ``object_name``: plan against the state, send what changed (upserts, then archives),
        commit what the destination acknowledged. Counts every connector call."""
        self._runs += 1
        run_id = f"conformance-{self._runs}"
        spec = connector.object_spec(object_name)
        planned = sorted((_Source(r.key, r.payload, r.hints) for r in source), key=lambda s: s.key)
        counts = PlanCounts()
        pending: dict[str, Change] = {}
        upserts: list[WriteRecord] = []
        archives: list[WriteRecord] = []
        stored = self.records.iter_records(self.destination, object_name)
        for change in plan_changes(
            object_name,
            spec.key_field,
            planned,
            stored,
            removal=removal,
            required=spec.required_fields,
        ):
            counts.add(change.action)
            if removal == "archive" and change.action == "remove":
                if change.remote_id is not None:  # never acknowledged: nothing to archive by
                    archives.append(_record(change))
                    pending[change.key] = change
                continue
            if not change.sends:
                continue
            upserts.append(_record(change))
            pending[change.key] = change
        outcome = HarnessRun(counts, ApplyStats())
        limiter = self.limiter(connector)

        def on_results(results: Sequence[WriteResult]) -> None:
            acks = []
            for result in results:
                outcome.results[result.key] = result
                change = pending.pop(result.key)
                if result.ok:
                    removed = change.action == "remove"
                    acks.append(Ack(result.key, change.payload, result.remote_id, None, removed))
            self.records.commit_acknowledged(self.destination, object_name, acks, run_id)

        spy = _CallCounter(connector)
        with spy:
            jobs: list[tuple[RecordOp, list[WriteRecord]]] = [
                ("write", upserts),
                ("archive", archives),
            ]
            for kind, batch in jobs:
                if batch:
                    stats = apply_records(
                        connector,
                        object_name,
                        batch,
                        kind=kind,
                        on_results=on_results,
                        limiter=limiter,
                        retry=self.retry,
                    )
                    _add(outcome.stats, stats)
        outcome.connector_calls = spy.calls
        return outcome

    def limiter(self, connector: Connector[Any]) -> RateLimiter:
        """The connector's rate limiter, waiting on :attr:`clock`."""
        return RateLimiter(
            connector.capabilities.rate_limit, clock=self.clock, sleep=self.clock.sleep
        )

    def remote_id(self, object_name: str, key: str) -> str | None:
        """The remote id the state holds for ``key``."""
        found = self.records.get_many(self.destination, object_name, [key])
        record = found.get(key)
        return record.remote_id if record is not None else None


def _record(change: Change) -> WriteRecord:
    return WriteRecord(change.key, change.changes, change.payload, change.remote_id, change.hints)


def _add(total: ApplyStats, more: ApplyStats) -> None:
    for name in ("records_sent", "acknowledged", "rejected", "requests", "retries", "bisections"):
        setattr(total, name, getattr(total, name) + getattr(more, name))


class _CallCounter:
    """Counts ``write``, ``archive``, ``write_bulk`` and ``associate`` calls on one connector
    (instance attributes shadow the methods while the block runs)."""

    _METHODS = ("write", "archive", "write_bulk", "associate")

    def __init__(self, connector: Connector[Any]) -> None:
        self.connector = connector
        self.calls = 0

    def __enter__(self) -> _CallCounter:
        for name in self._METHODS:
            setattr(self.connector, name, self._counted(getattr(self.connector, name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self._METHODS:
            vars(self.connector).pop(name, None)

    def _counted(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return method(*args, **kwargs)

        return call
