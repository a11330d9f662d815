"""Scale-out on Dask, plans: key-range partitions planned on Dask workers give the plan of one
process; a ``--cluster`` that cannot work is refused before anything is written.

The runs are in ``test_cluster.py`` (a ``LocalCluster``) and ``test_cluster_scheduler.py`` (a
real ``dask scheduler`` and two ``dask worker`` processes).
"""

from __future__ import annotations

import json
import pickle
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, select, text, update

from syncer.config import load_config
from syncer.db import ALL_KEYS, KeyRange, create_db_engine, split_key_space
from syncer.engine import PlanReport, Sync
from syncer.engine.cluster import DaskPool, _WorkerSync, plan_on_cluster
from syncer.engine.coordinator import ClusterSpec, partitions
from syncer.engine.incremental import read_scope
from syncer.engine.partitions import PartitionJob, plan_partition
from syncer.errors import BadInputError, ConfigError
from syncer.model import AccountWithMembers, UserWithMemberships
from syncer.state.marks import MarkStore
from syncer.state.records import RecordState
from syncer.state.schema import sync_locks, sync_runs
from syncer.store.readers import iter_accounts, iter_users
from syncer.store.schema import accounts, memberships, users
from syncer.testing.memory import MemoryConnector, MemoryStore


def _summary(report: PlanReport) -> list[tuple[str, dict[str, int], list[tuple[str, str]]]]:
    return [
        (o.object, o.counts.as_dict(), [(c.key, c.action) for c in o.samples])
        for o in report.objects
    ]


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


def test_an_incremental_job_carries_the_part_of_the_forest_its_scope_read(
    synced: Sync, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each worker of an incremental plan or run resolves against the part of the account
    forest the coordinator read after it took the feed position, sent with the job, instead of
    reading the whole forest; a full run's workers read the whole forest themselves."""
    with synced as sync:
        dest = sync.destination("crm")
        companies = next(o for o in dest.mapping.objects if o.source == "accounts")
        full_job = PartitionJob.of(sync, dest.name, read_scope(sync, dest, full=True))
        whole = len(sync.hierarchy)
        scope = read_scope(sync, dest)
        job = PartitionJob.of(sync, dest.name, scope)
        here = plan_partition(sync, job, companies.name, scope.keys_for(companies), samples=50,
                              explain=None)  # fmt: skip
    assert full_job.hierarchy is None
    assert scope.incremental
    assert job.hierarchy is not None
    assert 0 < len(job.hierarchy) < whole  # the part the changed keys need, not the forest

    def whole_forest(*args: object, **kwargs: object) -> object:
        raise AssertionError("a worker of an incremental job read the whole forest")

    monkeypatch.setattr("syncer.engine.sync.iter_all_accounts", whole_forest)
    with pickle.loads(pickle.dumps(job)).open() as worker:  # as a worker gets it
        assert len(worker.hierarchy) == len(job.hierarchy)
        there = plan_partition(
            worker, job, companies.name, scope.keys_for(companies), samples=50, explain=None
        )
    assert (there.counts.as_dict(), [(c.key, c.action) for c in there.samples]) == (
        here.counts.as_dict(),
        [(c.key, c.action) for c in here.samples],
    )
    assert sum(here.counts.as_dict().values()) > 0


def test_a_worker_reads_the_forest_once_its_job_is_registered_before_any_partition(
    synced: Sync,
) -> None:
    """The plugin of a full plan builds the worker's Sync and reads the whole forest as it is
    registered (while the coordinator still cuts partitions); the partitions then use that
    Sync and forest, not one of their own."""
    with synced as sync:
        dest = sync.destination("crm")
        job = PartitionJob.of(sync, dest.name, read_scope(sync, dest, full=True))
        whole = len(sync.hierarchy)
    plugin = _WorkerSync(pickle.loads(pickle.dumps(job)))
    plugin.setup(worker=None)
    plugin._warming.join(timeout=60)
    try:
        assert not plugin._warming.is_alive()
        warmed = plugin._sync
        assert warmed is not None
        assert warmed._hierarchy is not None
        assert len(warmed._hierarchy) == whole
        assert plugin.sync() is warmed
    finally:
        plugin.teardown(worker=None)


def test_a_forest_the_warm_up_could_not_read_fails_the_first_partition_with_its_error(
    synced: Sync, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure while a worker warms up is not lost: the first partition reads the forest
    again and raises the error itself, as it would have without the warm-up."""
    with synced as sync:
        dest = sync.destination("crm")
        scope = read_scope(sync, dest, full=True)
        job = PartitionJob.of(sync, dest.name, scope)
        companies = next(o for o in dest.mapping.objects if o.source == "accounts")

    def unreadable(*args: object, **kwargs: object) -> object:
        raise BadInputError("accounts row 'A1': attributes is not a JSON object")

    monkeypatch.setattr("syncer.engine.sync.iter_all_accounts", unreadable)
    plugin = _WorkerSync(job)
    plugin.setup(worker=None)
    plugin._warming.join(timeout=60)
    try:
        with pytest.raises(BadInputError, match="attributes is not a JSON object"):
            plan_partition(plugin.sync(), job, companies.name, KeyRange(), samples=0,
                           explain=None)  # fmt: skip
    finally:
        plugin.teardown(worker=None)
