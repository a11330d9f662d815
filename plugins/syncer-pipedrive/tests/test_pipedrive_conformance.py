"""syncer's connector conformance kit, run against the Pipedrive emulator."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import TOKEN
from pipedrive_emulator import PipedriveEmulator
from pydantic import SecretStr
from syncer_pipedrive import PipedriveConfig, PipedriveConnector

from syncer.connectors.base import Connector, WriteRecord
from syncer.fields import FieldSpec
from syncer.testing.conformance import ConnectorConformance
from syncer.testing.kit import ConnectorFactory, EmulatorFaults, Fault

NOTE = FieldSpec("syncer_note", max_length=255)


@pytest.fixture(scope="module")
def module_pipedrive() -> Iterator[PipedriveEmulator]:
    with PipedriveEmulator(api_token=TOKEN) as emulator:
        yield emulator


@pytest.fixture
def syncer_connector(module_pipedrive: PipedriveEmulator) -> ConnectorFactory:
    config = PipedriveConfig(base_url=module_pipedrive.url, api_token=SecretStr(TOKEN))

    def partial(fault: Fault) -> None:  # record by record: the second create refused
        path = f"/api/v2/{fault.object_name}"
        module_pipedrive.inject_status(400, method="POST", path_prefix=path, after=1, count=1)

    faults = EmulatorFaults(module_pipedrive, partial=partial)
    return ConnectorFactory(lambda: PipedriveConnector(config), faults=faults)


class _Pipedrive(ConnectorConformance):
    def make_record(
        self, connector: Connector[Any], object_name: str, key: str, version: int = 1
    ) -> WriteRecord:
        values = {"name": f"Conformance {key}", "syncer_note": f"note {key} v{version}"}
        return WriteRecord(key, values, values)

    def oversized_field(
        self, connector: Connector[Any], object_name: str
    ) -> tuple[str, int] | None:
        return "syncer_note", 255

    def ensure_fields(self, connector: Connector[Any], object_name: str) -> list[FieldSpec]:
        return [NOTE]  # with the key fields upserts search by


class TestPipedriveConformance(_Pipedrive):
    objects = ("organizations", "persons")


class TestPipedriveInBatchesConformance(_Pipedrive):
    """The connector writes any batch record by record: with batches of 5 the kit's per-record
    refusal tests run too (one refused, the rest landed)."""

    objects = ("persons",)

    @pytest.fixture
    def syncer_connector(
        self, syncer_connector: ConnectorFactory, monkeypatch: pytest.MonkeyPatch
    ) -> ConnectorFactory:
        batches = dataclasses.replace(PipedriveConnector.capabilities, max_batch=5)
        monkeypatch.setattr(PipedriveConnector, "capabilities", batches)
        return syncer_connector
