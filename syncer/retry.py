"""Retries for transient failures, and nothing else.

Only :class:`syncer.errors.RetriableError` is retried (connectors raise it for 429, 5xx, timeouts
and connection errors, see :mod:`syncer.connectors.http_status`). Every other exception
propagates at once: a rejected batch is bisected by the engine, a fatal or configuration error
stops the run, and an unknown exception is a bug — retrying it would only hide it.

Backoff is exponential with "equal jitter" (half fixed, half random), capped, so concurrent
workers spread out but never hammer a failing destination with near-zero waits. A ``retry_after``
from the destination (Retry-After, or the rate-limit interval) replaces the computed wait and
pauses the shared rate limiter, so every thread waits, not only the one that saw the 429.
When the attempts or the deadline run out, :class:`syncer.errors.RetriesExhausted` (a
:class:`~syncer.errors.FatalError`) stops the run;
records already acknowledged stay committed and the rest go again on the next run.

Every retry is logged (logger ``syncer.retry``, WARNING) as it happens — what failed, which
attempt, when the next one is — so an operator watching a run against a destination that is
down sees it within a second, not after minutes of silent backoff.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from tenacity import RetryCallState, RetryError, Retrying, retry_if_exception_type

from syncer.errors import RetriableError, RetriesExhausted
from syncer.ratelimit import RateLimiter

__all__ = ["RetryEvent", "RetryPolicy", "call_with_retry", "describe_retry"]

T = TypeVar("T")

log = logging.getLogger("syncer.retry")


def _no_sleep(_seconds: float) -> None:
    """Sleep of the zero-wait policy tests use."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to keep trying one request.

    ``max_attempts`` counts the first try; ``base`` and ``cap`` bound the computed backoff
    (``min(cap, base * 2**(n-1))``, jittered to between half and all of it); ``deadline`` bounds
    the whole sequence for one request in seconds (a wait that would cross it is not started).
    ``sleep``, ``clock`` and ``rng`` are injectable for tests.
    """

    max_attempts: int = 8
    base: float = 0.5
    cap: float = 60.0
    deadline: float | None = 900.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, not {self.max_attempts}")
        if self.base < 0 or self.cap < 0:
            raise ValueError("base and cap must be >= 0 seconds")

    @classmethod
    def no_wait(cls, max_attempts: int = 8) -> RetryPolicy:
        """Retry without sleeping and without a deadline (tests)."""
        return cls(max_attempts=max_attempts, base=0.0, cap=0.0, deadline=None, sleep=_no_sleep)

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based), jittered."""
        ceiling = min(self.cap, self.base * 2 ** (attempt - 1))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """One retry about to happen: what failed, which attempt, why, and how long we wait."""

    what: str
    attempt: int
    error: RetriableError
    wait: float


def describe_retry(event: RetryEvent, max_attempts: int) -> str:
    """One line for an operator: what failed, why, and when the next attempt is."""
    at = (datetime.now() + timedelta(seconds=event.wait)).strftime("%H:%M:%S")
    return (
        f"{event.what}: attempt {event.attempt} of {max_attempts} failed ({event.error}); "
        f"next attempt in {event.wait:.1f} s, at {at}"
    )


def call_with_retry(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    what: str,
    limiter: RateLimiter | None = None,
    on_retry: Callable[[RetryEvent], None] | None = None,
) -> T:
    """Call ``fn`` until it returns, retrying :class:`RetriableError` only.

    ``what`` names the request in messages ("hubspot write contacts (100 records)").
    ``on_retry`` is called before each wait (the CLI counts retries). Raises the first
    non-retriable exception unchanged, or :class:`RetriesExhausted` when retries run out.
    """
    started = policy.clock()

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetriableError) and exc.retry_after is not None:
            return max(exc.retry_after, 0.0)
        return policy.backoff(state.attempt_number)

    def stop(state: RetryCallState) -> bool:
        if state.attempt_number >= policy.max_attempts:
            return True
        if policy.deadline is None:
            return False
        return policy.clock() - started + state.upcoming_sleep > policy.deadline

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        assert isinstance(exc, RetriableError)  # the retry predicate lets nothing else through
        if limiter is not None and exc.retry_after is not None:
            limiter.pause(exc.retry_after)
        event = RetryEvent(what, state.attempt_number, exc, state.upcoming_sleep)
        log.warning("%s", describe_retry(event, policy.max_attempts))
        if on_retry is not None:
            on_retry(event)

    retrying = Retrying(
        retry=retry_if_exception_type(RetriableError),
        wait=wait,
        stop=stop,
        before_sleep=before_sleep,
        sleep=policy.sleep,
        reraise=False,
    )
    try:
        return retrying(fn)
    except RetryError as gave_up:
        last = gave_up.last_attempt
        exc = last.exception()
        elapsed = policy.clock() - started
        raise RetriesExhausted(
            f"{what}: gave up after {last.attempt_number} attempt(s) in {elapsed:.1f} s; "
            f"last error: {exc}. The destination keeps failing: check its status and run again "
            "later — records already acknowledged stay committed, the others are sent again."
        ) from exc
