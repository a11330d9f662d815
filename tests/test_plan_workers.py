"""A plan split over worker processes by key range equals the plan of one process.

Key ranges partition every key space the plan reads (store readers, policy marks, sync records),
so each key is planned in exactly one shard, removals included; counts add up and samples are
taken in key order as one process would take them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import delete, update

from syncer.config import load_config
from syncer.db import ALL_KEYS, KeyRange, create_db_engine, split_key_space
from syncer.engine import PlanReport, Sync
from syncer.model import AccountWithMembers, UserWithMemberships
from syncer.state.marks import MarkStore
from syncer.state.records import RecordState
from syncer.store.readers import iter_accounts, iter_users
from syncer.store.schema import accounts, memberships, users
from syncer.testing.memory import MemoryConnector, MemoryStore

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def synced(tmp_path: Path, store_url: str, memory_sync: Callable[..., Sync]) -> Path:
    """The examples/ store synced once to a memory destination, then changed: a user left the
    store (a removal), a stage rose (an update), a user was added (a create). Returns the
    config file ``memory_sync`` wrote (worker processes load it themselves)."""
    with memory_sync(removal="clear") as sync:
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
    return tmp_path / "syncer.yaml"


def _summary(report: PlanReport) -> list[tuple[str, dict[str, int], list[tuple[str, str]]]]:
    return [
        (o.object, o.counts.as_dict(), [(c.key, c.action) for c in o.samples])
        for o in report.objects
    ]


@pytest.mark.parametrize("workers", [2, 3])
def test_a_plan_over_worker_processes_equals_the_plan_of_one(synced: Path, workers: int) -> None:
    with Sync(load_config(synced)) as sync:
        # Full plans: an incremental one (after a run) reads little and plans in one process.
        one = sync.plan("crm", samples=50, full=True)
        many = sync.plan("crm", samples=50, workers=workers, full=True)
        some = sync.plan("crm", samples=2, workers=workers, full=True)
    assert _summary(many) == _summary(one)
    totals = one.totals()
    assert totals["remove"] == 1
    assert totals["create"] == 1
    assert totals["update"] >= 1
    assert totals["unchanged"] > 0
    # Samples are the first ones in key order, whichever shard they came from.
    assert _summary(some) == [(obj, counts, samples[:2]) for obj, counts, samples in _summary(one)]


def test_explained_keys_come_from_their_own_shards(synced: Path) -> None:
    with Sync(load_config(synced)) as sync:
        report = sync.plan("crm", keys=["u01", "u99", "ACME"], workers=2)
    found = {(o.object, c.key) for o in report.objects for c in o.samples}
    assert found == {("contacts", "u01"), ("contacts", "u99"), ("companies", "ACME")}


def test_key_ranges_partition_every_stream_the_plan_reads(synced: Path) -> None:
    config = load_config(synced)
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


def test_workers_must_be_at_least_one(synced: Path) -> None:
    with Sync(load_config(synced)) as sync, pytest.raises(ValueError, match="at least 1"):
        sync.plan("crm", workers=0)
