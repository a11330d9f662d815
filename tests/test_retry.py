"""Retries: transient errors only, jittered capped backoff, Retry-After honoured, then fatal."""

from __future__ import annotations

import random

import pytest

from syncer.connectors.base import RateLimit
from syncer.errors import BatchRejected, ConfigError, FatalError, RetriableError
from syncer.ratelimit import RateLimiter
from syncer.retry import RetryEvent, RetryPolicy, call_with_retry
from syncer.testing.memory import FakeClock


class Flaky:
    """Fails with the given errors, in order, then returns "done"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def _policy(clock: FakeClock, *, max_attempts: int = 8, deadline: float = 900.0) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=max_attempts,
        deadline=deadline,
        sleep=clock.sleep,
        clock=clock,
        rng=random.Random(1),
    )


def test_a_retriable_error_is_retried_until_it_succeeds() -> None:
    fn = Flaky(RetriableError("503"), RetriableError("timeout"))
    events: list[RetryEvent] = []
    assert call_with_retry(fn, policy=RetryPolicy.no_wait(), what="w", on_retry=events.append) == (
        "done"
    )
    assert fn.calls == 3
    assert [e.attempt for e in events] == [1, 2]
    assert str(events[1].error) == "timeout"


@pytest.mark.parametrize(
    "error",
    [
        ValueError("a bug"),
        RuntimeError("a bug"),
        ConnectionError("not wrapped by the connector: a bug too"),
        BatchRejected("400"),
        FatalError("401"),
        ConfigError("bad setting"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_anything_but_a_retriable_error_propagates_at_once(error: Exception) -> None:
    fn = Flaky(error)
    with pytest.raises(type(error)) as raised:
        call_with_retry(fn, policy=RetryPolicy.no_wait(), what="w")
    assert raised.value is error
    assert fn.calls == 1


def test_retry_after_replaces_the_backoff() -> None:
    clock = FakeClock()
    fn = Flaky(RetriableError("429", retry_after=12.0, status=429))
    call_with_retry(fn, policy=_policy(clock), what="w")
    assert clock.sleeps == [12.0]


def test_retry_after_pauses_the_shared_limiter() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(100, 10.0), clock=clock, sleep=clock.sleep)
    fn = Flaky(RetriableError("429", retry_after=5.0, status=429))
    call_with_retry(fn, policy=RetryPolicy.no_wait(), what="w", limiter=limiter)
    # The retry itself did not sleep (no-wait policy), but every request now waits the 5 s.
    assert limiter.stats.pauses == 1
    assert limiter.acquire() == pytest.approx(5.0)


def test_backoff_is_exponential_jittered_and_capped() -> None:
    policy = RetryPolicy(base=0.5, cap=4.0, rng=random.Random(7))
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (12, 4.0)]:
        waits = [policy.backoff(attempt) for _ in range(200)]
        assert min(waits) >= ceiling / 2
        assert max(waits) <= ceiling
        assert len(set(waits)) > 1  # jittered: workers do not retry in lockstep


def test_giving_up_is_a_fatal_error_naming_the_request() -> None:
    clock = FakeClock()
    fn = Flaky(*[RetriableError(f"HTTP 503 #{i}", status=503) for i in range(10)])
    with pytest.raises(FatalError, match=r"hubspot write contacts: gave up after 4 attempt") as exc:
        call_with_retry(fn, policy=_policy(clock, max_attempts=4), what="hubspot write contacts")
    assert fn.calls == 4
    assert "HTTP 503 #3" in str(exc.value)
    assert isinstance(exc.value.__cause__, RetriableError)


def test_the_deadline_stops_before_a_wait_that_would_cross_it() -> None:
    clock = FakeClock()
    errors = [RetriableError("429", retry_after=40.0) for _ in range(5)]
    fn = Flaky(*errors)
    with pytest.raises(FatalError, match="gave up after 3 attempt"):
        call_with_retry(fn, policy=_policy(clock, deadline=100.0), what="w")
    assert clock.slept == pytest.approx(80.0)  # a third wait would end at 120 s > 100 s


def test_a_retry_after_beyond_the_deadline_gives_up_without_waiting() -> None:
    clock = FakeClock()
    fn = Flaky(RetriableError("429 daily", retry_after=86_400.0))
    with pytest.raises(FatalError):
        call_with_retry(fn, policy=_policy(clock, deadline=900.0), what="w")
    assert clock.slept == 0.0


def test_a_policy_needs_at_least_one_attempt() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
