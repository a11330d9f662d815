"""The write pipeline: every destination write goes through :func:`apply`, one loop.

An :class:`Operation` says what a write is — a batch upsert, a removal (clear or archive), a
bulk job, association changes (:mod:`syncer.engine.operations` builds them) — and this loop
gives every one of them the same guarantees:

* **Batches** of ``op.batch_size`` items, built while the input streams in (memory stays
  bounded by a few batches). A batch never holds two items with one key: a repeated key waits
  for a later batch, in input order, and with ``concurrency > 1`` that later batch is not sent
  before the earlier one was answered, so the destination always ends with the last version.
* Each call goes through the destination's :class:`~syncer.ratelimit.RateLimiter` and the
  :class:`~syncer.retry.RetryPolicy` (transient errors only); ``heartbeat`` (the run's lease
  renewal) is called after every answered batch and every retry.
* A batch the destination refuses as a whole (:class:`~syncer.errors.BatchRejected`) is split in
  halves, recursively, until the bad items are alone; an item refused on its own becomes a
  rejected result carrying the destination's message.
* **The result contract**, enforced here for every kind of write: each item sent gets exactly
  one result. A result for a key that was not sent (or two results for one key) is a connector
  bug: :class:`~syncer.errors.FatalError` naming the connector, before anything of that batch is
  reported, so nothing of it is recorded. An item sent without a result is answered here as
  refused with :data:`NO_RESULT` — recorded as failed, and sent again by the next run.
* ``on_results`` receives each answered batch (or answered half of a bisected one) as it
  completes — only those — always on the calling thread, one call at a time. This is where the
  engine commits sync state, so state advances only after the destination acknowledged.
* A :class:`FatalError`, :class:`ConfigError` or any unknown exception (a bug) stops the loop:
  no new batch starts, batches in flight finish and their answers are still reported, then the
  error propagates. Items not reported are sent again by the next run (at least once,
  idempotent upserts).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, Required, TypedDict, TypeVar

from syncer.errors import BatchRejected, ConfigError, FatalError, RecordRejected
from syncer.ratelimit import RateLimiter
from syncer.retry import RetryEvent, RetryPolicy, call_with_retry

__all__ = ["NO_RESULT", "Answer", "ApplyOptions", "ApplyStats", "Operation", "apply", "batches"]

I = TypeVar("I")  # noqa: E741  an input item: WriteRecord or AssociationChange
R = TypeVar("R")  # its result: WriteResult or AssociationResult

#: The reason recorded for an item the destination answered nothing about.
NO_RESULT = "no result from the destination"


@dataclass(slots=True)
class ApplyStats:
    """Counts of one apply call, for progress bars and the run report."""

    records_sent: int = 0  # input items handed to the destination (each counted once)
    acknowledged: int = 0  # results that were accepted
    rejected: int = 0  # results the destination refused (or did not give)
    requests: int = 0  # HTTP calls, including retries, bisection halves and a bulk job's calls
    retries: int = 0
    bisections: int = 0  # batches split in two after a whole-batch refusal
    rate_wait_seconds: float = 0.0  # time spent waiting for the rate limiter
    elapsed: float = 0.0

    @property
    def records_per_second(self) -> float:
        """Items answered (acknowledged or rejected) per second of elapsed time."""
        done = self.acknowledged + self.rejected
        return done / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Answer(Generic[R]):
    """What one call returned: its results and how many HTTP requests it took (a batch call
    one, a bulk job its create, upload, polls and result reads)."""

    results: Sequence[R]
    requests: int = 1


class ApplyOptions(TypedDict, Generic[R], total=False):
    """The keyword arguments of :func:`apply` besides the operation and its items."""

    on_results: Required[Callable[[Sequence[R]], None]]
    limiter: Required[RateLimiter]
    retry: Required[RetryPolicy]
    concurrency: int
    progress: Callable[[ApplyStats], None] | None
    heartbeat: Callable[[], object] | None


@dataclass(frozen=True, slots=True)
class Operation(Generic[I, R]):
    """One kind of destination write, described for the loop."""

    what: str  # "hubspot write contacts", used in every message
    connector: str
    batch_size: int
    key: Callable[[I], Hashable]
    result_key: Callable[[R], Hashable]
    call: Callable[[Sequence[I]], Answer[R]]
    reject: Callable[[I, str, str | None], R]
    ok: Callable[[R], bool]


def apply(
    op: Operation[I, R],
    items: Iterable[I],
    *,
    on_results: Callable[[Sequence[R]], None],
    limiter: RateLimiter,
    retry: RetryPolicy,
    concurrency: int = 1,
    progress: Callable[[ApplyStats], None] | None = None,
    heartbeat: Callable[[], object] | None = None,
) -> ApplyStats:
    """Send ``items`` through ``op``; see the module docstring. ``on_results`` gets each
    answered batch's results in input order; ``progress`` a snapshot of the counts after each.
    Returns the final counts."""
    loop = _Loop(op, limiter, retry, on_results)
    loop.progress, loop.heartbeat = progress, heartbeat
    return loop.run(items, concurrency)


def batches(items: Iterable[I], size: int, key: Callable[[I], Hashable]) -> Iterator[list[I]]:
    """Group ``items`` in batches of at most ``size`` with unique keys, streaming.

    An item whose key is already in the batch being filled is carried to a later batch; carried
    items go first, in input order, so several versions of one key leave in their input order.
    Memory: one batch plus the carried duplicates.
    """
    if size < 1:
        raise ValueError(f"batch size must be >= 1, not {size}")
    source = iter(items)
    carry: list[I] = []
    exhausted = False
    while True:
        batch: list[I] = []
        keys: set[Hashable] = set()
        rest: list[I] = []
        for item in carry:
            k = key(item)
            if len(batch) < size and k not in keys:
                batch.append(item)
                keys.add(k)
            else:
                rest.append(item)
        carry = rest
        while len(batch) < size and not exhausted:
            try:
                item = next(source)
            except StopIteration:
                exhausted = True
                break
            k = key(item)
            if k in keys:
                carry.append(item)
            else:
                batch.append(item)
                keys.add(k)
        if not batch:
            return
        yield batch


_Event = tuple[int, Sequence[R] | None, BaseException | None]


class _Loop(Generic[I, R]):
    def __init__(
        self,
        op: Operation[I, R],
        limiter: RateLimiter,
        retry: RetryPolicy,
        on_results: Callable[[Sequence[R]], None],
    ) -> None:
        if op.batch_size < 1:
            raise ConfigError(f"connector {op.connector!r} declares a batch size below 1")
        self.op = op
        self.limiter = limiter
        self.retry = retry
        self.on_results = on_results
        self.progress: Callable[[ApplyStats], None] | None = None
        self.heartbeat: Callable[[], object] | None = None
        self.stats = ApplyStats()
        self._lock = threading.Lock()  # guards stats: workers count requests and retries
        self._started = time.monotonic()

    def run(self, items: Iterable[I], concurrency: int) -> ApplyStats:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, not {concurrency}")
        source = batches(items, self.op.batch_size, self.op.key)
        try:
            if concurrency == 1:
                for batch in source:
                    self._count(records_sent=len(batch))
                    self._process(batch, self._deliver)
            else:
                self._run_pooled(source, concurrency)
        finally:
            self._count()
            if self.progress is not None:
                self.progress(self.snapshot())
        return self.snapshot()

    def snapshot(self) -> ApplyStats:
        with self._lock:
            return dataclasses.replace(self.stats)

    def _run_pooled(self, source: Iterator[list[I]], concurrency: int) -> None:
        """Workers send; this thread alone calls ``on_results`` (events arrive on a queue)."""
        events: queue.Queue[_Event[R]] = queue.Queue()
        in_flight: dict[int, set[Hashable]] = {}
        held: list[I] | None = None
        error: BaseException | None = None
        delivering = True
        next_id = 0
        with ThreadPoolExecutor(concurrency, thread_name_prefix="syncer-apply") as pool:
            while True:
                while error is None and len(in_flight) < concurrency:
                    if held is None:
                        try:
                            held = next(source, None)
                        except BaseException as exc:  # the planner's iterator failed: stop
                            error = exc
                            break
                        if held is None:
                            break
                    keys = {self.op.key(item) for item in held}
                    if any(keys & busy for busy in in_flight.values()):
                        break  # an earlier version of a key is in flight: keep input order
                    batch_id, next_id = next_id, next_id + 1
                    in_flight[batch_id] = keys
                    self._count(records_sent=len(held))
                    pool.submit(self._work, batch_id, held, events)
                    held = None
                if not in_flight:
                    break
                batch_id, results, failure = events.get()
                if results is not None:
                    if delivering:
                        try:
                            self._deliver(results)
                        except BaseException as exc:  # the engine's commit failed: stop
                            delivering = False
                            error = error or exc
                    continue
                del in_flight[batch_id]
                if failure is not None and error is None:
                    error = failure
        if error is not None:
            raise error

    def _work(self, batch_id: int, batch: list[I], events: queue.Queue[_Event[R]]) -> None:
        try:
            self._process(batch, lambda results: events.put((batch_id, results, None)))
        except BaseException as exc:  # handed to the main thread, which re-raises it
            events.put((batch_id, None, exc))
        else:
            events.put((batch_id, None, None))

    def _deliver(self, results: Sequence[R]) -> None:
        self.on_results(results)
        ok = sum(1 for r in results if self.op.ok(r))
        self._count(acknowledged=ok, rejected=len(results) - ok)
        if self.heartbeat is not None:
            self.heartbeat()
        if self.progress is not None:
            self.progress(self.snapshot())

    def _process(self, batch: list[I], emit: Callable[[Sequence[R]], None]) -> None:
        """Send ``batch``; bisect it while the destination refuses it as a whole."""
        try:
            results = self._send(batch)
        except BatchRejected as exc:
            if len(batch) == 1:
                emit([self.op.reject(batch[0], str(exc), None)])
                return
            self._count(bisections=1)
            middle = (len(batch) + 1) // 2
            self._process(batch[:middle], emit)
            self._process(batch[middle:], emit)
            return
        except RecordRejected as exc:
            # A connector may refuse one item by raising: reject it, send the others again.
            index = next((i for i, item in enumerate(batch) if self.op.key(item) == exc.key), None)
            if index is None:
                raise self._bug(f"raised RecordRejected for key {exc.key!r}, not sent") from exc
            emit([self.op.reject(batch[index], exc.reason, exc.field)])
            rest = batch[:index] + batch[index + 1 :]
            if rest:
                self._process(rest, emit)
            return
        emit(results)

    def _send(self, batch: list[I]) -> list[R]:
        def attempt() -> Answer[R]:
            waited = self.limiter.acquire()
            self._count(requests=1, rate_wait_seconds=waited)
            return self.op.call(batch)

        answer = call_with_retry(
            attempt,
            policy=self.retry,
            what=f"{self.op.what} ({len(batch)} records)",
            limiter=self.limiter,
            on_retry=self._on_retry,
        )
        self._count(requests=answer.requests - 1)  # a bulk job's own calls beyond the first
        return self._checked(batch, answer.results)

    def _on_retry(self, _event: RetryEvent) -> None:
        self._count(retries=1)
        if self.heartbeat is not None:
            self.heartbeat()  # a long backoff (a bulk job's) must not lose the run's lease

    def _checked(self, batch: list[I], results: Sequence[R]) -> list[R]:
        """The result contract: results in input order, one per item; an item without one is
        refused with :data:`NO_RESULT`; FatalError for a repeated key or one not sent."""
        by_key: dict[Hashable, R] = {}
        for result in results:
            k = self.op.result_key(result)
            if k in by_key:
                raise self._bug(f"returned two results for key {k!r}")
            by_key[k] = result
        ordered = [by_key.pop(self.op.key(item), None) or self._unanswered(item) for item in batch]
        if by_key:
            raise self._bug(f"returned a result for key {next(iter(by_key))!r}, not sent")
        return ordered

    def _unanswered(self, item: I) -> R:
        return self.op.reject(item, NO_RESULT, None)

    def _bug(self, what: str) -> FatalError:
        return FatalError(
            f"connector {self.op.connector!r} {what} during {self.op.what}: a bug in the "
            "connector (one result per record sent, for that record only); the run stops and "
            "records nothing of this batch"
        )

    def _count(self, **deltas: float) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + delta)
            self.stats.elapsed = time.monotonic() - self._started
