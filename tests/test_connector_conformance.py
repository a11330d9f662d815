"""The built-in connectors pass the conformance suite a plugin author runs, against their
emulators through the real client libraries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import pytest
from pydantic import SecretStr

from syncer.connectors.base import Connector, WriteRecord
from syncer.connectors.hubspot import HubSpotConfig, HubSpotConnector
from syncer.connectors.salesforce import SalesforceConfig, SalesforceConnector
from syncer.fields import FieldSpec
from syncer.testing.conformance import ConnectorConformance
from syncer.testing.hubspot_emulator import HubSpotEmulator
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


class _HubSpot(ConnectorConformance):
    association_objects: ClassVar[tuple[str, str] | None] = ("contacts", "companies")

    @pytest.fixture
    def connector(self, hubspot: HubSpotEmulator) -> Iterator[Connector]:
        connector = HubSpotConnector(
            HubSpotConfig(access_token=SecretStr("conformance"), host=hubspot.url)
        )
        for name in connector.objects:  # the unique key properties upserts need
            connector.ensure(name, [FieldSpec("notes")])
        yield connector
        connector.close()

    def remote_count(self, connector: Connector, object_name: str) -> int | None:
        return None  # the module-wide emulator holds other tests' records too

    def oversized_field(self, connector: Connector, object_name: str) -> tuple[str, int] | None:
        return "notes", 65_536


class TestHubSpotCompaniesConformance(_HubSpot):
    object_name = "companies"


class TestHubSpotContactsConformance(_HubSpot):
    object_name = "contacts"


class _Salesforce(ConnectorConformance):
    batch_cap = 200

    @pytest.fixture
    def connector(self, salesforce: SalesforceEmulator) -> Iterator[Connector]:
        connector = SalesforceConnector(
            SalesforceConfig(
                instance_url=salesforce.url,
                session_id=SecretStr(salesforce.session_id),
                verify=str(salesforce.cert_path),
                allow_create_fields=True,
            )
        )
        for name in connector.objects:
            connector.ensure(name, [FieldSpec("Syncer_Notes__c", max_length=255)])
        yield connector
        connector.close()

    def make_record(self, connector: Connector, object_name: str, key: str) -> WriteRecord:
        required = {"Account": {"Name": f"Co {key}"}, "Contact": {"LastName": f"L{key}"}}
        values = {**required[object_name], "Syncer_Notes__c": f"note {key}"}
        return WriteRecord(key, values, values)

    def oversized_field(self, connector: Connector, object_name: str) -> tuple[str, int] | None:
        return "Syncer_Notes__c", 255

    def ensure_fields(self, connector: Connector, object_name: str) -> list[FieldSpec]:
        return [FieldSpec("Syncer_Notes__c", max_length=255)]


class TestSalesforceAccountConformance(_Salesforce):
    object_name = "Account"


class TestSalesforceContactConformance(_Salesforce):
    object_name = "Contact"
