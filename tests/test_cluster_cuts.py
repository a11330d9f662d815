"""Scale-out on Dask, the coordinator's share of a plan: key ranges cut at about equal cost,
the account forest counted (not read) by a coordinator whose workers resolve, and a local
cluster started in the background while the partitions are cut."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import pairwise

import psutil
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert
from sqlalchemy.engine import Engine

from syncer.db import KeyRange, create_db_engine, split_key_space, split_keys
from syncer.engine import Sync
from syncer.engine.cluster import DaskPool
from syncer.engine.coordinator import ClusterSpec
from syncer.engine.incremental import read_scope
from syncer.policies.hierarchy import Hierarchy


def _cost(rows: dict[str, int], part: KeyRange, per_key: float) -> float:
    return sum(
        n + per_key
        for key, n in rows.items()
        if (part.start is None or key >= part.start) and (part.stop is None or key < part.stop)
    )


#: One key of many rows (a large account's members) among keys of one row each.
ROWS = {chr(ord("a") + i): 1 for i in range(20)} | {"b": 30}


@pytest.fixture
def members(db_url: str) -> Iterator[tuple[Engine, Table]]:
    table = Table(
        "members", MetaData(), Column("key", String(8), primary_key=True),
        Column("n", Integer, primary_key=True),
    )  # fmt: skip
    engine = create_db_engine(db_url)
    try:
        table.create(engine)
        with engine.begin() as conn:
            conn.execute(
                insert(table), [{"key": k, "n": i} for k, n in ROWS.items() for i in range(n)]
            )
        yield engine, table
    finally:
        engine.dispose()


def test_weighted_cuts_even_the_cost_of_keys_and_their_rows(
    members: tuple[Engine, Table],
) -> None:
    engine, table = members
    parts = split_key_space(engine, table.c.key, 4, per_key=2)
    by_rows = split_key_space(engine, table.c.key, 4)
    for cut in (parts, by_rows):
        assert cut[0].start is None
        assert cut[-1].stop is None
        assert all(a.stop == b.start for a, b in pairwise(cut))
    costs = [_cost(ROWS, p, 2) for p in parts]
    assert sum(costs) == sum(ROWS.values()) + 2 * len(ROWS)
    # The large key's range costs what it costs; what is left is shared evenly (to one key's
    # cost, 3) by the ranges after it, none of them left small.
    assert costs[0] >= 32
    assert len(parts) == 4
    assert max(costs[1:]) - min(costs[1:]) <= 3
    # Cut by rows only (the cut by default), the large key's rows fill two of four ranges:
    # one range fewer.
    assert [p.start for p in by_rows] == [None, "b", "h"]


def test_a_key_set_is_cut_where_its_keys_rows_even_out(members: tuple[Engine, Table]) -> None:
    """An incremental run's accounts: a slice of equal length would hand the large key and
    its neighbours to one worker. Keys without rows cost ``per_key`` alone."""
    engine, table = members
    keys = ["a", "b", "c", "d", "e", "f", "g", "h", "zz1", "zz2"]  # zz*: no rows
    cuts = split_keys(engine, table.c.key, keys, 3, per_key=2)
    slices = [keys[a:b] for a, b in pairwise([0, *cuts, len(keys)])]
    cost = [sum(ROWS.get(k, 0) + 2 for k in part) for part in slices]
    assert [k for part in slices for k in part] == keys  # each key once, in order
    assert slices[0] == ["a", "b"]  # the large key ends the first slice
    assert cost == [35, 12, 10]  # what is left after the large key, shared to one key
    assert split_keys(engine, table.c.key, keys, 1) == []
    assert split_keys(engine, table.c.key, [], 3) == []
    with pytest.raises(ValueError, match="at least 1"):
        split_keys(engine, table.c.key, keys, 0)


def test_a_coordinator_that_resolves_nothing_counts_the_forest_without_reading_it(
    memory_sync: Callable[..., Sync], monkeypatch: pytest.MonkeyPatch
) -> None:
    with memory_sync() as sync:
        dest = sync.destination("crm")
        read_here = read_scope(sync, dest, full=True).read.extra["hierarchy"]
        built: list[object] = []
        original = Hierarchy.from_accounts.__func__  # type: ignore[attr-defined]

        def counted(cls: type[Hierarchy], *args: object, **kwargs: object) -> Hierarchy:
            built.append(args)
            return original(cls, *args, **kwargs)  # type: ignore[no-any-return]

        monkeypatch.setattr(Hierarchy, "from_accounts", classmethod(counted))
        counted_only = read_scope(sync, dest, full=True, resolves=False).read.extra["hierarchy"]
        assert built == []
        assert counted_only == read_here > 0
        sync.plan("crm", full=True)  # resolving here reads it, when first needed
        assert len(built) == 1


def _workers() -> set[int]:
    return {
        p.pid
        for p in psutil.Process().children(recursive=True)
        if "spawn_main" in " ".join(p.cmdline())
    }


def test_a_local_cluster_starts_in_the_background_and_closes_even_unused() -> None:
    before = _workers()
    pool = DaskPool(ClusterSpec.parse("local:1"))
    pool.start()
    assert pool.threads() == 1  # known before the workers are up: the cuts need not wait
    pool.close()  # waits for the start, then closes what started
    assert _workers() == before
    with DaskPool(ClusterSpec.parse("local:1")) as used:
        used.start()
        assert sum(used.client.nthreads().values()) == 1
    assert _workers() == before
