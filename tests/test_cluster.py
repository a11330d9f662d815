"""Scale-out on Dask: plans and runs over key-range partitions on Dask workers equal one process.

A ``LocalCluster`` (``local:2``) plans and writes the partitions here; the test with a real
``dask scheduler`` and two ``dask worker`` processes is in ``test_cluster_scheduler.py``. Each
worker opens its own Sync and connector; the coordinator holds the destination's lease, and a
partition stops before its next batch once the run lost it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, text, update

from syncer.config import load_config
from syncer.db import ALL_KEYS, KeyRange, create_db_engine, split_key_space
from syncer.engine import PlanReport, Sync
from syncer.engine.cluster import DaskPool, plan_on_cluster
from syncer.engine.coordinator import ClusterSpec, partitions
from syncer.engine.incremental import read_scope
from syncer.engine.partitions import PartitionJob, apply_partition
from syncer.errors import ConfigError, LeaseLostError
from syncer.model import AccountWithMembers, UserWithMemberships
from syncer.retry import RetryPolicy
from syncer.state.feed import FeedPositions
from syncer.state.lease import current_lease
from syncer.state.marks import MarkStore
from syncer.state.records import RecordState
from syncer.state.schema import sync_locks, sync_records, sync_runs
from syncer.store.database import init_store
from syncer.store.loaders import load_paths
from syncer.store.readers import iter_accounts, iter_users
from syncer.store.schema import accounts, memberships, users
from syncer.testing._http import Request, Response
from syncer.testing.hubspot_emulator import HubSpotEmulator
from syncer.testing.memory import MemoryConnector, MemoryStore

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "cluster-token"
ENV = {"HS_TOKEN": TOKEN}
ONE_AT_A_TIME = "    concurrency: 1\n"


def hubspot_config(
    path: Path, store: str, state: str, emulator: HubSpotEmulator, extra: str = ""
) -> Path:
    path.write_text(
        f"store: {json.dumps(store)}\n"
        f"state: {json.dumps(state)}\n"
        "destinations:\n"
        "  hubspot:\n"
        "    connector: hubspot\n"
        f"    mapping: {ROOT / 'mappings' / 'hubspot.yaml'}\n"
        "    removal: clear\n"
        "    credentials: {access_token: env:HS_TOKEN}\n"
        f"    settings: {{host: {json.dumps(emulator.url)}, timeout: 5}}\n" + extra,
        encoding="utf-8",
    )
    return path


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


def examples_store(url: str, extra_users: int = 0) -> str:
    engine = init_store(url)
    load_paths(engine, [ROOT / "examples"])
    if extra_users:
        with engine.begin() as conn:
            conn.execute(
                users.insert(),
                [
                    {"user_id": f"x{i:04d}", "email": f"x{i}@example.com", "attributes": {}}
                    for i in range(extra_users)
                ],
            )
    engine.dispose()
    return url


def _summary(report: PlanReport) -> list[tuple[str, dict[str, int], list[tuple[str, str]]]]:
    return [
        (o.object, o.counts.as_dict(), [(c.key, c.action) for c in o.samples])
        for o in report.objects
    ]


# --- plans --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool() -> Iterator[DaskPool]:
    """One LocalCluster of two worker processes for the plan tests of this module."""
    with DaskPool(ClusterSpec.parse("local:2")) as started:
        yield started


@pytest.fixture
def synced(memory_sync: Callable[..., Sync], store_url: str) -> Sync:
    """The examples/ store synced once to a memory destination, then changed: a user left the
    store (a removal), a stage rose (an update), a user was added (a create)."""
    sync = memory_sync(removal="clear")
    sync.run("crm", connector=MemoryConnector(store=MemoryStore()))
    engine = create_db_engine(store_url)
    with engine.begin() as conn:
        conn.execute(delete(memberships).where(memberships.c.user_id == "u03"))
        conn.execute(delete(users).where(users.c.user_id == "u03"))
        conn.execute(
            update(memberships)
            .where(memberships.c.user_id == "u01", memberships.c.account_id == "XYZ")
            .values(stage="PRO")
        )
        conn.execute(users.insert().values(user_id="u99", email="new@example.com", attributes={}))
    engine.dispose()
    return sync


def _plan_on(pool: DaskPool, sync: Sync, *, samples: int = 50, full: bool = False) -> PlanReport:
    """:meth:`Sync.plan` on ``pool`` (one cluster for the module, not one per plan)."""
    dest = sync.destination("crm")
    scope = read_scope(sync, dest, full=full)
    report = PlanReport("crm", plan_on_cluster(pool, sync, dest, scope, samples=samples, keys=None))
    report.mode = scope.mode
    return report


def test_a_plan_on_workers_equals_the_plan_of_one(synced: Sync, pool: DaskPool) -> None:
    with synced as sync:
        one = sync.plan("crm", samples=50, full=True)
        many = _plan_on(pool, sync, full=True)
        some = _plan_on(pool, sync, samples=2, full=True)
        # Incremental: the changes' closure, its key set cut into slices.
        inc_one = sync.plan("crm", samples=50)
        inc_many = _plan_on(pool, sync)
    assert _summary(many) == _summary(one)
    totals = one.totals()
    assert (totals["remove"], totals["create"]) == (1, 1)
    assert totals["update"] >= 1
    assert totals["unchanged"] > 0
    # Samples are the first ones in key order, whichever partition they came from.
    assert _summary(some) == [(obj, counts, samples[:2]) for obj, counts, samples in _summary(one)]
    assert (inc_one.mode, inc_many.mode) == ("incremental", "incremental")
    assert _summary(inc_many) == _summary(inc_one)
    assert inc_one.totals()["unchanged"] < totals["unchanged"]


def test_an_incremental_key_set_is_cut_into_slices_in_key_order(synced: Sync) -> None:
    with synced as sync:
        dest = sync.destination("crm")
        scope = read_scope(sync, dest)
        contacts = next(o for o in dest.mapping.objects if o.source == "users")
        keys = scope.keys_for(contacts)
        parts = partitions(sync, contacts, keys, 3)
    assert scope.incremental
    assert [k for part in parts for k in part] == list(keys)  # each key once, in order
    assert 1 <= len(parts) <= 3


def test_a_plan_on_a_cluster_through_the_cli_prints_the_same_json(  # --workers 2: local:2
    cli: Callable[..., tuple[int, str, str]], memory_config: Path
) -> None:
    config = str(memory_config)
    code, out, err = cli("plan", "-c", config, "-d", "crm", "--json", "--full")
    assert code == 0, err
    code, out_many, err = cli(
        "plan", "-c", config, "-d", "crm", "--json", "--full", "--workers", "2"
    )
    assert code == 0, err
    one, many = json.loads(out), json.loads(out_many)
    assert (one.pop("cluster"), many.pop("cluster")) == (None, "local:2")
    assert many == one


def test_key_ranges_partition_every_stream_the_plan_reads(synced: Sync) -> None:
    synced.close()
    config = synced.config
    store = create_db_engine(config.store)
    try:
        for table, read, column in (
            (users, iter_users, "user_id"),
            (accounts, iter_accounts, "account_id"),
        ):
            whole = [_key(r) for r in read(store)]
            shards = split_key_space(store, table.c[column], 3)
            assert shards[0].start is None
            assert shards[-1].stop is None
            assert 2 <= len(shards) <= 3
            parts = [[_key(r) for r in read(store, keys=s, chunk_size=2)] for s in shards]
            assert [k for part in parts for k in part] == whole  # in order, each key once
            assert all(parts)  # cuts are at existing keys: no shard is empty
        marks, records = MarkStore(store), RecordState(store)
        streams = {
            "u05": lambda keys: [(m.user_id, m.account_id) for m in marks.iter_marks(keys=keys)],
            "INITECH": lambda keys: [m.account_id for m in marks.iter_account_marks(keys=keys)],
            "u07": lambda keys: [r.key for r in records.iter_records("crm", "contacts", keys=keys)],
        }
        for cut, stream in streams.items():
            whole_stream, below, above = (
                stream(k) for k in (ALL_KEYS, KeyRange(None, cut), KeyRange(cut, None))
            )
            assert below
            assert above
            assert below + above == whole_stream
    finally:
        store.dispose()


def _key(record: UserWithMemberships | AccountWithMembers) -> str:
    if isinstance(record, UserWithMemberships):
        return record.user.user_id
    return record.account.account_id


# --- what is refused before anything is written -------------------------------------------------


@pytest.mark.parametrize("command", ["plan", "run"])
def test_a_running_cluster_with_a_sqlite_state_is_refused(
    cli: Callable[..., tuple[int, str, str]], memory_config: Path, command: str
) -> None:
    code, out, err = cli(
        command, "-c", str(memory_config), "-d", "crm", "--cluster", "tcp://127.0.0.1:1"
    )
    assert code == 2
    assert "SQLite" in err
    assert "PostgreSQL" in err
    assert "--cluster" in err
    assert out == ""
    store = create_db_engine(f"sqlite:///{memory_config.parent / 'store.db'}")
    try:
        with store.connect() as conn:
            tables = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master"))}
            if "sync_runs" in tables:
                assert conn.execute(select(sync_runs)).all() == []
                assert conn.execute(select(sync_locks)).all() == []
    finally:
        store.dispose()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cluster", "local:0"], "local:N"),
        (["--cluster", "dask://x"], "tcp://HOST:PORT"),
        (["--cluster", "local:2", "--workers", "2"], "not both"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_a_cluster_option_that_names_no_cluster_is_a_usage_error(
    cli: Callable[..., tuple[int, str, str]], memory_config: Path, args: list[str], message: str
) -> None:
    code, _, err = cli("plan", "-c", str(memory_config), "-d", "crm", *args)
    assert code == 2
    assert message in err


def test_without_the_dask_extra_a_cluster_run_says_what_to_install(
    memory_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import syncer.engine

    monkeypatch.delitem(sys.modules, "syncer.engine.cluster", raising=False)
    monkeypatch.delattr(syncer.engine, "cluster", raising=False)
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed: not found
    with Sync(load_config(memory_config)) as sync, pytest.raises(ConfigError) as caught:
        sync.plan("crm", cluster="local:2")
    assert "pip install 'syncer[dask]'" in str(caught.value)


# --- runs ---------------------------------------------------------------------------------------


def _active_links(sync: Sync) -> list[tuple[str, str]]:
    """(user, account) of every active membership: the links HubSpot should hold."""
    m = memberships.c
    with sync.store.connect() as conn:
        rows = conn.execute(select(m.user_id, m.account_id).where(m.stage != "churned")).all()
    return [(r[0], r[1]) for r in rows]


@pytest.mark.slow  # two LocalClusters start: 20-40 s on this shared machine
def test_a_run_on_local_workers_leaves_hubspot_as_one_process_does(tmp_path: Path) -> None:
    store_url = examples_store(f"sqlite:///{tmp_path / 'store.db'}")
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
    store_url = examples_store(f"sqlite:///{tmp_path / 'store.db'}", extra_users=250)
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
    store_url = examples_store(f"sqlite:///{tmp_path / 'store.db'}", extra_users=600)
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
