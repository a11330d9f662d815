"""A client-side rate limiter per destination, that adapts to what the destination says.

The model is a **sliding window**: at most ``N`` requests in any ``per_seconds`` interval (with a
small safety margin), which also keeps every fixed window the destination might count in under
``N``. A burst of up to ``N`` requests may go at once; after that, each request waits for the
oldest one in the window to age out.

The limiter adapts to the destination's answers (:meth:`RateLimiter.observe`):

* an advertised limit (``X-HubSpot-RateLimit-Max`` / ``-Interval-Milliseconds``) that differs from
  the declared one replaces it — the destination knows the account's tier, the connector does not;
* a ``remaining`` lower than our own count implies (another integration shares the budget) is
  booked as foreign requests in the window, so the pace slows for the rest of the window, and
  ``remaining == 0`` blocks until the window frees a slot: we never send into a window known to be
  empty;
* a 429's ``Retry-After`` pauses every thread (:meth:`RateLimiter.pause`).

A run spread over processes (Dask workers, :mod:`syncer.engine.cluster`) gives each process a
limiter with ``share=N``: it paces to ``1/N`` of the declared or advertised limit, and reads a
``remaining`` as its ``1/N`` of what the destination has left, so N of them together stay within
the destination's one limit.

Clock and sleep are injectable so tests run instantly and deterministically.
"""

from __future__ import annotations

import bisect
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from syncer.connectors.base import RateLimit, RateLimitInfo

__all__ = ["LimiterStats", "RateLimiter"]


@dataclass(slots=True)
class LimiterStats:
    """What the limiter did: time spent waiting, pauses honoured, limits adopted."""

    acquired: int = 0
    waited_seconds: float = 0.0
    pauses: int = 0
    adopted: int = 0  # times the destination's advertised limit replaced ours
    foreign: int = 0  # requests booked for other clients sharing the destination's budget


class RateLimiter:
    """Paces requests to one destination. Thread-safe; share one instance per destination.

    ``limit=None`` means no declared limit: requests go at once until the destination advertises
    one or asks for a pause. ``margin`` widens the window (0.02 = 2 %) so that latency jitter
    between sending and the destination counting a request cannot squeeze ``N + 1`` requests into
    its window. ``share``: how many limiters (processes) split the destination's one limit.
    """

    def __init__(
        self,
        limit: RateLimit | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        margin: float = 0.02,
        share: int = 1,
    ) -> None:
        if limit is not None and (limit.requests < 1 or limit.per_seconds <= 0):
            raise ValueError(f"a rate limit needs requests >= 1 and per_seconds > 0, not {limit}")
        if share < 1:
            raise ValueError(f"share must be at least 1, not {share}")
        self._share = share
        self._limit = _part(limit, share)
        # The destination's own window (a shared limit's may be stretched, see _part).
        self._per = limit.per_seconds if limit is not None else None
        self._clock = clock
        self._sleep = sleep
        self._margin = margin
        self._lock = threading.Lock()
        # Sorted times of requests counted in the window: ours (including reservations in the
        # near future) and foreign ones inferred from the destination's ``remaining``.
        self._window: list[float] = []
        self._ours: deque[float] = deque()
        self._pause_until = float("-inf")
        self.stats = LimiterStats()

    @property
    def limit(self) -> RateLimit | None:
        """The limit in force: the declared one, or what the destination advertised since."""
        return self._limit

    def acquire(self) -> float:
        """Block until one request may be sent; return the seconds waited.

        Each caller reserves the earliest slot the window allows, then sleeps until it, so
        threads are served in order and never spin. A pause requested meanwhile (a 429 seen by
        another thread) moves the reservation.
        """
        start = self._clock()
        slot: float | None = None
        while True:
            with self._lock:
                now = self._clock()
                if slot is not None and now >= self._pause_until and now >= slot:
                    waited = now - start
                    self.stats.acquired += 1
                    self.stats.waited_seconds += waited
                    return waited
                if slot is None or now < self._pause_until:
                    if slot is not None:
                        self._unreserve(slot)
                    slot = self._reserve(now)
                wait = slot - now
            if wait > 0:
                self._sleep(wait)

    def observe(self, info: RateLimitInfo) -> None:
        """Adapt to the rate-limit headers of a response (connectors report them)."""
        with self._lock:
            now = self._clock()
            if info.limit is not None and info.limit > 0:
                per = info.interval_seconds or self._per
                if per is not None and per > 0:
                    advertised = _part(RateLimit(info.limit, per), self._share)
                    if advertised != self._limit:
                        self._limit, self._per = advertised, per
                        self.stats.adopted += 1
            if info.remaining is None or self._limit is None:
                return
            self._prune(now)
            # Of what the destination has left, this limiter's share (the others have theirs).
            used = self._limit.requests - max(info.remaining, 0) // self._share
            # Our requests the destination may have counted: those already sent, not future
            # reservations. More used than that means someone else spends the same budget.
            # (The window holds those plus the foreign requests booked before.)
            missing = used - bisect.bisect_right(self._window, now)
            if missing > 0:
                # Booked at "now" although they happened earlier: conservative, they age out
                # of our window later than out of the destination's.
                for _ in range(missing):
                    bisect.insort(self._window, now)
                self.stats.foreign += missing

    def pause(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (a 429's Retry-After): every thread waits."""
        if seconds <= 0:
            return
        with self._lock:
            until = self._clock() + seconds
            if until > self._pause_until:
                self._pause_until = until
                self.stats.pauses += 1

    # --- internals (callers hold the lock) ---------------------------------------------------

    def _span(self) -> float:
        assert self._limit is not None
        return self._limit.per_seconds * (1.0 + self._margin)

    def _prune(self, now: float) -> None:
        if self._limit is None:
            self._window.clear()
            self._ours.clear()
            return
        horizon = now - self._span()
        cut = bisect.bisect_right(self._window, horizon)
        if cut:
            del self._window[:cut]
        while self._ours and self._ours[0] <= horizon:
            self._ours.popleft()

    def _reserve(self, now: float) -> float:
        """The earliest time >= now a request may go, booked in the window."""
        self._prune(now)
        slot = max(now, self._pause_until)
        if self._limit is not None:
            if self._ours:
                # Keep our reservations in order: threads are served first come, first served.
                slot = max(slot, self._ours[-1])
            n = self._limit.requests
            # Everything in the window is <= slot, so the window ending at ``slot`` holds its
            # last entries; the N-th from last must have aged out.
            if len(self._window) >= n:
                slot = max(slot, self._window[-n] + self._span())
            bisect.insort(self._window, slot)
            self._ours.append(slot)
        return slot

    def _unreserve(self, slot: float) -> None:
        if self._limit is None:
            return
        i = bisect.bisect_left(self._window, slot)
        if i < len(self._window) and self._window[i] == slot:
            del self._window[i]
        with contextlib.suppress(ValueError):  # pruned already: nothing left to release
            self._ours.remove(slot)


def _part(limit: RateLimit | None, share: int) -> RateLimit | None:
    """One of ``share`` equal parts of ``limit``: fewer requests in the same window, or, when
    there are fewer requests than parts, one request in a window stretched to the same pace."""
    if limit is None or share == 1:
        return limit
    if limit.requests >= share:
        return RateLimit(limit.requests // share, limit.per_seconds)
    return RateLimit(1, limit.per_seconds * share / limit.requests)
