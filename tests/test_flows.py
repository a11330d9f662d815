"""The Prefect layer: flows run the engine's steps as tasks, publish artifacts, retry only
transient failures. Slow: one Prefect test server per session (~15 s to start)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncer.engine import RunSession
from syncer.errors import FatalError, LeaseLostError, RetriableError, RetriesExhausted
from syncer.testing.memory import MemoryConnector

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    home = tmp_path_factory.mktemp("prefect-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("PREFECT_HOME", str(home))
    mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    mp.setenv("DO_NOT_TRACK", "1")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
    mp.undo()


@pytest.fixture
def config(memory_config: Path) -> Path:
    return memory_config


def _task_runs(flow_run_id: Any) -> list[Any]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )

    return asyncio.run(read())


def _run_logs(flow_run_id: Any) -> list[Any]:
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # logs go to the API in the background, in batches

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )

    return asyncio.run(read())


def test_the_sync_flow_runs_the_engine_and_publishes_artifacts(
    prefect_server: None, config: Path
) -> None:
    from prefect import get_client

    from flows.sync import sync

    state = sync(config=str(config), destination="crm", return_state=True)
    assert state.is_completed()
    result = state.result()
    assert result["status"] == "succeeded"
    assert result["sent"] == 25
    # One task per step, not per record: ensure, two objects, associations.
    names = sorted(t.name.split("-")[0] for t in _task_runs(state.state_details.flow_run_id))
    assert len(names) == 4

    async def artifacts() -> set[str]:
        async with get_client() as client:
            found = await client.read_artifacts()
        return {a.key for a in found if a.key}

    keys = asyncio.run(artifacts())
    assert {"syncer-crm-run", "syncer-crm-report"} <= keys

    from flows.sync import read_report

    run_id = state.state_details.flow_run_id
    report = read_report(run_id, "crm")
    assert report is not None
    assert "| planned | 25 |" in report
    assert "| sent | 25 |" in report
    assert "| rejected by syncer | 0 |" in report
    assert "| refused by the destination | 0 |" in report
    # Flattened samples are shown decoded next to the stored token list.
    assert "(u01:cus · u02:cus)" in report

    # The engine's own summaries are in the run's logs, not only the flow's.
    engine_logs = [r.message for r in _run_logs(run_id) if r.name == "syncer.engine"]
    assert any(m.startswith("crm contacts: create 14; sent 14") for m in engine_logs), engine_logs

    # A dry run after the real one: nothing changed, so nothing is read or would be sent;
    # with full=True everything is read, and found recorded.
    dry = sync(config=str(config), destination="crm", dry_run=True)
    assert dry["dry_run"] is True
    assert (dry["unchanged"], dry["create"], dry["update"]) == (0, 0, 0)
    dry = sync(config=str(config), destination="crm", dry_run=True, full=True)
    assert dry["unchanged"] == 25


def test_a_transient_failure_is_retried_by_the_task_and_a_bug_is_not(
    prefect_server: None, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.sync as module

    calls: list[str] = []
    real = RunSession.apply_object

    def flaky(self: RunSession, object_name: str, **kw: Any) -> Any:
        calls.append(object_name)
        if object_name == "contacts" and calls.count("contacts") == 1:
            raise RetriesExhausted("hubspot write contacts: gave up after 8 attempts")
        return real(self, object_name, **kw)

    monkeypatch.setattr(RunSession, "apply_object", flaky)
    monkeypatch.setattr(module, "apply_task", module.apply_task.with_options(retry_delay_seconds=0))
    result = module.sync(config=str(config), destination="crm")
    assert calls == ["companies", "contacts", "contacts"]
    assert result["status"] == "succeeded"

    calls.clear()

    def buggy(self: RunSession, object_name: str, **kw: Any) -> Any:
        calls.append(object_name)
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(RunSession, "apply_object", buggy)
    state = module.sync(config=str(config), destination="crm", return_state=True)
    assert state.is_failed()
    assert calls == ["companies"]  # not retried


def test_task_runs_do_not_grow_with_batches(
    prefect_server: None, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import syncer.engine.sync

    # Batches of two: 25 records take 13 write requests, still in one task per object.
    monkeypatch.setattr(
        syncer.engine.sync, "get_connector", lambda _name: MemoryConnector.configured(max_batch=2)
    )
    from flows.sync import sync

    state = sync(config=str(config), destination="crm", return_state=True)
    assert state.result()["requests"] == 13
    assert len(_task_runs(state.state_details.flow_run_id)) == 4


def test_the_flow_takes_a_lease_that_outlasts_its_task_retries(
    prefect_server: None, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import syncer.engine.sync

    ttls: list[float] = []
    real = syncer.engine.sync.acquire

    def recording(*args: Any, **kwargs: Any) -> Any:
        ttls.append(args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(syncer.engine.sync, "acquire", recording)
    from flows.sync import LEASE_SECONDS, sync

    assert sync(config=str(config), destination="crm")["status"] == "succeeded"
    assert ttls == [LEASE_SECONDS]


def test_credentials_come_from_a_prefect_secret_block(
    prefect_server: None, make_examples_config: Any
) -> None:
    from prefect.blocks.system import Secret

    from flows.sync import sync

    mapping = ROOT / "mappings" / "hubspot.yaml"
    config = make_examples_config(
        "destinations:\n"
        "  crm:\n"
        "    connector: memory\n"
        f"    mapping: {mapping}\n"
        "    credentials: {api_token: prefect-secret:crm-token}\n"
    )
    missing = sync(config=str(config), destination="crm", return_state=True)
    assert missing.is_failed()
    with pytest.raises(Exception, match="cannot read Prefect Secret block 'crm-token'"):
        missing.result()

    Secret(value="s3cr3t").save("crm-token", overwrite=True)
    assert sync(config=str(config), destination="crm")["sent"] == 25


def test_retry_condition_only_admits_transient_errors() -> None:
    from prefect.states import Failed

    from flows.sync import retry_transient

    def failed(exc: BaseException) -> Any:
        return Failed(data=exc)

    assert retry_transient(None, None, failed(RetriableError("429")))  # type: ignore[arg-type]
    assert retry_transient(None, None, failed(RetriesExhausted("gave up")))  # type: ignore[arg-type]
    assert not retry_transient(None, None, failed(FatalError("401")))  # type: ignore[arg-type]
    assert not retry_transient(None, None, failed(KeyError("bug")))  # type: ignore[arg-type]
    # Another run owns the destination now: retrying this run's session cannot help.
    lost = LeaseLostError("crm", "run-1", "run-2", None)
    assert not retry_transient(None, None, failed(lost))  # type: ignore[arg-type]


def test_the_sync_flow_on_a_cluster_runs_each_partition_as_a_dask_task(
    prefect_server: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crm_configs import examples_store, hubspot_config
    from test_cluster import TOKEN, held

    from flows.sync import sync
    from syncer.testing.hubspot_emulator import HubSpotEmulator

    monkeypatch.setenv("HS_TOKEN", TOKEN)  # the workers of the flow's LocalCluster inherit it
    store = examples_store(tmp_path)
    with HubSpotEmulator(access_token=TOKEN, seed=7) as hs:
        config = hubspot_config(tmp_path / "syncer.yaml", store, store, hs)
        state = sync(
            config=str(config), destination="hubspot", cluster="local:2", return_state=True
        )
        assert state.is_completed()
        result = state.result()
        assert result["status"] == "succeeded"
        assert result["sent"] == 25
        assert result["associations_created"] == 22
        contacts = [k for k in held(hs) if k.startswith("contacts/")]
        assert len(contacts) == 14
        # The run is a child flow; its partitions are its tasks, one per key range.
        from prefect import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

        parent = FlowRunFilterParentFlowRunId(any_=[state.state_details.flow_run_id])
        with get_client(sync_client=True) as client:
            (child,) = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=parent)
            )
        partitions = [t for t in _task_runs(child.id) if t.name.startswith("apply ")]
        assert len(partitions) >= 3  # companies and contacts cut into key ranges


def test_the_sync_flow_refuses_a_running_cluster_with_a_sqlite_store(
    prefect_server: None, config: Path
) -> None:
    from flows.sync import sync
    from syncer.config import load_config
    from syncer.engine import Sync
    from syncer.state import RunLog

    state = sync(
        config=str(config), destination="crm", cluster="tcp://127.0.0.1:1", return_state=True
    )
    assert state.is_failed()
    with pytest.raises(Exception, match="SQLite"):
        state.result()
    with Sync(load_config(config)) as engine:
        assert RunLog(engine.state).last_runs("crm", limit=5) == []
