"""The conformance kit passes for the memory destination and catches broken connectors."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import SecretStr

from syncer.connectors.base import Connector, WriteRecord, WriteResult
from syncer.errors import RetriableError
from syncer.testing.conformance import ConnectorConformance
from syncer.testing.kit import ConnectorFactory, EngineHarness, Fault, as_factory
from syncer.testing.memory import MemoryConfig, MemoryConnector, MemoryStore


class MemoryFaults:
    """The kit's fault protocol for the in-process destination: the next write calls raise what
    the HTTP base raises for a 429 or a 5xx, or refuse the first record of their batch."""

    def __init__(self) -> None:
        self.pending: list[list[Any]] = []  # [fault, calls left]

    def inject(self, fault: Fault) -> bool:
        self.pending.append([fault, fault.count])
        return True

    def take(self) -> Fault | None:
        """The fault the next call meets, if any."""
        if not self.pending:
            return None
        entry = self.pending[0]
        entry[1] -= 1
        if entry[1] <= 0:
            self.pending.pop(0)
        fault: Fault = entry[0]
        return fault


class FaultyMemoryConnector(MemoryConnector):
    """The memory destination behind :class:`MemoryFaults`."""

    faults: MemoryFaults

    def write(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
        fault = self.faults.take()
        if fault is not None and fault.name == "rate_limited":
            raise RetriableError("memory: HTTP 429", retry_after=fault.retry_after, status=429)
        if fault is not None and fault.name == "server_error":
            raise RetriableError(f"memory: HTTP {fault.status}", status=fault.status)
        if fault is not None and fault.name == "partial_failure":
            refused = WriteResult(batch[0].key, rejected="INVALID: injected per-record refusal")
            return [refused, *super().write(object_name, batch[1:])]
        return super().write(object_name, batch)


def memory_factory(**capabilities: Any) -> ConnectorFactory:
    """Connectors sharing one store (a re-run sees what the first run wrote), with faults."""
    store, faults = MemoryStore(), MemoryFaults()
    cls = FaultyMemoryConnector.configured(**capabilities)

    def make() -> Connector[Any]:
        connector = cls(MemoryConfig(api_token=SecretStr("s3cret-token")), store=store)
        connector.faults = faults  # type: ignore[attr-defined]
        return connector

    return ConnectorFactory(make, faults=faults)


class _Memory(ConnectorConformance):
    association_objects: ClassVar[tuple[str, str] | None] = ("contacts", "companies")

    def remote_count(self, connector: Connector[Any], object_name: str) -> int | None:
        assert isinstance(connector, MemoryConnector)
        return connector.store.count(object_name)

    def remote_fields(
        self, connector: Connector[Any], object_name: str, remote_id: str
    ) -> Mapping[str, Any] | None:
        assert isinstance(connector, MemoryConnector)
        held = connector.store.records.get(object_name, {}).values()
        return next(r.fields for r in held if r.remote_id == remote_id)


class TestMemoryConformance(_Memory):
    """How a plugin author uses the kit: one fixture, optional settings and hooks."""

    objects = ("companies", "contacts")

    @pytest.fixture
    def syncer_connector(self) -> ConnectorFactory:
        return memory_factory()


class TestMemorySmallBatchesConformance(_Memory):
    """Contacts declare no text field with a limit: the author names one for the size test."""

    objects = ("contacts",)

    @pytest.fixture
    def syncer_connector(self) -> ConnectorFactory:
        return memory_factory(max_batch=2)

    def oversized_field(
        self, connector: Connector[Any], object_name: str
    ) -> tuple[str, int] | None:
        return "notes", 65_536


class TestMemoryWithoutFaultsConformance(ConnectorConformance):
    """A bare callable is a factory without faults: the fault tests skip, saying why."""

    @pytest.fixture
    def syncer_connector(self) -> Any:
        store = MemoryStore()
        return lambda: MemoryConnector(store=store)


# --- the kit catches what it promises to catch -------------------------------------------------


class MintsNewIds(MemoryConnector):
    """Creates a new record on every write: a create where an upsert was required."""

    counter = itertools.count()

    def write(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
        return [WriteResult(r.key, remote_id=f"new-{next(self.counter)}") for r in batch]


class RejectsWholeBatchesPerRecord(MemoryConnector):
    """Marks every record of a batch rejected when one is bad, instead of BatchRejected."""

    def write(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
        results = super().write(object_name, batch)
        if any(not r.ok for r in results):
            return [WriteResult(r.key, rejected="batch failed") for r in batch]
        return results


class DropsRefusedRecords(FaultyMemoryConnector):
    """Leaves a refused record out of its results instead of returning it rejected."""

    def write(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
        return [r for r in super().write(object_name, batch) if r.ok]


class RetriesItself(FaultyMemoryConnector):
    """Swallows a 5xx by retrying inside the connector: the engine never hears of it."""

    def write(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
        try:
            return super().write(object_name, batch)
        except RetriableError:
            return super().write(object_name, batch)


class IgnoresRetryAfter(FaultyMemoryConnector):
    """Raises a 429 without the Retry-After the destination sent."""

    def write(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
        try:
            return super().write(object_name, batch)
        except RetriableError as exc:
            raise RetriableError(str(exc), status=429) from None


class LeakyConfig(MemoryConfig):
    password: str = "hunter2"


class LeakyConnector(MemoryConnector):
    config_model = LeakyConfig


SUITE = ConnectorConformance()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[EngineHarness]:
    harness = EngineHarness(f"sqlite:///{tmp_path / 'state.db'}")
    yield harness
    harness.close()


def faulty(cls: type[FaultyMemoryConnector]) -> ConnectorFactory:
    store, faults = MemoryStore(), MemoryFaults()

    def make() -> Connector[Any]:
        connector = cls(store=store)
        connector.faults = faults
        return connector

    return ConnectorFactory(make, faults=faults)


def test_the_kit_catches_a_connector_that_creates_instead_of_upserting() -> None:
    with pytest.raises(AssertionError, match="same records"):
        SUITE.test_writing_the_same_batch_twice_is_idempotent(MintsNewIds(), "companies")


def test_the_kit_catches_one_bad_value_failing_its_whole_batch(harness: EngineHarness) -> None:
    with pytest.raises(AssertionError, match="the other records must land"):
        SUITE.test_an_oversized_value_is_rejected_per_record_not_per_batch(
            RejectsWholeBatchesPerRecord(), "companies", harness
        )


def test_the_kit_catches_a_refused_record_left_without_a_result(harness: EngineHarness) -> None:
    with pytest.raises(AssertionError, match="no result returned for a refused record"):
        SUITE.test_a_partial_failure_is_mapped_per_record(
            faulty(DropsRefusedRecords), "companies", harness
        )


def test_the_kit_catches_a_connector_retrying_by_itself(harness: EngineHarness) -> None:
    with pytest.raises(AssertionError, match="let the engine retry"):
        SUITE.test_a_5xx_is_retried(faulty(RetriesItself), "companies", harness)


def test_the_kit_catches_a_lost_retry_after(harness: EngineHarness) -> None:
    with pytest.raises(AssertionError, match="not the 7 s of Retry-After"):
        SUITE.test_a_429_with_retry_after_is_honoured(
            faulty(IgnoresRetryAfter), "companies", harness
        )


def test_the_kit_catches_a_secret_not_declared_as_secretstr() -> None:
    with pytest.raises(AssertionError, match="'password' looks like a secret"):
        SUITE.test_declarations_are_valid(LeakyConnector(LeakyConfig()))


def test_a_connector_instance_is_not_a_factory() -> None:
    with pytest.raises(TypeError, match="returned a connector instance"):
        as_factory(MemoryConnector(), "test_x")
    with pytest.raises(TypeError, match="not int"):
        as_factory(3, "test_x")
    assert as_factory(MemoryConnector, "test_x").faults is None
