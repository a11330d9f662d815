"""Scale-out on Dask, runs: key-range partitions written on Dask workers leave the destination
as one process does; the coordinator holds the destination's lease, and a partition stops
before its next batch once the run lost it.

A ``LocalCluster`` (``local:2``) writes the partitions here; the plans are in
``test_cluster_plan.py``, a real ``dask scheduler`` with two ``dask worker`` processes in
``test_cluster_scheduler.py``. The helpers here serve those too.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from crm_configs import examples_store, hubspot_config
from sqlalchemy import delete, select, text, update

from syncer.config import load_config
from syncer.db import create_db_engine
from syncer.engine import Sync
from syncer.engine.coordinator import partitions
from syncer.engine.incremental import read_scope
from syncer.engine.partitions import PartitionJob, apply_partition
from syncer.errors import LeaseLostError
from syncer.retry import RetryPolicy
from syncer.state.feed import FeedPositions
from syncer.state.lease import current_lease
from syncer.state.schema import sync_locks, sync_records, sync_runs
from syncer.store.schema import memberships, users
from syncer.testing._http import Request, Response
from syncer.testing.hubspot_emulator import HubSpotEmulator

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "cluster-token"
ENV = {"HS_TOKEN": TOKEN}
ONE_AT_A_TIME = "    concurrency: 1\n"


def held(emulator: HubSpotEmulator) -> dict[str, object]:
    """What HubSpot holds, by the product's keys (record ids differ between two emulators)."""
    companies = {i: p.get("syncer_account_id") for i, p in emulator.companies().items()}
    out: dict[str, object] = {}
    stamps = ("createdate", "lastmodifieddate", "hs_object_id", "hs_lastmodifieddate")
    for p in emulator.companies().values():
        out[f"companies/{p['syncer_account_id']}"] = {k: v for k, v in p.items() if k not in stamps}
    for cid, p in emulator.contacts().items():
        links = {companies[c]: sorted(t) for c, t in emulator.associations(cid).items()}
        props = {k: v for k, v in p.items() if k not in stamps}
        if props.get("associatedcompanyid"):  # a remote id: companies are made in any order
            props["associatedcompanyid"] = companies[props["associatedcompanyid"]]
        out[f"contacts/{p['syncer_user_id']}"] = (props, links)
    return out


def _active_links(sync: Sync) -> list[tuple[str, str]]:
    """(user, account) of every active membership: the links HubSpot should hold."""
    m = memberships.c
    with sync.store.connect() as conn:
        rows = conn.execute(select(m.user_id, m.account_id).where(m.stage != "churned")).all()
    return [(r[0], r[1]) for r in rows]


@pytest.mark.slow  # two LocalClusters start: 20-40 s on this shared machine
def test_a_run_on_local_workers_leaves_hubspot_as_one_process_does(tmp_path: Path) -> None:
    store_url = examples_store(tmp_path)
    store = create_db_engine(store_url)
    with ExitStack() as stack:
        many_hs = stack.enter_context(HubSpotEmulator(access_token=TOKEN, seed=7))
        one_hs = stack.enter_context(HubSpotEmulator(access_token=TOKEN, seed=7))
        retry = RetryPolicy.no_wait(12)
        many = stack.enter_context(
            Sync(
                load_config(
                    hubspot_config(
                        tmp_path / "many.yaml",
                        store_url,
                        f"sqlite:///{tmp_path / 'many.db'}",
                        many_hs,
                    )
                ),
                environ=ENV,
                retry=retry,
            )
        )
        one = stack.enter_context(
            Sync(
                load_config(
                    hubspot_config(
                        tmp_path / "one.yaml", store_url, f"sqlite:///{tmp_path / 'one.db'}", one_hs
                    )
                ),
                environ=ENV,
                retry=retry,
            )
        )
        first = many.run("hubspot", cluster="local:2")
        assert (first.mode, first.status) == ("full", "succeeded"), first.message
        one_first = one.run("hubspot")
        assert one_first.status == "succeeded"
        assert held(many_hs) == held(one_hs)
        # The same records and links sent (in more requests: a batch per partition at least).
        assert first.run_counts() | {"requests": 0} == one_first.run_counts() | {"requests": 0}
        # Links cross partitions: a contact written by one partition links companies written
        # by others (every company partition completed before any contact partition began).
        dest = many.destination("hubspot")
        companies, contacts = dest.mapping.objects
        account_parts = partitions(many, companies, read_scope(many, dest, full=True).accounts, 4)
        user_parts = partitions(many, contacts, read_scope(many, dest, full=True).users, 4)

        def part_of(parts: Any, key: str) -> int:
            return next(
                i for i, p in enumerate(parts) if (p.start or "") <= key < (p.stop or "\uffff")
            )

        crossing = [
            (u, a)
            for u, a in _active_links(many)
            if part_of(user_parts, u) != part_of(account_parts, a)
        ]
        assert len(account_parts) > 1
        assert crossing
        assert first.links is not None
        assert first.links.created == len(_active_links(many))
        assert FeedPositions(many.state).get("hubspot") is not None

        # The product renames a user, churns a membership and deletes a user: an incremental
        # run on the cluster (its closure cut into key-set slices) leaves HubSpot as a full
        # run in one process does.
        with store.begin() as conn:
            conn.execute(text("UPDATE users SET first_name = 'Adaline' WHERE user_id = 'u01'"))
            conn.execute(
                text(
                    "UPDATE memberships SET stage = 'churned' "
                    "WHERE user_id = 'u02' AND account_id = 'ACME'"
                )
            )
            conn.execute(delete(memberships).where(memberships.c.user_id == "u03"))
            conn.execute(delete(users).where(users.c.user_id == "u03"))
        second = many.run("hubspot", cluster="local:2")
        assert (second.mode, second.status) == ("incremental", "succeeded"), second.message
        assert second.totals()["remove"] == 1
        assert one.run("hubspot", full=True).status == "succeeded"
        assert held(many_hs) == held(one_hs)
        # Members' emails change: the companies listing them are made on the workers from the
        # member tokens the partitions of the earlier runs kept (u01's XYZ, u05's GLOBEX...).
        with store.begin() as conn:
            conn.execute(
                text("UPDATE users SET email = 'new.' || email WHERE user_id IN ('u01', 'u05')")
            )
        third = many.run("hubspot", cluster="local:2")
        assert (third.mode, third.status) == ("incremental", "succeeded"), third.message
        assert third.read.get("member_tokens", 0) > 0
        assert one.run("hubspot", full=True).status == "succeeded"
        assert held(many_hs) == held(one_hs)
        many_hs.reset_log()
        again = many.run("hubspot", full=True)
        assert again.run_counts()["sent"] == 0
        assert many_hs.write_requests() == []
    store.dispose()


