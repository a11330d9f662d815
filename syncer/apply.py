"""The engine's apply loop: batches to a connector, with rate limiting, retries and bisection.

What a caller (the engine) gets:

* **Batches** of ``capabilities.max_batch`` records (``association_batch`` for associations),
  built while the input streams in (memory stays bounded by a few batches). A batch never holds
  two records with one key: a repeated key waits for a later batch, in input order, and with
  ``concurrency > 1`` that later batch is not sent before the earlier one was answered, so the
  destination always ends with the last version.
* Each batch goes through the shared :class:`~syncer.ratelimit.RateLimiter` and the
  :class:`~syncer.retry.RetryPolicy` (transient errors only). The connector's answer is checked:
  exactly one result per input key, or :class:`~syncer.errors.FatalError` naming the connector
  and the key — a lost record is never silent.
* A batch the destination refuses as a whole (:class:`~syncer.errors.BatchRejected`) is split in
  halves, recursively, until the bad records are alone; a record refused on its own becomes a
  rejected result carrying the destination's message.
* ``on_results`` receives each acknowledged batch (or acknowledged half of a bisected one) as it
  completes — only those — always on the calling thread, one call at a time. This is where the
  engine commits sync state, so state advances only after the destination acknowledged.
* A :class:`FatalError`, :class:`ConfigError` or any unknown exception (a bug) stops the loop:
  no new batch starts, batches in flight finish and their acknowledgements are still reported,
  then the error propagates. Records not reported are sent again by the next run (at least once,
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
from typing import Generic, TypeVar

from syncer.connectors.base import (
    AssociationChange,
    AssociationResult,
    Connector,
    WriteRecord,
    WriteResult,
)
from syncer.errors import BatchRejected, ConfigError, FatalError, RecordRejected
from syncer.ratelimit import RateLimiter
from syncer.retry import RetryEvent, RetryPolicy, call_with_retry

__all__ = ["ApplyStats", "apply_records", "archive_records", "associate_changes"]

I = TypeVar("I")  # noqa: E741  an input item: WriteRecord or AssociationChange
R = TypeVar("R")  # its result: WriteResult or AssociationResult


@dataclass(slots=True)
class ApplyStats:
    """Counts of one apply call, for progress bars and the run report."""

    records_sent: int = 0  # input records handed to the destination (each counted once)
    acknowledged: int = 0  # results that were accepted
    rejected: int = 0  # results the destination refused, with its reason
    requests: int = 0  # calls to the connector, including retries and bisection halves
    retries: int = 0
    bisections: int = 0  # batches split in two after a whole-batch refusal
    rate_wait_seconds: float = 0.0  # time spent waiting for the rate limiter
    elapsed: float = 0.0

    @property
    def records_per_second(self) -> float:
        """Records answered (acknowledged or rejected) per second of elapsed time."""
        done = self.acknowledged + self.rejected
        return done / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(frozen=True, slots=True)
class _Op(Generic[I, R]):
    """One kind of connector call, described for the generic loop."""

    what: str  # "hubspot write contacts", used in every message
    connector: str
    batch_size: int
    key: Callable[[I], Hashable]
    result_key: Callable[[R], Hashable]
    call: Callable[[Sequence[I]], Sequence[R]]
    reject: Callable[[I, str, str | None], R]
    ok: Callable[[R], bool]


def apply_records(
    connector: Connector,
    object_name: str,
    records: Iterable[WriteRecord],
    *,
    on_results: Callable[[Sequence[WriteResult]], None],
    limiter: RateLimiter,
    retry: RetryPolicy,
    concurrency: int = 1,
    progress: Callable[[ApplyStats], None] | None = None,
) -> ApplyStats:
    """Upsert ``records`` into ``object_name`` through ``connector.write``; see the module doc.

    ``on_results`` gets each acknowledged batch's results in input order; ``progress`` gets a
    snapshot of the counts after each one. Returns the final counts.
    """
    connector.object_spec(object_name)  # ConfigError for an object the connector lacks
    op: _Op[WriteRecord, WriteResult] = _Op(
        what=f"{connector.name} write {object_name}",
        connector=connector.name,
        batch_size=connector.capabilities.max_batch,
        key=_record_key,
        result_key=_result_key,
        call=lambda batch: connector.write(object_name, batch),
        reject=_reject_record,
        ok=_result_ok,
    )
    return _Runner(
        op,
        connector=connector,
        limiter=limiter,
        retry=retry,
        on_results=on_results,
        progress=progress,
    ).run(records, concurrency)


def archive_records(
    connector: Connector,
    object_name: str,
    records: Iterable[WriteRecord],
    *,
    on_results: Callable[[Sequence[WriteResult]], None],
    limiter: RateLimiter,
    retry: RetryPolicy,
    concurrency: int = 1,
    progress: Callable[[ApplyStats], None] | None = None,
) -> ApplyStats:
    """Archive ``records`` (removed from the source) through ``connector.archive``; same loop as
    :func:`apply_records`. ConfigError if the connector does not declare the ``archive`` mode."""
    connector.object_spec(object_name)
    if "archive" not in connector.capabilities.removal_modes:
        modes = ", ".join(sorted(connector.capabilities.removal_modes))
        raise ConfigError(
            f"connector {connector.name!r} cannot archive records (its removal modes: {modes}); "
            "choose one of those for this destination"
        )
    op: _Op[WriteRecord, WriteResult] = _Op(
        what=f"{connector.name} archive {object_name}",
        connector=connector.name,
        batch_size=connector.capabilities.max_batch,
        key=_record_key,
        result_key=_result_key,
        call=lambda batch: connector.archive(object_name, batch),
        reject=_reject_record,
        ok=_result_ok,
    )
    return _Runner(
        op,
        connector=connector,
        limiter=limiter,
        retry=retry,
        on_results=on_results,
        progress=progress,
    ).run(records, concurrency)


def associate_changes(
    connector: Connector,
    changes: Iterable[AssociationChange],
    *,
    on_results: Callable[[Sequence[AssociationResult]], None],
    limiter: RateLimiter,
    retry: RetryPolicy,
    concurrency: int = 1,
    progress: Callable[[ApplyStats], None] | None = None,
) -> ApplyStats:
    """Create or remove associations through ``connector.associate`` in batches of
    ``capabilities.association_batch``; one pair (from, to) appears at most once per batch.
    ConfigError if the connector does not declare associations."""
    if not connector.capabilities.associations:
        raise ConfigError(f"connector {connector.name!r} does not support associations")
    op: _Op[AssociationChange, AssociationResult] = _Op(
        what=f"{connector.name} associate",
        connector=connector.name,
        batch_size=connector.capabilities.association_batch,
        key=_pair_key,
        result_key=lambda result: _pair_key(result.change),
        call=connector.associate,
        reject=lambda change, reason, _field: AssociationResult(change, rejected=reason),
        ok=lambda result: result.ok,
    )
    return _Runner(
        op,
        connector=connector,
        limiter=limiter,
        retry=retry,
        on_results=on_results,
        progress=progress,
    ).run(changes, concurrency)


def batches(items: Iterable[I], size: int, key: Callable[[I], Hashable]) -> Iterator[list[I]]:
    """Group ``items`` in batches of at most ``size`` with unique keys, streaming.

    A record whose key is already in the batch being filled is carried to a later batch; carried
    records go first, in input order, so several versions of one key leave in their input order.
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


