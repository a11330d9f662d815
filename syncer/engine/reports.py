"""What a plan or a run came to: per-object counts, samples, errors, stage moves, links.

The CLI prints these, the Prefect flows publish them as artifacts, and ``sync_runs.counts``
stores :meth:`RunReport.run_counts`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from syncer.mapping import ObjectMapping
from syncer.plan import ACTIONS, Change, PlanCounts

__all__ = ["LinkStats", "ObjectReport", "PlanReport", "RunReport", "StageMove", "stage_field"]

#: A record's stage before and after a write (None: the destination held none, e.g. a create).
StageMove = tuple[str | None, str | None]

_TABLES = ("users", "accounts", "memberships")

#: How many (key, reason) pairs a report keeps per object: enough to show, bounded in memory.
_ERRORS_KEPT = 10


def stage_field(obj: ObjectMapping) -> str | None:
    """The destination field of ``obj`` that holds the record's resolved stage, if any: the
    first field whose template is exactly the expression ``stage`` (``syncer_stage: stage`` in
    a mapping). Run reports tally stage moves on it (:attr:`ObjectReport.stage_moves`)."""
    return next((f.spec.name for f in obj.fields if f.template.strip() == "stage"), None)


@dataclass(slots=True)
class LinkStats:
    """What the association step did."""

    created: int = 0
    removed: int = 0
    failed: int = 0
    waiting: int = 0  # links whose ends have no remote id yet
    requests: int = 0


@dataclass(slots=True)
class ObjectReport:
    """What one object's plan (and, in a run, its apply) came to.

    Records not delivered are counted apart by who stopped them: ``counts.rejected`` are the
    records syncer itself would not send (formatting refused them: an invalid email, a value over
    its field's budget), ``refused`` the records the destination refused (or left unanswered).
    """

    object: str
    counts: PlanCounts = field(default_factory=PlanCounts)
    samples: list[Change] = field(default_factory=list)
    sent: int = 0  # records the destination acknowledged
    refused: int = 0  # records the destination refused (syncer's own rejections: counts.rejected)
    set_aside: int = 0  # rejected or refused too often: on the dead-letter list now
    requests: int = 0  # calls to the destination, retries included
    retries: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (key, reason), first few
    #: Stage moves among the created and updated records the destination acknowledged, every one
    #: of them (not only the samples): (before, after) → how many records, on the object's
    #: :func:`stage_field`. Records whose stage did not change are not counted.
    stage_moves: Counter[StageMove] = field(default_factory=Counter)
    #: Store rows this object's pass read, by table (``users``, ``accounts``, ``memberships``).
    read: dict[str, int] = field(default_factory=dict)

    def note_error(self, key: str, reason: str) -> None:
        """Keep ``(key, reason)`` among the first few errors shown."""
        if len(self.errors) < _ERRORS_KEPT:
            self.errors.append((key, reason))


@dataclass(slots=True)
class PlanReport:
    """A plan for one destination: per-object counts and samples."""

    destination: str
    objects: list[ObjectReport]
    #: ``"incremental"`` (what changed since the last completed run, and what it affects) or
    #: ``"full"`` (everything), with why (:mod:`syncer.engine.incremental`).
    mode: str = "full"
    mode_reason: str = ""
    #: Store rows read by table, the account forest and the feed's closure included.
    read: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_TABLES, 0))

    def totals(self) -> dict[str, int]:
        """Changes per action over every object."""
        return {a: sum(getattr(o.counts, a) for o in self.objects) for a in ACTIONS}

    def cost(self) -> dict[str, object]:
        """What the plan read: ``{"mode": …, "read": {"users": N, "accounts": N,
        "memberships": N}}`` (the top-level keys of ``syncer plan --json`` / ``run --json``)."""
        return {"mode": self.mode, "read": {t: self.read.get(t, 0) for t in _TABLES}}


@dataclass(slots=True)
class RunReport(PlanReport):
    """A finished (or failed) run: the plan's counts plus what was sent."""

    run_id: str = ""
    status: str = "running"
    message: str | None = None
    links: LinkStats | None = None
    elapsed: float = 0.0
    marks_saved: int = 0

    def run_counts(self) -> dict[str, int]:
        """The run's figures as ``sync_runs.counts`` stores them: the plan's actions (so
        ``rejected`` is what syncer itself would not send), then ``sent`` and ``refused`` (by the
        destination), ``requests``, ``retries`` and, with associations, what they came to."""
        counts = self.totals()
        counts["sent"] = sum(o.sent for o in self.objects)
        counts["refused"] = sum(o.refused for o in self.objects)
        counts["requests"] = sum(o.requests for o in self.objects)
        counts["retries"] = sum(o.retries for o in self.objects)
        if self.links is not None:
            counts["associations_created"] = self.links.created
            counts["associations_removed"] = self.links.removed
        return counts

    def undelivered(self) -> int:
        """Records and links that did not reach the destination this run."""
        links = self.links.failed if self.links is not None else 0
        return sum(o.counts.rejected + o.refused for o in self.objects) + links