class _LeaseThief(HubSpotEmulator):
    """Takes the destination's lease from the run (as an operator's forced release and another
    run would) while it answers the first contacts upsert."""

    def __init__(self, state_url: str, **options: Any) -> None:
        super().__init__(**options)
        self.state_url = state_url
        self.stolen = False

    def handle(self, request: Request) -> Response:
        if not self.stolen and "contacts/batch/upsert" in request.path:
            engine = create_db_engine(self.state_url)
            with engine.begin() as conn:
                conn.execute(update(sync_locks).values(holder="thief"))
            engine.dispose()
            self.stolen = True
        return super().handle(request)


def test_a_partition_stops_before_its_next_batch_once_the_lease_is_lost(tmp_path: Path) -> None:
    store_url = examples_store(tmp_path, extra_users=250)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    with _LeaseThief(state_url, access_token=TOKEN, seed=7) as hs:
        # One batch in flight at a time: the one answered when the lease went is the last.
        path = hubspot_config(tmp_path / "syncer.yaml", store_url, state_url, hs, ONE_AT_A_TIME)
        config = load_config(path)
        with Sync(config, environ=ENV, retry=RetryPolicy.no_wait(3)) as sync:
            dest = sync.destination("hubspot")
            session = sync.start_run("hubspot")  # the coordinator: run row, lease, fields
            session.ensure()
            job = PartitionJob(
                Sync, config, "hubspot", _now(), sync.retry, ENV, run_id=session.run_id
            )
            apply_partition(sync, job, "companies", read_scope(sync, dest).accounts)
            with pytest.raises(LeaseLostError) as caught:
                apply_partition(sync, job, "contacts", read_scope(sync, dest, full=True).users)
            assert "thief" in str(caught.value)
            # The batch being answered when the lease went is recorded; no batch went after it.
            assert len(hs.requests(path_contains="contacts/batch/upsert")) == 1
            with sync.state.connect() as conn:
                recorded = conn.execute(
                    select(sync_records.c.key).where(sync_records.c.object == "contacts")
                ).all()
            assert len(recorded) == 100
            assert hs.requests(path_contains="associations") == []
            session.finish()  # releases nothing: the lease is no longer this run's
            assert current_lease(sync.state, "hubspot").holder == "thief"


@pytest.mark.slow  # a LocalCluster starts and 850 records go: about 25 s here
def test_a_run_on_workers_that_lost_its_lease_stops_every_partition(tmp_path: Path) -> None:
    store_url = examples_store(tmp_path, extra_users=600)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    with _LeaseThief(state_url, access_token=TOKEN, seed=7) as hs:
        path = hubspot_config(tmp_path / "syncer.yaml", store_url, state_url, hs, ONE_AT_A_TIME)
        with Sync(load_config(path), environ=ENV, retry=RetryPolicy.no_wait(3)) as sync:
            with pytest.raises(LeaseLostError):
                sync.run("hubspot", cluster="local:2")
            with sync.state.connect() as conn:
                status, message = conn.execute(
                    select(sync_runs.c.status, sync_runs.c.message)
                ).one()
            assert status == "failed"
            assert "lost its lease" in message
            # At most one more batch: the one the other worker had in flight.
            assert len(hs.requests(path_contains="contacts/batch/upsert")) <= 2
            assert hs.requests(path_contains="associations") == []
            assert FeedPositions(sync.state).get("hubspot") is None  # the position did not move
            assert current_lease(sync.state, "hubspot").holder == "thief"


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