# --- the loop ---------------------------------------------------------------------------------


class _Runner(Generic[I, R]):
    def __init__(
        self,
        op: _Op[I, R],
        *,
        connector: Connector,
        limiter: RateLimiter,
        retry: RetryPolicy,
        on_results: Callable[[Sequence[R]], None],
        progress: Callable[[ApplyStats], None] | None,
    ) -> None:
        if op.batch_size < 1:
            raise ConfigError(f"connector {op.connector!r} declares a batch size below 1")
        self.op = op
        self.limiter = limiter
        self.retry = retry
        self.on_results = on_results
        self.progress = progress
        self.stats = ApplyStats()
        self._lock = threading.Lock()  # guards stats: workers count requests and retries
        self._started = time.monotonic()
        # The destination's rate-limit headers reach the shared limiter.
        connector.set_rate_observer(limiter.observe)

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
        events: queue.Queue[tuple[int, Sequence[R] | None, BaseException | None]] = queue.Queue()
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

    def _work(
        self,
        batch_id: int,
        batch: list[I],
        events: queue.Queue[tuple[int, Sequence[R] | None, BaseException | None]],
    ) -> None:
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
            # A connector may refuse one record by raising: reject it, send the others again.
            index = next((i for i, item in enumerate(batch) if self.op.key(item) == exc.key), None)
            if index is None:
                raise self._bug(
                    f"raised RecordRejected for key {exc.key!r}, not in the batch"
                ) from exc
            emit([self.op.reject(batch[index], exc.reason, exc.field)])
            rest = batch[:index] + batch[index + 1 :]
            if rest:
                self._process(rest, emit)
            return
        emit(results)

    def _send(self, batch: list[I]) -> list[R]:
        def attempt() -> Sequence[R]:
            waited = self.limiter.acquire()
            self._count(requests=1, rate_wait_seconds=waited)
            return self.op.call(batch)

        results = call_with_retry(
            attempt,
            policy=self.retry,
            what=f"{self.op.what} ({len(batch)} records)",
            limiter=self.limiter,
            on_retry=self._on_retry,
        )
        return self._validated(batch, results)

    def _on_retry(self, _event: RetryEvent) -> None:
        self._count(retries=1)

    def _validated(self, batch: list[I], results: Sequence[R]) -> list[R]:
        """Results in input order; FatalError if any key is missing, repeated or unknown."""
        by_key: dict[Hashable, R] = {}
        for result in results:
            k = self.op.result_key(result)
            if k in by_key:
                raise self._bug(f"returned two results for key {k!r}")
            by_key[k] = result
        ordered: list[R] = []
        for item in batch:
            k = self.op.key(item)
            if k not in by_key:
                raise self._bug(
                    f"returned no result for key {k!r} ({len(results)} results for "
                    f"{len(batch)} records)"
                )
            ordered.append(by_key.pop(k))
        if by_key:
            raise self._bug(f"returned a result for key {next(iter(by_key))!r}, not in the batch")
        return ordered

    def _bug(self, what: str) -> FatalError:
        return FatalError(
            f"connector {self.op.connector!r} {what} during {self.op.what}: a bug in the "
            "connector (it must return exactly one result per input record); stopping so that "
            "no record is lost silently"
        )

    def _count(self, **deltas: float) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + delta)
            self.stats.elapsed = time.monotonic() - self._started


def _record_key(record: WriteRecord) -> str:
    return record.key


def _result_key(result: WriteResult) -> str:
    return result.key


def _result_ok(result: WriteResult) -> bool:
    return result.ok


def _reject_record(record: WriteRecord, reason: str, field: str | None) -> WriteResult:
    return WriteResult(record.key, rejected=reason, field=field)


def _pair_key(change: AssociationChange) -> tuple[str, str, str, str]:
    return (change.from_object, change.from_key, change.to_object, change.to_key)
