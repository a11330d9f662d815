"""The apply loop: batching, retries, bisection, acknowledged-only results, crash and resume."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from syncer.connectors.base import (
    AssociationChange,
    AssociationResult,
    RateLimit,
    WriteRecord,
    WriteResult,
)
from syncer.engine.operations import apply_records, archive_records, associate_changes
from syncer.engine.pipeline import NO_RESULT, ApplyStats, batches
from syncer.errors import ConfigError, FatalError, RecordRejected
from syncer.ratelimit import RateLimiter
from syncer.retry import RetryPolicy
from syncer.testing.memory import FakeClock, MemoryConfig, MemoryConnector, MemoryStore


def make_records(n: int, *, version: int = 1, prefix: str = "u") -> list[WriteRecord]:
    out = []
    for i in range(n):
        key = f"{prefix}{i:04d}"
        payload = {"email": f"{key}@example.com", "note": f"version {version}"}
        out.append(WriteRecord(key, payload, payload))
    return out


class Delivered:
    """What the engine's ``on_results`` saw, batch by batch."""

    def __init__(self) -> None:
        self.batches: list[list[WriteResult]] = []

    def __call__(self, results: Sequence[WriteResult]) -> None:
        self.batches.append(list(results))

    @property
    def results(self) -> list[WriteResult]:
        return [r for batch in self.batches for r in batch]

    @property
    def rejected(self) -> dict[str, WriteResult]:
        return {r.key: r for r in self.results if not r.ok}


def run(
    connector: MemoryConnector,
    records: Sequence[WriteRecord] | Iterator[WriteRecord],
    *,
    limiter: RateLimiter | None = None,
    retry: RetryPolicy | None = None,
    concurrency: int = 1,
) -> tuple[ApplyStats, Delivered]:
    delivered = Delivered()
    stats = apply_records(
        connector,
        "contacts",
        records,
        on_results=delivered,
        limiter=limiter or RateLimiter(None),
        retry=retry or RetryPolicy.no_wait(),
        concurrency=concurrency,
    )
    return stats, delivered


# --- batching -------------------------------------------------------------------------------


def test_batches_hold_at_most_the_connector_s_max_batch() -> None:
    connector = MemoryConnector.configured(max_batch=7)()
    stats, delivered = run(connector, make_records(100))
    assert [c.size for c in connector.calls] == [7] * 14 + [2]
    assert [len(b) for b in delivered.batches] == [7] * 14 + [2]
    assert stats.records_sent == stats.acknowledged == 100
    assert stats.requests == 15


def test_results_reach_on_results_in_input_order_although_the_destination_shuffles() -> None:
    connector = MemoryConnector()
    records = make_records(50)
    _, delivered = run(connector, records)
    assert [r.key for r in delivered.results] == [r.key for r in records]


def test_a_repeated_key_goes_to_a_later_batch_and_the_last_version_wins() -> None:
    connector = MemoryConnector()
    v1, v2, v3 = (make_records(1, version=v)[0] for v in (1, 2, 3))
    other = make_records(2)[1]
    _, delivered = run(connector, [v1, other, v2, v3])
    assert [c.keys for c in connector.calls] == [("u0000", "u0001"), ("u0000",), ("u0000",)]
    assert connector.store.records["contacts"]["u0000"].fields["note"] == "version 3"
    assert len(delivered.batches) == 3


@settings(max_examples=200, deadline=None)
@given(
    keys=st.lists(st.sampled_from("abcdefgh"), max_size=60),
    size=st.integers(1, 9),
)
def test_batching_keeps_every_record_once_keys_unique_and_versions_in_order(
    keys: list[str], size: int
) -> None:
    items = list(enumerate(keys))  # (position, key)
    out = list(batches(items, size, key=lambda item: item[1]))
    assert sorted(i for batch in out for i in batch) == items
    for batch in out:
        assert 1 <= len(batch) <= size
        assert len({k for _, k in batch}) == len(batch)
    order = [i for batch in out for i in batch]
    for key in set(keys):
        positions = [p for p, k in order if k == key]
        assert positions == sorted(positions)


