"""Sync state on SQLite and PostgreSQL: leases, records, failures, runs, hashing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from syncer.errors import LeaseHeldError
from syncer.state import (
    Ack,
    FailureLog,
    RecordState,
    Rejection,
    RunLog,
    acquire,
    current_lease,
    init_state,
    payload_hash,
)


@pytest.fixture
def state(db_url: str) -> Iterator[Engine]:
    engine = init_state(db_url)
    yield engine
    engine.dispose()


def test_a_second_run_on_the_same_destination_fails_clearly(state: Engine) -> None:
    first = acquire(state, "hubspot", "run-1", ttl_seconds=60)
    with pytest.raises(LeaseHeldError) as caught:
        acquire(state, "hubspot", "run-2", ttl_seconds=60, wait_seconds=0.3, poll_seconds=0.05)
    assert "run-1" in str(caught.value)
    acquire(state, "salesforce", "run-2", ttl_seconds=60).release()  # another destination: free
    first.release()
    acquire(state, "hubspot", "run-2", ttl_seconds=60).release()


def test_an_expired_lease_can_be_taken_over(state: Engine) -> None:
    acquire(state, "hubspot", "crashed-run", ttl_seconds=0.2)
    time.sleep(0.4)
    lease = acquire(state, "hubspot", "run-2", ttl_seconds=60)
    info = current_lease(state, "hubspot")
    assert info is not None
    assert info.holder == "run-2"
    lease.release()


def test_only_one_of_racing_runs_gets_the_lease(state: Engine) -> None:
    winners: list[str] = []
    losers: list[str] = []

    def race(name: str) -> None:
        try:
            acquire(state, "hubspot", name, ttl_seconds=60)
            winners.append(name)
        except LeaseHeldError:
            losers.append(name)

    threads = [threading.Thread(target=race, args=(f"run-{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert len(losers) == 5


def test_records_commit_acks_and_stream_in_code_point_order(state: Engine) -> None:
    records = RecordState(state, page_size=2)
    keys = ["b", "B", "a", "é", "_", "10", "9"]
    records.commit_acknowledged(
        "crm", "contacts", [Ack(k, {"k": k}, f"r{k}") for k in keys], "run-1"
    )
    assert [r.key for r in records.iter_records("crm", "contacts")] == sorted(keys)
    # An update that does not echo the remote id keeps the known one.
    records.commit_acknowledged("crm", "contacts", [Ack("a", {"k": "A"})], "run-2")
    [a] = records.get_many("crm", "contacts", ["a"]).values()
    assert (a.remote_id, a.payload, a.run_id) == ("ra", {"k": "A"}, "run-2")
    assert records.count("crm") == len(keys)


def test_a_record_refused_too_often_is_set_aside_until_retried(state: Engine) -> None:
    failures = FailureLog(state)
    for attempt in range(3):
        aside = failures.record_rejections(
            "crm", "contacts", [Rejection("u1", "bad email", "email", "h1")], f"r{attempt}", 3
        )
    assert aside == ["u1"]
    assert failures.set_aside_keys("crm", "contacts") == {"u1": "h1"}
    assert failures.retry("crm") == 1
    assert failures.set_aside_keys("crm", "contacts") == {}
    assert failures.clear("crm", "contacts", ["u1"]) == 1


def test_runs_record_counts_and_status(state: Engine) -> None:
    runs = RunLog(state)
    run_id = runs.start_run("crm", dry_run=False)
    runs.finish_run(run_id, "succeeded", {"sent": 3})
    [info] = runs.last_runs("crm")
    assert (info.status, dict(info.counts)) == ("succeeded", {"sent": 3})


scalars = st.one_of(st.none(), st.text(max_size=8), st.integers(-1000, 1000))


@given(st.dictionaries(st.text(max_size=5), scalars, max_size=6))
def test_the_hash_ignores_key_order(payload: dict[str, object]) -> None:
    reordered = dict(reversed(list(payload.items())))
    assert payload_hash(payload) == payload_hash(reordered)


def test_the_hash_normalises_numbers_and_unicode_but_not_values() -> None:
    assert payload_hash({"n": 1}) == payload_hash({"n": Decimal("1.00")})
    assert payload_hash({"s": "Caf\u00e9"}) == payload_hash({"s": "Cafe\u0301"})  # NFC vs NFD
    assert payload_hash({"s": "a"}) != payload_hash({"s": "b"})
    assert payload_hash({"s": None}) != payload_hash({"s": ""})
