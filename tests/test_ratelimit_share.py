"""A limit shared by the processes of one run (Dask workers): each paces to its share, so that
together they stay within the destination's one limit."""

from __future__ import annotations

import itertools

import pytest

from syncer.connectors.base import RateLimit, RateLimitInfo
from syncer.ratelimit import RateLimiter
from syncer.testing.memory import FakeClock


def _shared(limit: RateLimit, share: int, clock: FakeClock) -> RateLimiter:
    return RateLimiter(limit, clock=clock, sleep=clock.sleep, margin=0.0, share=share)


def _most_in(times: list[float], per: float) -> int:
    return max(sum(1 for u in times if t - per + 1e-9 < u <= t) for t in times)


@pytest.mark.parametrize(("share", "each"), [(1, 10), (2, 5), (3, 3), (4, 2)])
def test_each_of_n_limiters_paces_to_its_share_of_the_limit(share: int, each: int) -> None:
    clock = FakeClock()
    limiter = _shared(RateLimit(10, 1.0), share, clock)
    times = []
    for _ in range(60):
        limiter.acquire()
        times.append(clock())
    assert _most_in(times, 1.0) == each
    assert each * share <= 10  # N of them together: within the destination's limit


def test_fewer_requests_than_shares_stretch_the_window_to_the_same_pace() -> None:
    clock = FakeClock()
    limiter = _shared(RateLimit(2, 1.0), 4, clock)
    assert limiter.limit == RateLimit(1, 2.0)  # 4 limiters x 1 per 2 s = 2 per s
    times = []
    for _ in range(5):
        limiter.acquire()
        times.append(clock())
    assert [b - a for a, b in itertools.pairwise(times)] == [2.0] * 4


def test_an_advertised_limit_is_shared_too() -> None:
    clock = FakeClock()
    limiter = _shared(RateLimit(100, 10.0), 2, clock)
    assert limiter.limit == RateLimit(50, 10.0)
    limiter.observe(RateLimitInfo(limit=190, interval_seconds=10.0))
    assert limiter.limit == RateLimit(95, 10.0)
    limiter.observe(RateLimitInfo(limit=300))  # no interval: the destination's window holds
    assert limiter.limit == RateLimit(150, 10.0)


def test_what_the_destination_has_left_is_read_as_this_limiters_share() -> None:
    clock = FakeClock()
    limiter = _shared(RateLimit(10, 1.0), 2, clock)  # 5 a second each
    # The other worker spent 6 of the window's 10: 4 left, 2 of them this limiter's.
    limiter.observe(RateLimitInfo(limit=10, remaining=4, interval_seconds=1.0))
    assert limiter.stats.foreign == 3
    assert [limiter.acquire() for _ in range(2)] == [0.0, 0.0]
    assert limiter.acquire() > 0  # the third waits for the window to free a slot


def test_a_share_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RateLimiter(RateLimit(10, 1.0), share=0)
