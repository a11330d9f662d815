"""The flow's run report and lease sizing, without a Prefect server (pure functions)."""

from __future__ import annotations

from collections import Counter

from flows.sync import _TASK_OPTIONS, LEASE_SECONDS, render_run
from syncer.engine import ObjectReport, RunReport
from syncer.plan import PlanCounts


def _report() -> RunReport:
    contacts = ObjectReport(
        "contacts",
        counts=PlanCounts(create=2, update=45, unchanged=10, rejected=2),
        sent=44,
        refused=3,
        stage_moves=Counter({("MQL", "CUS"): 40, (None, "PRO"): 2, ("CUS", "churned"): 2}),
    )
    companies = ObjectReport("companies", counts=PlanCounts(unchanged=5))
    return RunReport("hubspot", [companies, contacts], run_id="r1", status="partial")


def test_the_report_says_who_stopped_a_record() -> None:
    text = render_run(_report())
    assert "| rejected by syncer | 2 |" in text
    assert "| refused by the destination | 3 |" in text
    assert "| sent | 44 |" in text


def test_the_report_tallies_the_stage_moves_of_every_record_sent() -> None:
    text = render_run(_report())
    rows = [line for line in text.splitlines() if line.startswith("| contacts |")]
    # Every move, most frequent first; a create shows as a move from nothing.
    assert rows == [
        "| contacts | MQL | CUS | 40 |",
        "| contacts | CUS | churned | 2 |",
        "| contacts | — | PRO | 2 |",
    ]
    assert "Stage changes (every record sent)" in text


def test_a_report_without_stage_moves_has_no_stage_section() -> None:
    report = _report()
    for obj in report.objects:
        obj.stage_moves.clear()
    assert "Stage changes" not in render_run(report)


def test_the_lease_outlasts_the_longest_wait_before_a_task_retry() -> None:
    longest = max(_TASK_OPTIONS["retry_delay_seconds"])
    jitter = _TASK_OPTIONS["retry_jitter_factor"]
    assert longest * (1 + jitter) < LEASE_SECONDS
