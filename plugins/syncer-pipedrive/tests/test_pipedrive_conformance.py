"""syncer's connector conformance suite, run against the Pipedrive emulator."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import ClassVar

import pytest
from conftest import TOKEN
from pipedrive_emulator import PipedriveEmulator
from pydantic import SecretStr
from syncer_pipedrive import PipedriveConfig, PipedriveConnector

from syncer.connectors.base import Connector, WriteRecord
from syncer.fields import FieldSpec
from syncer.testing.conformance import ConnectorConformance

NOTE = FieldSpec("syncer_note", max_length=255)


@pytest.fixture(scope="module")
def module_pipedrive() -> Iterator[PipedriveEmulator]:
    with PipedriveEmulator(api_token=TOKEN) as emulator:
        yield emulator


class _Pipedrive(ConnectorConformance):
    object_name: ClassVar[str | None] = None

    @pytest.fixture
    def connector(self, module_pipedrive: PipedriveEmulator) -> Iterator[Connector]:
        connector = PipedriveConnector(
            PipedriveConfig(base_url=module_pipedrive.url, api_token=SecretStr(TOKEN))
        )
        for name in connector.objects:  # the key fields upserts search by
            connector.ensure(name, [NOTE])
        yield connector
        connector.close()

    def make_record(self, connector: Connector, object_name: str, key: str) -> WriteRecord:
        values = {"name": f"Conformance {key}", "syncer_note": f"note {key}"}
        return WriteRecord(key, values, values)

    def oversized_field(self, connector: Connector, object_name: str) -> tuple[str, int] | None:
        return "syncer_note", 255

    def ensure_fields(self, connector: Connector, object_name: str) -> list[FieldSpec]:
        return [NOTE]


class TestPipedriveOrganizationsConformance(_Pipedrive):
    object_name = "organizations"


class TestPipedrivePersonsConformance(_Pipedrive):
    object_name = "persons"


class TestPipedrivePersonsInBatchesConformance(_Pipedrive):
    """The connector writes any batch record by record: with batches of 5 the suite's per-record
    refusal test runs too (one oversized value rejected, the rest landed)."""

    object_name = "persons"

    @pytest.fixture
    def connector(
        self, module_pipedrive: PipedriveEmulator, monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[Connector]:
        batches = dataclasses.replace(PipedriveConnector.capabilities, max_batch=5)
        monkeypatch.setattr(PipedriveConnector, "capabilities", batches)
        connector = PipedriveConnector(
            PipedriveConfig(base_url=module_pipedrive.url, api_token=SecretStr(TOKEN))
        )
        connector.ensure("persons", [NOTE])
        yield connector
        connector.close()
