"""The result contract, enforced by the one write pipeline for every kind of write.

Every record sent gets exactly one result. A result for a key that was not sent stops the run
with a FatalError naming the connector, and nothing of that batch is recorded; a record sent
without a result is recorded as failed ("no result from the destination") and sent again by the
next run. Proved with the in-memory connector on the batch and bulk paths, and through the real
connectors against the emulators' fault switches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from crm_configs import destination_yaml, examples_store

from syncer.config import load_config
from syncer.connectors.base import BulkResult, Capabilities, WriteRecord, WriteResult
from syncer.engine import NO_RESULT, Sync
from syncer.errors import FatalError
from syncer.retry import RetryPolicy
from syncer.state import FailureLog, RecordState
from syncer.testing.hubspot_emulator import HubSpotEmulator
from syncer.testing.memory import MemoryConnector
from syncer.testing.salesforce_emulator import SalesforceEmulator

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "contract-token"


class _Answers(MemoryConnector):
    """Answers out of contract once, for the first batch (or bulk job) of contacts."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        max_batch=100, associations=True, removal_modes=frozenset({"none", "clear", "archive"})
    )
    fault: str | None = None

    def _spoil(self, object_name: str, results: Sequence[WriteResult]) -> list[WriteResult]:
        out = sorted(results, key=lambda r: r.key)
        if object_name != "contacts" or self.fault is None:
            return out
        fault, self.fault = self.fault, None
        if fault == "missing":
            return out[1:]
        return [*out, WriteResult("not-sent", remote_id="x1")]

    def write(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
        return self._spoil(object_name, super().write(object_name, batch))


class _BulkAnswers(_Answers):
    capabilities: ClassVar[Capabilities] = Capabilities(
        max_batch=100, associations=True, bulk_threshold=5, bulk_batch=7
    )

    def write(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
        return MemoryConnector.write(self, object_name, batch)

    def write_bulk(self, object_name: str, records: Sequence[WriteRecord]) -> BulkResult:
        assert len(records) <= self.bulk_batch_size  # the chunk size is the connector's
        return BulkResult(self._spoil(object_name, self.write(object_name, records)), requests=4)


@pytest.mark.parametrize("connector_cls", [_Answers, _BulkAnswers], ids=["batch", "bulk"])
def test_a_missing_result_is_a_failed_record_sent_again_next_run(
    memory_sync: Callable[..., Sync], connector_cls: type[_Answers]
) -> None:
    connector = connector_cls()
    connector.fault = "missing"
    with memory_sync() as sync:
        first = sync.run("crm", connector=connector)
        contacts = first.objects[1]
        assert (first.status, contacts.sent, contacts.refused) == ("partial", 13, 1)
        [failure] = FailureLog(sync.state).iter_failures("crm")
        assert (failure.key, failure.reason) == ("u01", NO_RESULT)
        assert RecordState(sync.state).get_many("crm", "contacts", ["u01"]) == {}
        second = sync.run("crm", connector=connector_cls(store=connector.store))
        assert second.status == "succeeded"
        assert (second.objects[1].sent, second.objects[1].counts.create) == (1, 1)
        assert list(FailureLog(sync.state).iter_failures("crm")) == []


@pytest.mark.parametrize("connector_cls", [_Answers, _BulkAnswers], ids=["batch", "bulk"])
def test_a_result_for_a_key_not_sent_stops_the_run_naming_the_connector(
    memory_sync: Callable[..., Sync], connector_cls: type[_Answers]
) -> None:
    connector = connector_cls()
    connector.fault = "extra"
    with memory_sync() as sync:
        with pytest.raises(FatalError, match=r"connector 'memory' returned a result for key "):
            sync.run("crm", connector=connector)
        assert RecordState(sync.state).get_many("crm", "contacts", ["u01", "u02"]) == {}
        assert len(RecordState(sync.state).get_many("crm", "companies", ["ACME", "ACME-US"])) == 2


def test_the_bulk_chunk_size_comes_from_the_connector(memory_sync: Callable[..., Sync]) -> None:
    connector = _BulkAnswers()
    with memory_sync() as sync:
        report = sync.run("crm", connector=connector)
    # 11 companies and 14 contacts in jobs of 7: two jobs each, four requests a job.
    assert [(o.sent, o.requests) for o in report.objects] == [(11, 8), (14, 8)]


# --- through the real connectors ------------------------------------------------------------


@pytest.fixture
def hubspot() -> Iterator[HubSpotEmulator]:
    with HubSpotEmulator(access_token=TOKEN, seed=3) as emulator:
        yield emulator


def _hubspot_sync(tmp_path: Path, hubspot: HubSpotEmulator) -> Sync:
    settings = {"host": hubspot.url, "timeout": 5}
    store = examples_store(tmp_path)
    config = destination_yaml(tmp_path, store, "hubspot", "{access_token: env:HS_TOKEN}", settings)
    return Sync(load_config(config), environ={"HS_TOKEN": TOKEN}, retry=RetryPolicy.no_wait())


def test_hubspot_a_missing_batch_result_is_retried_next_run(
    tmp_path: Path, hubspot: HubSpotEmulator
) -> None:
    hubspot.inject_result_fault("missing", otype="contacts")
    with _hubspot_sync(tmp_path, hubspot) as sync:
        first = sync.run("hubspot")
        contacts = first.objects[1]
        assert (first.status, contacts.sent, contacts.refused) == ("partial", 13, 1)
        [(key, reason)] = contacts.errors
        assert reason == NO_RESULT
        second = sync.run("hubspot")
        assert second.status == "succeeded"
        assert second.objects[1].sent == 1
        assert RecordState(sync.state).get_many("hubspot", "contacts", [key])[key].remote_id


def test_hubspot_a_result_for_a_record_not_sent_stops_the_run(
    tmp_path: Path, hubspot: HubSpotEmulator
) -> None:
    hubspot.inject_result_fault("extra", otype="contacts")
    with (
        _hubspot_sync(tmp_path, hubspot) as sync,
        pytest.raises(FatalError, match="connector 'hubspot'"),
    ):
        sync.run("hubspot")


@pytest.fixture
def org() -> Iterator[SalesforceEmulator]:
    with SalesforceEmulator() as emulator:
        emulator.allow_field_creation = True
        yield emulator


def _salesforce_sync(tmp_path: Path, org: SalesforceEmulator, path: str) -> Sync:
    settings: dict[str, Any] = {
        "instance_url": org.url,
        "verify": str(org.cert_path),
        "allow_create_fields": True,
        "bulk_poll_seconds": 0.05,
    }
    if path == BULK:
        settings["bulk_threshold"] = 20  # the 30 bulk users and the examples' 14 go in a job
    store = examples_store(tmp_path, extra_users=30)
    config = destination_yaml(
        tmp_path, store, "salesforce", "{session_id: env:SF_SESSION}", settings
    )
    environ = {"SF_SESSION": org.session_id}
    return Sync(load_config(config), environ=environ, retry=RetryPolicy.no_wait())


BULK, COLLECTIONS = "jobs/ingest", "composite/"
_ZIPPED = pytest.mark.xfail(
    strict=True,
    reason="a Collections answer of another length cannot be matched by position: "
    "salesforce_results.py rejects every record of that batch rather than guess positions",
)


@pytest.mark.parametrize(
    "path", [BULK, pytest.param(COLLECTIONS, marks=_ZIPPED)], ids=["bulk", "collections"]
)
def test_salesforce_a_missing_result_is_retried_next_run(
    tmp_path: Path, org: SalesforceEmulator, path: str
) -> None:
    org.inject("missing_result", path=path, times=1)
    with _salesforce_sync(tmp_path, org, path) as sync:
        first = sync.run("salesforce")
        refused = sum(o.refused for o in first.objects)
        assert (first.status, refused) == ("partial", 1)
        second = sync.run("salesforce")
        assert second.status == "succeeded"
        assert sum(o.sent for o in second.objects) == 1


@pytest.mark.parametrize(
    "path",
    [BULK, pytest.param(COLLECTIONS, marks=_ZIPPED)],
    ids=["bulk", "collections"],
)
def test_salesforce_a_result_for_a_record_not_sent_stops_the_run(
    tmp_path: Path, org: SalesforceEmulator, path: str
) -> None:
    org.inject("extra_result", path=path, times=1)
    with (
        _salesforce_sync(tmp_path, org, path) as sync,
        pytest.raises(FatalError, match="connector 'salesforce'"),
    ):
        sync.run("salesforce")
