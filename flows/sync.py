"""Prefect flows: the engine's steps as tasks, a report as artifacts.

The engine (:mod:`syncer.engine`) does the work and owns batching, retries, rate limits and
state; these flows only schedule it. One task per step of a run — ``ensure``, one ``apply`` per
destination object (a shard of many batches), ``associate`` — never one per record, so a run of a
million records is a handful of task runs.

Task retries are for the engine's retriable errors only (a destination still refusing after the
engine's own backoff, another run holding the lease); a bug or a configuration error fails at
once. A retried ``apply`` task re-plans against the sync state, so it sends only what the failed
attempt did not get acknowledged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

# Engine logs ("syncer.*") appear in the flow run's logs. Set before Prefect reads its settings.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "syncer")

from prefect import Flow, State, Task, flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun

from syncer.config import load_config
from syncer.engine import ObjectReport, PlanReport, RunReport, RunSession, Sync
from syncer.errors import LeaseHeldError, RetriableError, RetriesExhausted
from syncer.state import RecordState

__all__ = ["load_secret", "sync", "sync_all"]

log = logging.getLogger("syncer.flows")


def load_secret(name: str) -> str:
    """A credential from a Prefect Secret block (``prefect-secret:NAME`` in syncer.yaml)."""
    from prefect.blocks.system import Secret

    value: Any = Secret.load(name).get()
    return str(value)


def retry_transient(_task: Task[..., Any], _run: TaskRun, state: State[Any]) -> bool:
    """Retry a task only for what may pass with time: never for bugs or bad configuration."""
    try:
        state.result()
    except (RetriableError, RetriesExhausted, LeaseHeldError):
        return True
    except Exception:
        return False
    return False


_TASK_OPTIONS: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": [10, 60, 300],
    "retry_jitter_factor": 0.2,
    "retry_condition_fn": retry_transient,
    # Sessions and reports are live objects: nothing to cache or persist.
    "cache_policy": NO_CACHE,
    "persist_result": False,
}


@task(name="ensure fields", **_TASK_OPTIONS)
def ensure_task(session: RunSession) -> None:
    session.ensure()


@task(name="apply", task_run_name="apply {object_name}", **_TASK_OPTIONS)
def apply_task(session: RunSession, object_name: str) -> dict[str, int]:
    logger = get_run_logger()
    # A retry starts a fresh attempt: drop the failed attempt's partial report first.
    session.report.objects = [o for o in session.report.objects if o.object != object_name]
    rep = session.apply_object(object_name)
    logger.info(
        "%s: %s; sent %d, failed %d in %d requests",
        object_name,
        rep.counts.as_dict(),
        rep.sent,
        rep.failed,
        rep.requests,
    )
    return {"sent": rep.sent, "failed": rep.failed}


@task(name="associate", **_TASK_OPTIONS)
def associate_task(session: RunSession) -> None:
    session.associate()


@task(name="plan", cache_policy=NO_CACHE, persist_result=False)
def plan_task(sync_: Sync, destination: str) -> PlanReport:
    return sync_.plan(destination)


@flow(name="syncer-sync", log_prints=False)
def sync(
    config: str = "syncer.yaml",
    destination: str = "hubspot",
    full_refresh: bool = False,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Sync one destination of ``config``; ``dry_run`` plans only, ``full_refresh`` forgets the
    sync state first so every record is sent again (upserts make that safe)."""
    logger = get_run_logger()
    with Sync(load_config(config), secret_loader=load_secret) as engine:
        if dry_run:
            plan = plan_task(engine, destination)
            publish_plan(plan)
            return {"destination": destination, "dry_run": True, **plan.totals()}
        if full_refresh:
            forgotten = RecordState(engine.state).reset(destination)
            logger.info("full refresh: forgot %d recorded records of %s", forgotten, destination)
        with engine.start_run(destination) as session:
            ensure_task(session)
            for obj in session.dest.mapping.objects:
                apply_task(session, obj.name)
            associate_task(session)
        report = session.report
        publish_run(report)
        logger.info("run %s of %s: %s", report.run_id, destination, report.status)
        return {"destination": destination, "status": report.status, **report.run_counts()}


