"""Sync state on SQLite and PostgreSQL: leases, records, failures, runs, hashing."""

from __future__ import annotations

import threading
import time
import unicodedata
from collections.abc import Iterator
from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from syncer.errors import LeaseHeldError, LeaseLostError
from syncer.fields import FieldSpec, FieldType, format_field
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


def test_a_second_run_that_waits_gets_the_lease_when_the_first_ends(state: Engine) -> None:
    first = acquire(state, "hubspot", "run-1", ttl_seconds=60)
    releaser = threading.Timer(0.3, first.release)
    releaser.start()
    started = time.monotonic()
    second = acquire(state, "hubspot", "run-2", ttl_seconds=60, wait_seconds=10, poll_seconds=0.05)
    waited = time.monotonic() - started
    releaser.join()
    info = current_lease(state, "hubspot")
    assert info is not None
    assert info.holder == "run-2"
    assert 0.2 < waited < 5
    second.release()


def test_a_lease_taken_over_after_expiry_stops_the_old_holder(state: Engine) -> None:
    stale = acquire(state, "hubspot", "slow-run", ttl_seconds=0.2)
    time.sleep(0.4)
    fresh = acquire(state, "hubspot", "run-2", ttl_seconds=60)
    with pytest.raises(LeaseLostError) as caught:
        stale.renew()
    assert "run-2" in str(caught.value)
    stale.release()  # not ours any more: must not drop run-2's lease
    info = current_lease(state, "hubspot")
    assert info is not None
    assert info.holder == "run-2"
    fresh.release()


def test_a_lease_is_renewed_by_its_holder(state: Engine) -> None:
    lease = acquire(state, "hubspot", "run-1", ttl_seconds=1)
    before = lease.expires_at
    time.sleep(0.05)
    lease.renew(ttl_seconds=120)
    assert lease.expires_at > before
    with pytest.raises(LeaseHeldError):
        acquire(state, "hubspot", "run-2", ttl_seconds=60)
    lease.release()


def test_retry_puts_back_only_set_aside_records(state: Engine) -> None:
    failures = FailureLog(state)
    for attempt in range(2):
        failures.record_rejections(
            "crm", "contacts", [Rejection("dead", "bad email", "email", "h1")], f"r{attempt}", 2
        )
    failures.record_rejections("crm", "contacts", [Rejection("pending", "locked")], "r2", 5)
    assert failures.set_aside_keys("crm", "contacts") == {"dead": "h1"}
    # Retrying everything set aside does not touch a record still waiting for its next run.
    assert failures.retry("crm") == 1
    assert {f.key: (f.attempts, f.set_aside) for f in failures.iter_failures("crm")} == {
        "dead": (0, False),
        "pending": (1, False),
    }
    assert failures.keys_to_retry("crm", "contacts") == {"dead", "pending"}
    assert failures.retry("crm", ["pending"]) == 0


def test_records_keep_the_acknowledged_payload_its_hash_and_removal(state: Engine) -> None:
    records = RecordState(state)
    payload = {"uid": "u1", "accounts": ";34xcus;", "phone": None}
    records.commit_acknowledged("crm", "contacts", [Ack("u1", payload, "101")], "run-1")
    [stored] = records.iter_records("crm", "contacts")
    assert stored.payload == payload
    assert stored.payload_hash == payload_hash(payload)
    assert (stored.remote_id, stored.run_id, stored.removed) == ("101", "run-1", False)
    assert stored.synced_at is not None
    assert stored.synced_at.tzinfo is not None
    assert records.mark_removed("crm", "contacts", ["u1"], "run-2") == 1
    [gone] = records.iter_records("crm", "contacts")
    assert (gone.removed, gone.payload) == (True, payload)
    assert records.forget("crm", "contacts", ["u1"]) == 1
    assert list(records.iter_records("crm", "contacts")) == []


# --- canonical hashing: how a value is written never changes the hash, what it is always does ---

_nfd = st.text(alphabet="aeiouAEIOU\u0301\u0308\u0327ñçé日本", max_size=6)
numbers = st.one_of(
    st.integers(-(10**30), 10**30),
    st.decimals(allow_nan=False, allow_infinity=False, places=None),
    st.floats(allow_nan=False, allow_infinity=False),
)


def _spellings(value: Decimal) -> list[object]:
    """The same number written as int, float, Decimal with trailing zeros, exponent forms."""
    out: list[object] = [value, value.normalize(), Decimal(f"{value:E}"), value * Decimal("1.000")]
    if value == value.to_integral_value() and abs(value) < 10**30:
        out.append(int(value))
    as_float = float(value)
    if Decimal(repr(as_float)) == value:
        out.append(as_float)
    return out


@given(numbers)
def test_the_hash_of_a_number_ignores_how_it_is_written(number: int | float | Decimal) -> None:
    with localcontext(prec=400):  # exact arithmetic for the spellings and the neighbour
        value = Decimal(repr(number)) if isinstance(number, float) else Decimal(number)
        digests = {payload_hash({"n": spelling}) for spelling in _spellings(value)}
        neighbour = value + 1 if abs(value) < 10**300 else value * 2 + 1
    assert len(digests) == 1
    assert payload_hash({"n": value}) != payload_hash({"n": neighbour})
    assert payload_hash({"n": value}) != payload_hash({"n": str(value)})


@given(st.dictionaries(_nfd, st.one_of(st.none(), _nfd), max_size=5))
def test_the_hash_ignores_unicode_normal_form_of_keys_and_values(
    payload: dict[str, str | None],
) -> None:
    nfc = {unicodedata.normalize("NFC", k): v for k, v in payload.items()}
    if len(nfc) < len(payload):
        return  # two keys that are one field after normalisation: an error, tested below
    for form in ("NFC", "NFD"):
        other = {
            unicodedata.normalize(form, k): None if v is None else unicodedata.normalize(form, v)
            for k, v in reversed(list(payload.items()))
        }
        assert payload_hash(other) == payload_hash(payload)


def test_keys_equal_after_normalisation_are_an_error() -> None:
    with pytest.raises(ValueError, match="same field"):
        payload_hash({"Caf\u00e9": "1", "Cafe\u0301": "2"})


@given(st.dictionaries(st.text(max_size=5), scalars, min_size=1, max_size=6), st.data())
def test_a_changed_value_changes_the_hash(payload: dict[str, object], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(payload)))
    old = payload[key]
    new = data.draw(scalars.filter(lambda v: type(v) is not type(old) or v != old))
    changed = {**payload, key: new}
    nfc = unicodedata.normalize
    if type(new) is type(old) and nfc("NFC", str(new)) == nfc("NFC", str(old)):
        return  # the same text in another normal form: equal by design
    assert payload_hash(changed) != payload_hash(payload)
    assert payload_hash({k: v for k, v in payload.items() if k != key}) != payload_hash(payload)


@pytest.mark.parametrize("written", [1500, 1500.0, Decimal("1500.00"), "1500", "1.5e3", " 1500.0 "])
def test_a_source_number_written_differently_plans_the_same_payload(written: object) -> None:
    # What reaches the hash is the formatter's text, so the source's spelling cannot show through.
    spec = FieldSpec("syncer_contract_value", FieldType.NUMBER)
    assert format_field(spec, written) == {"syncer_contract_value": "1500"}
    assert payload_hash(format_field(spec, written)) == payload_hash(format_field(spec, 1500))
