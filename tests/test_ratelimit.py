"""The client-side rate limiter: a sliding window that adapts to the destination's headers."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncer.connectors.base import RateLimit, RateLimitInfo
from syncer.ratelimit import RateLimiter
from syncer.testing.memory import FakeClock


def _max_in_window(times: list[float], per: float) -> int:
    """The most requests found in any half-open window (t - per, t].

    A nanosecond of slack: ``(a + per) - per`` need not equal ``a`` in floating point, and a
    request booked exactly ``per`` after another must not count as inside its window.
    """
    best = 0
    start = 0
    for end, t in enumerate(times):
        while times[start] <= t - per + 1e-9:
            start += 1
        best = max(best, end - start + 1)
    return best


def _limiter(requests: int, per: float, clock: FakeClock, margin: float = 0.0) -> RateLimiter:
    return RateLimiter(RateLimit(requests, per), clock=clock, sleep=clock.sleep, margin=margin)


def test_a_burst_up_to_the_limit_goes_at_once() -> None:
    clock = FakeClock()
    limiter = _limiter(10, 1.0, clock)
    assert [limiter.acquire() for _ in range(10)] == [0.0] * 10
    assert clock.slept == 0.0


def test_never_more_than_n_requests_in_any_window() -> None:
    clock = FakeClock()
    limiter = _limiter(10, 1.0, clock)
    times = []
    for _ in range(350):
        limiter.acquire()
        times.append(clock())
    assert _max_in_window(times, 1.0) == 10
    # ... and it is not slower than the limit allows: 350 requests in 34 windows after the burst.
    assert times[-1] - times[0] == pytest.approx(34.0)


@settings(max_examples=60, deadline=None)
@given(
    requests=st.integers(1, 12),
    per=st.sampled_from([0.5, 1.0, 10.0]),
    gaps=st.lists(st.floats(0.0, 2.0), min_size=1, max_size=80),
)
def test_the_window_holds_for_any_pattern_of_arrivals(
    requests: int, per: float, gaps: list[float]
) -> None:
    clock = FakeClock()
    limiter = _limiter(requests, per, clock)
    times = []
    for gap in gaps:
        clock.sleep(gap)  # the caller is busy elsewhere between requests
        limiter.acquire()
        times.append(clock())
    assert _max_in_window(times, per) <= requests


def test_the_margin_widens_the_window() -> None:
    clock = FakeClock()
    limiter = _limiter(2, 10.0, clock, margin=0.05)
    for _ in range(3):
        limiter.acquire()
    assert clock.slept == pytest.approx(10.5)


def test_without_a_limit_nothing_waits() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    for _ in range(1000):
        limiter.acquire()
    assert clock.slept == 0.0


def test_a_pause_makes_the_next_request_wait() -> None:
    clock = FakeClock()
    limiter = _limiter(100, 10.0, clock)
    limiter.acquire()
    limiter.pause(7.5)
    assert limiter.acquire() == pytest.approx(7.5)
    assert limiter.stats.pauses == 1


def test_a_pause_also_holds_an_unlimited_destination() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    limiter.pause(3.0)
    assert limiter.acquire() == pytest.approx(3.0)


def test_a_pause_requested_while_waiting_moves_the_reservation() -> None:
    clock = FakeClock()
    limiter = _limiter(1, 1.0, clock)
    limiter.acquire()
    paused = []

    def sleep(seconds: float) -> None:
        # Another thread sees a 429 while we wait for our slot.
        if not paused:
            paused.append(True)
            limiter.pause(30.0)
        clock.sleep(seconds)

    limiter._sleep = sleep
    start = clock()
    limiter.acquire()
    assert clock() - start == pytest.approx(30.0)


def test_the_advertised_limit_replaces_the_declared_one() -> None:
    clock = FakeClock()
    limiter = _limiter(100, 10.0, clock)
    limiter.observe(RateLimitInfo(limit=190, remaining=189, interval_seconds=10.0))
    assert limiter.limit == RateLimit(190, 10.0)
    assert limiter.stats.adopted == 1
    for _ in range(189):
        limiter.acquire()
    assert clock.slept == 0.0


def test_an_advertised_limit_applies_to_an_undeclared_destination() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep, margin=0.0)
    limiter.observe(RateLimitInfo(limit=5, remaining=5, interval_seconds=2.0))
    for _ in range(6):
        limiter.acquire()
    assert clock.slept == pytest.approx(2.0)


def test_the_same_limit_advertised_again_changes_nothing() -> None:
    clock = FakeClock()
    limiter = _limiter(100, 10.0, clock)
    limiter.observe(RateLimitInfo(limit=100, remaining=100, interval_seconds=10.0))
    assert limiter.stats.adopted == 0


def test_no_request_goes_into_a_window_the_destination_says_is_empty() -> None:
    clock = FakeClock()
    limiter = _limiter(100, 10.0, clock)
    limiter.acquire()
    clock.sleep(2.0)
    # Another integration spent the shared budget: the destination says none is left.
    limiter.observe(RateLimitInfo(limit=100, remaining=0, interval_seconds=10.0))
    waited = limiter.acquire()
    # Our own request of 2 s ago is the oldest we know of: the window frees when it ages out.
    assert waited == pytest.approx(8.0)


def test_a_low_remaining_slows_the_rest_of_the_window() -> None:
    clock = FakeClock()
    limiter = _limiter(10, 10.0, clock)
    limiter.acquire()
    limiter.acquire()
    # The destination counts 8 used; we sent 2: someone else sent 6.
    limiter.observe(RateLimitInfo(limit=10, remaining=2))
    assert limiter.stats.foreign == 6
    assert limiter.acquire() == 0.0
    assert limiter.acquire() == 0.0
    assert limiter.acquire() > 0.0  # the 11th in the window would exceed the limit


def test_a_remaining_that_matches_our_own_count_books_nothing() -> None:
    clock = FakeClock()
    limiter = _limiter(10, 10.0, clock)
    for _ in range(4):
        limiter.acquire()
    limiter.observe(RateLimitInfo(limit=10, remaining=6))
    assert limiter.stats.foreign == 0


def test_threads_share_one_window() -> None:
    """Four threads on one limiter, real clock and sleep: 60 requests, never more than 20 in a
    window, so they take three windows.

    Each grant is timed by the limiter's own clock reading when it let the request go (not
    after ``acquire`` returned, which would add the test's own scheduling). What load can still
    do is hold a thread between the limiter booking its slot and granting it: a grant may come
    late, never early. So the windows are checked half as long as the limit's: a grant late by
    less than that cannot reach the next window's, which starts a whole window later, while
    threads that did not share one window would send the 60 at once.
    """
    limit, per = 20, 0.5
    seen = threading.local()

    def clock() -> float:
        seen.now = time.monotonic()
        return float(seen.now)

    limiter = RateLimiter(RateLimit(limit, per), clock=clock)
    granted: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(15):
            limiter.acquire()
            with lock:
                granted.append(seen.now)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    granted.sort()
    assert len(granted) == 60
    assert _max_in_window(granted, per / 2) <= limit
    # 60 requests need three windows: the last one cannot go before two have passed.
    assert granted[-1] - started >= 2 * per


def test_an_invalid_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="requests >= 1"):
        RateLimiter(RateLimit(0, 10.0))
