"""The built-in connectors pass the conformance kit a plugin author runs, against their
emulators through the real client libraries."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import pytest
from pydantic import SecretStr

from syncer.connectors.base import Connector, WriteRecord
from syncer.connectors.hubspot import HubSpotConfig, HubSpotConnector
from syncer.connectors.salesforce import SalesforceConfig, SalesforceConnector
from syncer.fields import FieldSpec
from syncer.testing.conformance import ConnectorConformance
from syncer.testing.hubspot_emulator import HubSpotEmulator
from syncer.testing.kit import ConnectorFactory, EmulatorFaults, Fault
from syncer.testing.salesforce_emulator import SalesforceEmulator


@pytest.fixture(scope="module")
def hubspot() -> Iterator[HubSpotEmulator]:
    with HubSpotEmulator(access_token="conformance", rate_limit_max=10_000) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def salesforce() -> Iterator[SalesforceEmulator]:
    with SalesforceEmulator() as emulator:
        emulator.allow_field_creation = True
        yield emulator


class TestHubSpotConformance(ConnectorConformance):
    objects = ("companies", "contacts")
    emulator: HubSpotEmulator
    association_objects: ClassVar[tuple[str, str] | None] = ("contacts", "companies")

    @pytest.fixture
    def syncer_connector(self, hubspot: HubSpotEmulator) -> ConnectorFactory:
        self.emulator = hubspot  # for remote_fields
        config = HubSpotConfig(access_token=SecretStr("conformance"), host=hubspot.url)

        def partial(fault: Fault) -> None:  # per-input errors in the next batch upsert's 207
            path = f"/crm/v3/objects/{fault.object_name}/batch/upsert"
            hubspot.inject_partial_failure(path_prefix=path, count=1, input_rate=0.5)

        return ConnectorFactory(
            lambda: HubSpotConnector(config), faults=EmulatorFaults(hubspot, partial=partial)
        )

    def make_record(
        self, connector: Connector[Any], object_name: str, key: str, version: int = 1
    ) -> WriteRecord:
        record = super().make_record(connector, object_name, key, version)
        values = {**record.payload, "notes": f"note {key} v{version}"}  # companies declare none
        return WriteRecord(key, values, values)

    def ensure_fields(self, connector: Connector[Any], object_name: str) -> list[FieldSpec]:
        return [FieldSpec("notes")]  # with the unique key property upserts need

    def oversized_field(
        self, connector: Connector[Any], object_name: str
    ) -> tuple[str, int] | None:
        return "notes", 65_536

    def remote_fields(
        self, connector: Connector[Any], object_name: str, remote_id: str
    ) -> Mapping[str, Any] | None:
        return self.emulator.objects(object_name)[remote_id]


class SalesforceFaults:
    """The kit's faults in the Salesforce emulator's switches: a 5xx only. Salesforce sends no
    429 (its REQUEST_LIMIT_EXCEEDED is the daily quota, fatal)."""

    def __init__(self, emulator: SalesforceEmulator) -> None:
        self.emulator = emulator

    def inject(self, fault: Fault) -> bool:
        if fault.name == "server_error":
            self.emulator.inject("server_error", times=fault.count, status=fault.status)
            return True
        # partial_failure: the emulator's per-record fault (UNABLE_TO_LOCK_ROW) is transient,
        # retried as a batch; per-record refusals are tested with an oversized value instead.
        return False


class TestSalesforceConformance(ConnectorConformance):
    objects = ("Account", "Contact")
    batch_cap = 200
    emulator: SalesforceEmulator

    @pytest.fixture
    def syncer_connector(self, salesforce: SalesforceEmulator) -> ConnectorFactory:
        self.emulator = salesforce  # for remote_fields
        config = SalesforceConfig(
            instance_url=salesforce.url,
            session_id=SecretStr(salesforce.session_id),
            verify=str(salesforce.cert_path),
            allow_create_fields=True,
        )
        return ConnectorFactory(
            lambda: SalesforceConnector(config), faults=SalesforceFaults(salesforce)
        )

    def make_record(
        self, connector: Connector[Any], object_name: str, key: str, version: int = 1
    ) -> WriteRecord:
        required = {"Account": {"Name": f"Co {key}"}, "Contact": {"LastName": f"L{key}"}}
        values = {**required[object_name], "Syncer_Notes__c": f"note {key} v{version}"}
        return WriteRecord(key, values, values)

    def oversized_field(
        self, connector: Connector[Any], object_name: str
    ) -> tuple[str, int] | None:
        return "Syncer_Notes__c", 255

    def ensure_fields(self, connector: Connector[Any], object_name: str) -> list[FieldSpec]:
        return [FieldSpec("Syncer_Notes__c", max_length=255)]

    def remote_fields(
        self, connector: Connector[Any], object_name: str, remote_id: str
    ) -> Mapping[str, Any] | None:
        return self.emulator.records(object_name)[remote_id]
