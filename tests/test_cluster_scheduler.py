"""A run through a real ``dask scheduler`` and two ``dask worker`` processes (``--cluster
tcp://…``) leaves the HubSpot emulator as a run in one process does, with the store and the
state in PostgreSQL (the workers reach them, and the emulator, on their own).

Slow: the scheduler and two worker processes start (each imports Dask and syncer).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from crm_configs import hubspot_config, load_examples
from distributed import Client
from processes import free_port, stop_processes
from sqlalchemy import text
from test_cluster import ENV, TOKEN, held

from syncer.config import load_config
from syncer.db import create_db_engine
from syncer.engine import Sync
from syncer.retry import RetryPolicy
from syncer.testing.hubspot_emulator import HubSpotEmulator

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def scheduler(tmp_path: Path) -> Iterator[str]:
    """A ``dask scheduler`` on a free loopback port and two ``dask worker --nworkers 1
    --nthreads 1`` processes; all stopped and waited for afterwards."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "dask"]
    quiet = ["--dashboard-address", "127.0.0.1:0"]  # not 8787: another run may hold it
    worker = ["--host", "127.0.0.1", "--no-dashboard"]
    log = (tmp_path / "dask.log").open("w")
    processes = [
        subprocess.Popen(
            [*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), *quiet],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    ]
    try:
        for _ in range(2):
            processes.append(
                subprocess.Popen(
                    [*dask, "worker", address, "--nworkers", "1", "--nthreads", "1", *worker],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        stop_processes(processes[::-1], timeout=30)  # workers first, then the scheduler
        log.close()


def test_a_run_through_a_scheduler_and_two_workers_equals_a_run_in_one_process(
    tmp_path: Path, postgres_url: str, scheduler: str
) -> None:
    store_url = load_examples(postgres_url, extra_users=150)
    with ExitStack() as stack:
        many_hs = stack.enter_context(HubSpotEmulator(access_token=TOKEN, seed=7))
        one_hs = stack.enter_context(HubSpotEmulator(access_token=TOKEN, seed=7))
        retry = RetryPolicy.no_wait(12)
        # The cluster's state in PostgreSQL beside the store; the reference's in a file.
        many_config = hubspot_config(tmp_path / "many.yaml", store_url, store_url, many_hs)
        one_config = hubspot_config(
            tmp_path / "one.yaml", store_url, f"sqlite:///{tmp_path / 'one.db'}", one_hs
        )
        many = stack.enter_context(Sync(load_config(many_config), environ=ENV, retry=retry))
        one = stack.enter_context(Sync(load_config(one_config), environ=ENV, retry=retry))
        report = many.run("hubspot", cluster=scheduler)
        assert report.status == "succeeded", report.message
        assert one.run("hubspot").status == "succeeded"
        assert held(many_hs) == held(one_hs)
        assert len(held(many_hs)) == 11 + 14 + 150
        assert report.run_counts()["sent"] == 11 + 14 + 150
        # An incremental run on the cluster: a renamed user, and one with nothing to read.
        engine = create_db_engine(store_url)
        with engine.begin() as conn:
            conn.execute(text("UPDATE users SET first_name = 'Adaline' WHERE user_id = 'u01'"))
        engine.dispose()
        changed = many.run("hubspot", cluster=scheduler)
        assert (changed.mode, changed.status) == ("incremental", "succeeded")
        assert changed.run_counts()["sent"] >= 1
        assert one.run("hubspot", full=True).status == "succeeded"
        assert held(many_hs) == held(one_hs)
        many_hs.reset_log()
        again = many.run("hubspot", cluster=scheduler)
        assert (again.mode, again.status) == ("incremental", "succeeded")
        assert many_hs.write_requests() == []