def test_the_input_is_streamed_not_read_whole() -> None:
    connector = MemoryConnector.configured(max_batch=10)()
    pulled = 0
    pulled_at_first_delivery: list[int] = []

    def source() -> Iterator[WriteRecord]:
        nonlocal pulled
        for record in make_records(1000):
            pulled += 1
            yield record

    def on_results(_results: Sequence[WriteResult]) -> None:
        pulled_at_first_delivery.append(pulled)

    apply_records(
        connector,
        "contacts",
        source(),
        on_results=on_results,
        limiter=RateLimiter(None),
        retry=RetryPolicy.no_wait(),
    )
    assert pulled_at_first_delivery[0] == 10
    assert pulled == 1000


# --- retries ----------------------------------------------------------------------------------


def test_transient_failures_are_retried_and_counted() -> None:
    connector = MemoryConnector.configured(max_batch=10)(MemoryConfig(retriable_rate=0.3, seed=5))
    stats, delivered = run(connector, make_records(200))
    failures = sum(1 for c in connector.calls if c.outcome == "retriable")
    assert failures > 0
    assert stats.retries == failures
    assert stats.requests == len(connector.calls) == 20 + failures
    assert len(delivered.results) == 200
    assert all(r.ok for r in delivered.results)


def test_an_unknown_exception_is_not_retried() -> None:
    connector = MemoryConnector(MemoryConfig(crash_after_batches=0))
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(connector, make_records(10))
    assert len(connector.calls) == 1


def test_a_429_storm_lands_every_record() -> None:
    connector = MemoryConnector.configured(max_batch=10)(MemoryConfig(retriable_rate=0.6, seed=11))
    stats, delivered = run(connector, make_records(500), retry=RetryPolicy.no_wait(40))
    assert stats.retries > 50
    assert {r.key for r in delivered.results if r.ok} == {f"u{i:04d}" for i in range(500)}
    assert connector.store.count("contacts") == 500


def test_a_server_side_rate_limit_storm_is_waited_out_and_every_record_lands() -> None:
    clock = FakeClock()
    connector = MemoryConnector.configured(max_batch=10)(
        MemoryConfig(server_requests=5, server_per_seconds=1.0), clock=clock
    )
    # No declared limit and a limiter that learns only from 429s and headers.
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    retry = RetryPolicy(sleep=clock.sleep, clock=clock)
    stats, delivered = run(connector, make_records(300), limiter=limiter, retry=retry)
    assert len([r for r in delivered.results if r.ok]) == 300
    # The headers taught the limiter the destination's limit, so 429s stop after the first.
    assert limiter.limit == RateLimit(5, 1.0)
    assert sum(1 for c in connector.calls if c.outcome == "rate_limited") <= 1
    assert stats.requests == 30 + stats.retries


def test_retry_after_is_honoured_by_every_request() -> None:
    clock = FakeClock()
    connector = MemoryConnector.configured(max_batch=10)(
        MemoryConfig(retriable_rate=0.4, retry_after=7.0, seed=2), clock=clock
    )
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    retry = RetryPolicy(sleep=clock.sleep, clock=clock)
    stats, _ = run(connector, make_records(100), limiter=limiter, retry=retry)
    assert stats.retries > 0
    # Each failed call is followed by the next call at least 7 s later, never sooner.
    for failed, following in zip(connector.calls, connector.calls[1:], strict=False):
        if failed.outcome == "retriable":
            assert following.at - failed.at >= 7.0
    assert clock.slept == pytest.approx(7.0 * stats.retries)


# --- bisection --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [["u0042"], ["u0003", "u0077"], ["u0000", "u0099"]])
def test_bisection_isolates_the_bad_records_of_a_batch_of_100(bad: list[str]) -> None:
    connector = MemoryConnector(MemoryConfig(reject_batch_keys=frozenset(bad)))
    stats, delivered = run(connector, make_records(100))
    assert set(delivered.rejected) == set(bad)
    for key in bad:
        reason = delivered.rejected[key].rejected or ""
        assert "HTTP 400" in reason
        assert f"record {key!r} is invalid" in reason
    landed = [r for r in delivered.results if r.ok]
    assert len(landed) == 100 - len(bad)
    assert all(r.remote_id for r in landed)
    # O(log n) extra requests per bad record: two halves per level of a depth-7 split.
    assert stats.requests <= 1 + 2 * len(bad) * math.ceil(math.log2(100))
    assert stats.bisections >= math.ceil(math.log2(100))
    assert stats.rejected == len(bad)


