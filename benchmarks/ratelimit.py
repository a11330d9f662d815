"""Sustained throughput of the apply loop under a destination rate limit, and nothing lost.

HubSpot's "100 requests / 10 s" is scaled ×10 in time to "100 requests / 1 s" so a run takes
~10 s. 10,000 records go through :class:`MemoryConnector` in batches of 10 (1,000 requests) with
the connector declaring that limit and the fake destination enforcing it (a 429 beyond it).

Reported per scenario (median of ``--repeat`` runs):

* ``sustained req/s``: requests after the first window's free burst divided by the time they
  took — the pace the limiter holds, to compare with the ceiling (target ≥ 90 %);
* ``overall req/s``: all requests over the whole run (above the ceiling: the first burst is free);
* ``max in 1 s``: the most requests the destination saw in any window (must be ≤ 100);
* 429s answered, and records acknowledged / held by the destination (must be 10,000 each).

Run: ``python benchmarks/ratelimit.py [--repeat 3] [--records 10000]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

from syncer.connectors.base import RateLimit, WriteRecord, WriteResult
from syncer.engine.operations import apply_records
from syncer.ratelimit import RateLimiter
from syncer.retry import RetryPolicy
from syncer.testing.memory import MemoryConfig, MemoryConnector

LIMIT = RateLimit(requests=100, per_seconds=1.0)  # HubSpot's 100 / 10 s, time-scaled ×10
BATCH = 10


@dataclass(frozen=True)
class Scenario:
    name: str
    latency: float
    concurrency: int


SCENARIOS = [
    Scenario("2 ms latency, 1 worker", 0.002, 1),
    Scenario("30 ms latency, 4 workers", 0.030, 4),
]


@dataclass(frozen=True)
class Outcome:
    sustained: float
    overall: float
    max_in_window: int
    rejected_429: int
    acknowledged: int
    held: int
    retries: int


def _max_in_window(times: list[float], per: float) -> int:
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - per:
            start += 1
        best = max(best, end - start + 1)
    return best


def run_once(scenario: Scenario, n: int) -> Outcome:
    cls = MemoryConnector.configured(max_batch=BATCH, rate_limit=LIMIT)
    connector = cls(
        MemoryConfig(
            latency=scenario.latency,
            server_requests=LIMIT.requests,
            server_per_seconds=LIMIT.per_seconds,
        )
    )
    state: dict[str, str | None] = {}

    def commit(results: Sequence[WriteResult]) -> None:
        state.update({r.key: r.remote_id for r in results if r.ok})

    records = (
        WriteRecord(f"u{i:06d}", {"email": f"u{i}@example.com"}, {"email": f"u{i}@example.com"})
        for i in range(n)
    )
    stats = apply_records(
        connector,
        "contacts",
        records,
        on_results=commit,
        limiter=RateLimiter(cls.capabilities.rate_limit),
        retry=RetryPolicy(),
        concurrency=scenario.concurrency,
    )
    # When the destination counted each accepted request (its arrival, after latency).
    times = sorted(c.at for c in connector.calls if c.outcome == "ok")
    burst = LIMIT.requests
    sustained = (len(times) - burst) / (times[-1] - times[burst - 1])
    return Outcome(
        sustained=sustained,
        overall=stats.requests / stats.elapsed,
        max_in_window=_max_in_window(times, LIMIT.per_seconds),
        rejected_429=sum(1 for c in connector.calls if c.outcome == "rate_limited"),
        acknowledged=len(state),
        held=connector.store.count("contacts"),
        retries=stats.retries,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--records", type=int, default=10_000)
    args = parser.parse_args()
    ceiling = LIMIT.requests / LIMIT.per_seconds
    print(
        f"{args.records} records, batches of {BATCH}, limit {LIMIT.requests} requests / "
        f"{LIMIT.per_seconds:g} s (ceiling {ceiling:.0f} req/s), median of {args.repeat}"
    )
    for scenario in SCENARIOS:
        started = time.monotonic()
        outcomes = [run_once(scenario, args.records) for _ in range(args.repeat)]
        sustained = statistics.median(o.sustained for o in outcomes)
        overall = statistics.median(o.overall for o in outcomes)
        lost = [args.records - min(o.acknowledged, o.held) for o in outcomes]
        print(
            f"{scenario.name:26s} sustained {sustained:6.1f} req/s ({sustained / ceiling:.1%} of "
            f"ceiling)  overall {overall:6.1f} req/s  max in 1 s "
            f"{max(o.max_in_window for o in outcomes)}  "
            f"429s {sum(o.rejected_429 for o in outcomes)}"
            f"  retries {sum(o.retries for o in outcomes)}  lost {max(lost)}"
            f"  [{time.monotonic() - started:.0f} s]"
        )


if __name__ == "__main__":
    main()
