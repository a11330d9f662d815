"""The conformance suite passes for the memory destination and catches broken connectors."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import ClassVar

import pytest
from pydantic import SecretStr

from syncer.connectors.base import Connector, WriteRecord, WriteResult
from syncer.testing.conformance import ConnectorConformance
from syncer.testing.memory import MemoryConfig, MemoryConnector


class TestMemoryCompaniesConformance(ConnectorConformance):
    """How a plugin author uses the suite: a fixture and, optionally, hooks."""

    object_name = "companies"
    association_objects: ClassVar[tuple[str, str] | None] = ("contacts", "companies")

    @pytest.fixture
    def connector(self) -> Connector:
        return MemoryConnector(MemoryConfig(api_token=SecretStr("s3cret-token")))

    def remote_count(self, connector: Connector, object_name: str) -> int | None:
        assert isinstance(connector, MemoryConnector)
        return connector.store.count(object_name)


class TestMemoryContactsConformance(ConnectorConformance):
    """Contacts declare no text field with a limit: the author names one for the size test."""

    object_name = "contacts"
    association_objects: ClassVar[tuple[str, str] | None] = ("contacts", "companies")

    @pytest.fixture
    def connector(self) -> Connector:
        return MemoryConnector.configured(max_batch=2)(MemoryConfig(seed=3))

    def oversized_field(self, connector: Connector, object_name: str) -> tuple[str, int] | None:
        return "notes", 65_536


# --- the suite catches what it promises to catch -----------------------------------------------


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


class LeakyConfig(MemoryConfig):
    password: str = "hunter2"


class LeakyConnector(MemoryConnector):
    config_model = LeakyConfig


SUITE = ConnectorConformance()


def test_the_suite_catches_a_connector_that_creates_instead_of_upserting() -> None:
    with pytest.raises(AssertionError, match="same records"):
        SUITE.test_writing_the_same_batch_twice_is_idempotent(MintsNewIds())


def test_the_suite_catches_one_bad_value_failing_its_whole_batch() -> None:
    class Suite(ConnectorConformance):
        object_name = "companies"

    with pytest.raises(AssertionError, match="the other records must land"):
        Suite().test_an_oversized_value_is_rejected_per_record_not_per_batch(
            RejectsWholeBatchesPerRecord()
        )


def test_the_suite_catches_a_secret_not_declared_as_secretstr() -> None:
    with pytest.raises(AssertionError, match="'password' looks like a secret"):
        SUITE.test_declarations_are_valid(LeakyConnector(LeakyConfig()))