def test_bisected_halves_are_reported_as_soon_as_they_are_acknowledged() -> None:
    connector = MemoryConnector(MemoryConfig(reject_batch_keys=frozenset({"u0099"})))
    _, delivered = run(connector, make_records(100))
    assert len(delivered.batches[0]) == 50  # the good first half, before the rest is bisected
    assert sum(len(b) for b in delivered.batches) == 100


def test_a_record_refused_inside_an_accepted_batch_is_reported_and_the_rest_land() -> None:
    connector = MemoryConnector(MemoryConfig(reject_keys=frozenset({"u0005"})))
    stats, delivered = run(connector, make_records(20))
    assert list(delivered.rejected) == ["u0005"]
    assert stats.requests == 1
    assert stats.acknowledged == 19


def test_a_connector_raising_record_rejected_gets_the_others_sent_again() -> None:
    class RaisingConnector(MemoryConnector):
        def write(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
            if any(r.key == "u0002" for r in batch):
                raise RecordRejected("u0002", "INVALID_EMAIL_ADDRESS", field="email")
            return super().write(object_name, batch)

    connector = RaisingConnector()
    _, delivered = run(connector, make_records(5))
    assert delivered.rejected["u0002"].field == "email"
    assert len([r for r in delivered.results if r.ok]) == 4


# --- the connector's answer is checked ---------------------------------------------------------


class DroppingConnector(MemoryConnector):
    def write(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
        return sorted(super().write(object_name, batch), key=lambda r: r.key)[1:]


class InventingConnector(MemoryConnector):
    def write(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
        return [*super().write(object_name, batch), WriteResult("ghost", remote_id="x")]


class RepeatingConnector(MemoryConnector):
    def write(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
        results = sorted(super().write(object_name, batch), key=lambda r: r.key)
        return [results[0], *results]


@pytest.mark.parametrize(
    ("connector_cls", "message"),
    [
        (InventingConnector, "returned a result for key 'ghost', not sent"),
        (RepeatingConnector, "returned two results for key 'u0000'"),
    ],
)
def test_a_result_for_a_key_not_sent_is_a_fatal_error_naming_the_connector(
    connector_cls: type[MemoryConnector], message: str
) -> None:
    delivered = Delivered()
    with pytest.raises(FatalError, match=message) as exc:
        apply_records(
            connector_cls(),
            "contacts",
            make_records(3),
            on_results=delivered,
            limiter=RateLimiter(None),
            retry=RetryPolicy.no_wait(),
        )
    assert "connector 'memory'" in str(exc.value)
    assert "bug in the connector" in str(exc.value)
    assert delivered.results == []  # nothing of that batch reaches the state


def test_a_sent_key_without_a_result_is_answered_as_refused_no_result() -> None:
    stats, delivered = run(DroppingConnector(), make_records(3))
    assert list(delivered.rejected) == ["u0000"]
    assert delivered.rejected["u0000"].rejected == NO_RESULT == "no result from the destination"
    assert [r.key for r in delivered.results if r.ok] == ["u0001", "u0002"]
    assert (stats.acknowledged, stats.rejected) == (2, 1)


# --- crash and resume ----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 25), n=st.integers(1, 120), crash=st.integers(0, 15))
@example(size=7, n=100, crash=3)
@example(size=100, n=100, crash=0)
def test_a_crash_after_batch_k_reports_exactly_the_batches_before_it_and_the_rerun_sends_the_rest(
    size: int, n: int, crash: int
) -> None:
    cls = MemoryConnector.configured(max_batch=size)
    store = MemoryStore()
    records = make_records(n)
    state: dict[str, str | None] = {}  # the engine's sync state: key -> remote id
    reported: list[list[str]] = []

    def commit(results: Sequence[WriteResult]) -> None:
        reported.append([r.key for r in results])
        state.update({r.key: r.remote_id for r in results if r.ok})

    def apply(connector: MemoryConnector, todo: list[WriteRecord]) -> None:
        apply_records(
            connector,
            "contacts",
            todo,
            on_results=commit,
            limiter=RateLimiter(None),
            retry=RetryPolicy.no_wait(),
        )

    total = math.ceil(n / size)
    first = cls(MemoryConfig(crash_after_batches=crash), store=store)
    if crash < total:
        with pytest.raises(RuntimeError, match="simulated crash"):
            apply(first, records)
    else:
        apply(first, records)
    keys = [r.key for r in records]
    assert reported == [keys[i * size : (i + 1) * size] for i in range(min(crash, total))]
    acknowledged = set(state)

    second = cls(MemoryConfig(), store=store)
    apply(second, [r for r in records if r.key not in state])
    assert not acknowledged & set(second.written_keys()), "an acknowledged record was resent"
    assert set(state) == set(keys)
    # The batch that crashed was applied remotely and is sent again: upserts, no duplicate.
    assert store.count("contacts") == n
    assert len(set(state.values())) == n
    assert state == {k: r.remote_id for k, r in store.records["contacts"].items()}


# --- concurrency ------------------------------------------------------------------------------


def test_concurrency_keeps_on_results_serialized_on_the_calling_thread() -> None:
    import threading
    import time

    connector = MemoryConnector.configured(max_batch=5)(MemoryConfig(latency=0.01))
    caller = threading.get_ident()
    active = 0
    most = 0
    threads: set[int] = set()

    def on_results(results: Sequence[WriteResult]) -> None:
        nonlocal active, most
        active += 1
        most = max(most, active)
        threads.add(threading.get_ident())
        time.sleep(0.002)  # widen the window a concurrent call would need
        active -= 1

    stats = apply_records(
        connector,
        "contacts",
        make_records(200),
        on_results=on_results,
        limiter=RateLimiter(None),
        retry=RetryPolicy.no_wait(),
        concurrency=4,
    )
    assert most == 1
    assert threads == {caller}
    assert stats.acknowledged == 200


def test_concurrency_overlaps_the_destination_s_latency() -> None:
    connector = MemoryConnector.configured(max_batch=10)(MemoryConfig(latency=0.05))
    stats, delivered = run(connector, make_records(160), concurrency=4)
    assert len(delivered.results) == 160
    # 16 calls of 50 ms: 0.8 s one at a time, about 0.2 s four at a time.
    assert stats.elapsed < 0.6


def test_concurrency_never_sends_two_versions_of_a_key_at_once() -> None:
    import time

    class SlowFirstVersions(MemoryConnector):
        # Older versions answer slowest: sent side by side, they would land last.
        def write(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
            if batch[0].payload["note"] == "version 1":
                time.sleep(0.05)
            return super().write(object_name, batch)

    connector = SlowFirstVersions.configured(max_batch=3)()
    records = [
        *make_records(6, version=1),
        *make_records(6, version=2),
        *make_records(6, version=3),
    ]
    run(connector, records, concurrency=4)
    held = connector.store.records["contacts"]
    assert {r.fields["note"] for r in held.values()} == {"version 3"}


def test_a_fatal_error_stops_new_batches_but_in_flight_ones_are_still_reported() -> None:
    class AuthFailsOnce(MemoryConnector):
        def write(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
            if batch[0].key == "u0020":
                raise FatalError("memory write contacts: HTTP 401, authentication failed")
            return super().write(object_name, batch)

    connector = AuthFailsOnce.configured(max_batch=5)(MemoryConfig(latency=0.02))
    delivered = Delivered()
    with pytest.raises(FatalError, match="HTTP 401"):
        apply_records(
            connector,
            "contacts",
            make_records(200),
            on_results=delivered,
            limiter=RateLimiter(None),
            retry=RetryPolicy.no_wait(),
            concurrency=3,
        )
    written = connector.written_keys()
    assert {r.key for r in delivered.results} == set(written)  # every acknowledged batch reported
    assert len(connector.calls) <= 4 + 3  # batches 0-3, the failing 5th, at most two in flight


def test_an_exception_in_on_results_stops_the_run() -> None:
    connector = MemoryConnector.configured(max_batch=5)()

    def on_results(_results: Sequence[WriteResult]) -> None:
        raise OSError("state database is gone")

    for concurrency in (1, 3):
        with pytest.raises(OSError, match="state database is gone"):
            apply_records(
                connector,
                "contacts",
                make_records(50),
                on_results=on_results,
                limiter=RateLimiter(None),
                retry=RetryPolicy.no_wait(),
                concurrency=concurrency,
            )


# --- limiter, progress, other operations -------------------------------------------------------


def test_the_destination_s_headers_reach_the_limiter() -> None:
    connector = MemoryConnector(MemoryConfig(server_requests=50, server_per_seconds=10.0))
    limiter = RateLimiter(RateLimit(10, 10.0))
    run(connector, make_records(10), limiter=limiter)
    assert limiter.limit == RateLimit(50, 10.0)


def test_progress_sees_the_counts_grow() -> None:
    connector = MemoryConnector.configured(max_batch=10)(
        MemoryConfig(reject_keys=frozenset({"u0001"}))
    )
    seen: list[ApplyStats] = []
    stats = apply_records(
        connector,
        "contacts",
        make_records(30),
        on_results=lambda _r: None,
        limiter=RateLimiter(None),
        retry=RetryPolicy.no_wait(),
        progress=seen.append,
    )
    assert [s.acknowledged + s.rejected for s in seen] == [10, 20, 30, 30]
    assert seen[-1] == stats
    assert stats.rejected == 1
    assert stats.records_per_second > 0


def test_an_unknown_object_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="has no object 'deals'"):
        apply_records(
            MemoryConnector(),
            "deals",
            [],
            on_results=lambda _r: None,
            limiter=RateLimiter(None),
            retry=RetryPolicy.no_wait(),
        )


def _ids(connector: MemoryConnector, object_name: str, n: int, prefix: str) -> dict[str, str]:
    results = connector.write(object_name, make_records(n, prefix=prefix))
    return {r.key: r.remote_id or "" for r in results}


def test_associations_go_in_batches_of_the_association_batch_size() -> None:
    connector = MemoryConnector.configured(association_batch=3)()
    companies = _ids(connector, "companies", 2, "a")
    contacts = _ids(connector, "contacts", 4, "u")
    changes = [
        AssociationChange("contacts", u, uid, "companies", a, aid)
        for u, uid in contacts.items()
        for a, aid in companies.items()
    ]
    changes.append(AssociationChange("contacts", "u0000", "nope", "companies", "a0000", "x"))
    changes.append(changes[0])  # the same pair again: a later batch
    delivered: list[AssociationResult] = []
    stats = associate_changes(
        connector,
        changes,
        on_results=delivered.extend,
        limiter=RateLimiter(None),
        retry=RetryPolicy.no_wait(),
    )
    sizes = [c.size for c in connector.calls if c.op == "associate"]
    assert max(sizes) <= 3
    assert sum(sizes) == len(changes)
    assert stats.rejected == 1
    assert [r.rejected for r in delivered if not r.ok] == ["unknown record contacts nope"]
    assert len(connector.store.associations) == 8


def test_archive_goes_through_the_same_loop() -> None:
    connector = MemoryConnector()
    _ids(connector, "contacts", 5, "u")
    delivered = Delivered()
    stats = archive_records(
        connector,
        "contacts",
        make_records(5),
        on_results=delivered,
        limiter=RateLimiter(None),
        retry=RetryPolicy.no_wait(),
    )
    assert stats.acknowledged == 5
    assert all(r.archived for r in connector.store.records["contacts"].values())


def test_a_connector_without_the_capability_refuses_associations_and_archiving() -> None:
    plain = MemoryConnector.configured(associations=False, removal_modes=frozenset({"none"}))()
    common = {
        "on_results": lambda _r: None,
        "limiter": RateLimiter(None),
        "retry": RetryPolicy.no_wait(),
    }
    with pytest.raises(ConfigError, match="does not support associations"):
        associate_changes(plain, [], **common)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="cannot archive records"):
        archive_records(plain, "contacts", [], **common)  # type: ignore[arg-type]
