"""Deployments: schedules from syncer.yaml, prefect.yaml accepted, and a scheduled run really
happens on a real ``prefect server start`` (its scheduler does not run in the test harness)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from processes import free_port, stop_processes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def config(make_examples_config: Callable[[str], Path]) -> Path:
    mapping = ROOT / "mappings" / "hubspot.yaml"
    return make_examples_config(
        "destinations:\n"
        "  crm:\n"
        "    connector: memory\n"
        f"    mapping: {mapping}\n"
        "    schedule: {cron: '*/15 * * * *', timezone: Europe/Berlin}\n"
        "  other:\n"
        "    connector: memory\n"
        f"    mapping: {mapping}\n",
    )


def test_serve_builds_one_deployment_per_scheduled_destination(config: Path) -> None:
    from flows.serve import deployments

    [dep] = deployments(config)
    assert dep.name == "sync-crm"
    assert dep.concurrency_limit == 1
    assert dep.parameters == {"config": str(config.resolve()), "destination": "crm"}
    [schedule] = dep.schedules
    assert schedule.schedule.cron == "*/15 * * * *"
    assert schedule.schedule.timezone == "Europe/Berlin"


def test_a_hubspot_only_config_makes_no_salesforce_deployment() -> None:
    from flows.serve import deployments

    # examples/syncer.yaml, the config README's `python -m flows.serve` names: HubSpot only.
    config = ROOT / "examples" / "syncer.yaml"
    assert [d.name for d in deployments(config)] == ["sync-hubspot"]


def test_prefect_yaml_names_real_flows_and_no_destination_of_its_own() -> None:
    doc = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    import flows.sync

    assert doc["deployments"]
    for dep in doc["deployments"]:
        path, name = dep["entrypoint"].split(":")
        assert (ROOT / path).is_file()
        assert hasattr(flows.sync, name)
        assert dep["concurrency_limit"] == 1
        assert dep["schedules"][0]["cron"]
        assert dep["schedules"][0]["timezone"]
        # Destinations come from the user's config, never from this file: `prefect deploy
        # --all` must not create a deployment for a destination the config does not have.
        assert "destination" not in dep["parameters"]
        assert dep["parameters"]["config"] == "{{ $SYNCER_CONFIG }}"


def test_serve_without_a_config_file_says_so_in_one_line(tmp_path: Path) -> None:
    from flows.serve import main

    with pytest.raises(SystemExit) as stopped:
        main(["--config", str(tmp_path / "syncer.yaml")])
    message = str(stopped.value.code)
    assert message.startswith(f"error: no configuration file at {tmp_path / 'syncer.yaml'}")
    assert "examples/syncer.yaml" in message
    assert (ROOT / "examples" / "syncer.yaml").is_file()


@pytest.fixture
def prefect_api(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1",
    }
    env.pop("PREFECT_API_URL", None)
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
         str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    log.close()
                    pytest.fail(
                        "prefect server did not start:\n"
                        + (tmp_path / "server.log").read_text(errors="replace")[-2000:]
                    )
                time.sleep(0.5)
        yield url
    finally:
        stop_processes([server], timeout=15)
        log.close()


@pytest.mark.slow
def test_a_scheduled_deployment_runs_the_sync_flow(
    prefect_api: str, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import get_client
    from prefect.runner import Runner
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.sync import sync

    monkeypatch.chdir(ROOT)  # the runner loads the flow from flows/sync.py in a subprocess

    async def scenario() -> tuple[list[str], Any]:
        runner = Runner(query_seconds=1)
        await runner.add_flow(
            sync,
            name="sync-crm",
            interval=2,
            parameters={"config": str(config), "destination": "crm"},
            concurrency_limit=1,
        )
        serving = asyncio.create_task(runner.start())
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                await asyncio.sleep(1)
                async with get_client() as client:
                    names = [d.name for d in await client.read_deployments()]
                    runs = [r for r in await client.read_flow_runs() if r.deployment_id]
                done = [r for r in runs if r.state_type.value == "COMPLETED"]
                crashed = [r for r in runs if r.state_type.value in ("CRASHED", "FAILED")]
                if done or crashed:
                    return names, (done or crashed)[0]
            return names, None
        finally:
            await runner.stop()
            serving.cancel()

    with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
        names, run = asyncio.run(scenario())
    assert "sync-crm" in names
    assert run is not None, "no scheduled run finished within 90 s"
    assert run.state_type.value == "COMPLETED", run.state


@pytest.mark.slow
def test_serve_pool_registers_only_the_configs_deployments(prefect_api: str, config: Path) -> None:
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.serve import main

    async def pool() -> None:
        async with get_client() as client:
            await client.create_work_pool(WorkPoolCreate(name="syncer", type="process"))

    async def registered() -> list[Any]:
        async with get_client() as client:
            return list(await client.read_deployments())

    with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
        asyncio.run(pool())
        main(["--config", str(config), "--pool", "syncer"])
        [dep] = asyncio.run(registered())
    # `crm` has a schedule, `other` has none: one deployment, on the pool, with its schedule.
    assert dep.name == "sync-crm"
    assert dep.work_pool_name == "syncer"
    assert dep.parameters == {"config": str(config.resolve()), "destination": "crm"}
    assert dep.global_concurrency_limit is not None
    assert dep.global_concurrency_limit.limit == 1
    [schedule] = dep.schedules
    assert schedule.schedule.cron == "*/15 * * * *"