@flow(name="syncer-sync-all", log_prints=False)
def sync_all(
    config: str = "syncer.yaml", destinations: list[str] | None = None, dry_run: bool = False
) -> list[dict[str, Any]]:
    """Sync several destinations of ``config`` in order (all of them by default), each as a
    child flow run; one failing does not stop the others, and the parent then fails."""
    names = destinations or list(load_config(config).destinations)
    results: list[dict[str, Any]] = []
    failed: list[str] = []
    for name in names:
        state = sync(config=config, destination=name, dry_run=dry_run, return_state=True)
        if state.is_completed():
            results.append(state.result())
        else:
            failed.append(name)
            results.append({"destination": name, "status": "failed"})
    if failed:
        raise RuntimeError(f"destinations failed: {', '.join(failed)}")
    return results


# --- artifacts ------------------------------------------------------------------------------------


def _key(destination: str, kind: str) -> str:
    # Artifact keys allow lowercase letters, digits and dashes only.
    safe = "".join(c if c.isalnum() else "-" for c in destination.lower())
    return f"syncer-{safe}-{kind}"


def _rows(objects: list[ObjectReport], extra: bool) -> list[dict[str, Any]]:
    rows = []
    for o in objects:
        row: dict[str, Any] = {"object": o.object, **o.counts.as_dict()}
        if extra:
            row.update(sent=o.sent, rejected_by_destination=o.failed, requests=o.requests)
        rows.append(row)
    return rows


def _samples_md(objects: list[ObjectReport]) -> list[str]:
    lines = []
    for o in objects:
        for change in o.samples[:3]:
            lines.append(f"**{o.object} {change.key}** ({change.action})\n")
            lines.append("| field | before | after |\n|---|---|---|")
            before: Mapping[str, Any] = change.before or {}
            for name, value in change.changes.items():
                lines.append(f"| `{name}` | `{before.get(name)}` | `{value}` |")
            lines.append("")
    return lines


def publish_plan(report: PlanReport) -> None:
    """A table artifact of the plan's counts and a markdown one with samples."""
    create_table_artifact(
        key=_key(report.destination, "plan"),
        table=_rows(report.objects, extra=False),
        description=f"syncer plan for {report.destination}",
    )
    create_markdown_artifact(
        key=_key(report.destination, "plan-samples"),
        markdown="\n".join([f"# Plan for {report.destination}", "", *_samples_md(report.objects)]),
    )


def publish_run(report: RunReport) -> None:
    """A table artifact of the run's counts and a markdown report: status, counts, top errors,
    stage changes and a few flattened samples."""
    create_table_artifact(
        key=_key(report.destination, "run"),
        table=_rows(report.objects, extra=True),
        description=f"syncer run {report.run_id} of {report.destination}: {report.status}",
    )
    counts = report.run_counts()
    lines = [
        f"# syncer run of {report.destination}: {report.status}",
        "",
        f"run `{report.run_id}`, {report.elapsed:.1f} s, policy marks saved: {report.marks_saved}",
        "",
        "| figure | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in counts.items()),
        "",
    ]
    errors = [(o.object, k, r) for o in report.objects for k, r in o.errors]
    if errors:
        lines += ["## Top errors", "", "| object | key | reason |", "|---|---|---|"]
        lines += [f"| {o} | `{k}` | {r} |" for o, k, r in errors[:10]]
        lines.append("")
    stage_moves = [
        (o.object, c.key, (c.before or {}).get(f), c.changes[f])
        for o in report.objects
        for c in o.samples
        for f in c.changes
        if f.endswith("stage") or f.endswith("Stage__c")
    ]
    if stage_moves:
        lines += [
            "## Stage changes (sample)",
            "",
            "| object | key | from | to |",
            "|---|---|---|---|",
        ]
        lines += [f"| {o} | `{k}` | {a} | {b} |" for o, k, a, b in stage_moves[:20]]
        lines.append("")
    if report.message:
        lines += ["## Error", "", f"```\n{report.message}\n```"]
    lines += ["## Samples", "", *_samples_md(report.objects)]
    create_markdown_artifact(key=_key(report.destination, "report"), markdown="\n".join(lines))


def flows() -> list[Flow[..., Any]]:
    """The flows this module defines (for serve.py and tests)."""
    return [sync, sync_all]
