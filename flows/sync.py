"""Prefect flows: the engine's steps as tasks, a report as artifacts.

The engine (:mod:`syncer.engine`) does the work and owns batching, retries, rate limits and
state; these flows only schedule it. One task per step of a run — ``ensure``, one ``apply`` per
destination object (a shard of all that object's batches), ``associate`` — never one per record
or per batch, so a run is ``2 + objects`` task runs (plus retries) whether it sends ten records
or a million.

Task retries are for the engine's retriable errors only (a destination still refusing after the
engine's own backoff); a bug, a configuration error or a lost lease fails at once. A retried
``apply`` task re-plans against the sync state, so it sends only what the failed attempt did not
get acknowledged.

With ``cluster`` (``local:N`` or ``tcp://HOST:PORT``, as ``syncer run --cluster``) a run is a
child flow on prefect-dask's ``DaskTaskRunner`` (:mod:`flows.cluster`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast
from uuid import UUID

from prefect import Flow, State, Task, flow, get_client, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.client.schemas.objects import TaskRun
from prefect.logging.handlers import APILogHandler

from syncer.config import load_config
from syncer.engine import ObjectReport, PlanReport, RunReport, RunSession, Sync
from syncer.errors import LeaseLostError, RetriableError, RetriesExhausted
from syncer.state import RecordState
from syncer.tokens import parse_tokens

__all__ = ["load_secret", "read_report", "sync", "sync_all"]

log = logging.getLogger("syncer.flows")


@contextmanager
def engine_logs_in_run_logs() -> Iterator[None]:
    """Send the engine's ``syncer.*`` log records to the current flow run's logs.

    ``PREFECT_LOGGING_EXTRA_LOGGERS`` cannot do it from here: a worker's flow-run process imports
    Prefect (and configures logging) before it loads this module, and the extra loggers keep the
    root's WARNING level, which drops the engine's INFO summaries. So the handler is attached for
    the flow run only, at the run logger's level, and taken off again: outside a run, syncer's
    logs stay ordinary Python logging.
    """
    logger = logging.getLogger("syncer")
    level = logging.getLogger("prefect.flow_runs").getEffectiveLevel()
    added: APILogHandler | None = None
    if not any(isinstance(h, APILogHandler) for h in logger.handlers):
        added = APILogHandler()
        logger.addHandler(added)
    old_level = logger.level
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old_level)
        if added is not None:
            logger.removeHandler(added)


def load_secret(name: str) -> str:
    """A credential from a Prefect Secret block (``prefect-secret:NAME`` in syncer.yaml)."""
    from prefect.blocks.system import Secret

    # ``load`` is async-dispatched: in a synchronous caller it returns the block itself.
    block = cast("Secret[Any]", Secret.load(name))
    return str(block.get())


def retry_transient(_task: Task[..., Any], _run: TaskRun, state: State[Any]) -> bool:
    """Retry a task only for what may pass with time: never for bugs or bad configuration.

    A lost lease is not retried either: another run owns the destination now, and this run's
    session can never get its lease back."""
    try:
        state.result()
    except LeaseLostError:
        return False
    except (RetriableError, RetriesExhausted):
        return True
    except Exception:
        return False
    return False


_RETRY_DELAYS = [10, 60, 300]
_RETRY_JITTER = 0.2
#: The run's lease on its destination, in seconds. Nothing renews it while Prefect waits before a
#: task retry, so it outlasts the longest wait (300 s + 20 % jitter = 360 s) with room for the
#: engine's own backoff inside a batch (at most 60 s a wait); each task renews it when it starts.
#: A worker that dies holds the destination for at most this long.
LEASE_SECONDS = 600.0

_TASK_OPTIONS: dict[str, Any] = {
    "retries": len(_RETRY_DELAYS),
    "retry_delay_seconds": _RETRY_DELAYS,
    "retry_jitter_factor": _RETRY_JITTER,
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
    # A retry starts a fresh attempt: drop the failed attempt's partial report first. The engine
    # logs the object's summary (surfaced in the run logs).
    session.report.objects = [o for o in session.report.objects if o.object != object_name]
    rep = session.apply_object(object_name)
    return {"sent": rep.sent, "rejected": rep.counts.rejected, "refused": rep.refused}


@task(name="associate", **_TASK_OPTIONS)
def associate_task(session: RunSession) -> None:
    session.associate()


@task(name="plan", cache_policy=NO_CACHE, persist_result=False)
def plan_task(
    sync_: Sync, destination: str, full: bool = False, cluster: str | None = None
) -> PlanReport:
    return sync_.plan(destination, full=full, cluster=cluster)


@flow(name="syncer-sync", log_prints=False)
def sync(  # noqa: PLR0917  a flow's parameters are its deployments' form, passed by name
    config: str = "syncer.yaml",
    destination: str = "hubspot",
    full_refresh: bool = False,
    dry_run: bool = False,
    full: bool = False,
    cluster: str | None = None,
) -> dict[str, Any]:
    """Sync one destination of ``config``; ``dry_run`` plans only, ``full_refresh`` forgets the
    sync state first so every record is sent again (upserts make that safe); ``full`` reads
    the whole store instead of what changed since the last completed run (a full refresh
    does too); ``cluster`` (``local:N``, ``tcp://HOST:PORT``) plans and writes key-range
    partitions on Dask workers (the module docstring)."""
    logger = get_run_logger()
    with engine_logs_in_run_logs(), Sync(load_config(config), secret_loader=load_secret) as engine:
        spec = engine.check_cluster(cluster)  # refused before anything is written
        if dry_run:
            plan = plan_task(engine, destination, full, cluster)
            publish_plan(plan)
            return {"destination": destination, "dry_run": True, **plan.totals()}
        if full_refresh:
            forgotten = RecordState(engine.state).reset(destination)
            logger.info("full refresh: forgot %d recorded records of %s", forgotten, destination)
        if spec is not None:  # a child flow on prefect-dask's task runner
            from flows.cluster import dask_task_runner, sync_partitions

            on_cluster = sync_partitions.with_options(task_runner=dask_task_runner(spec))
            result: dict[str, Any] = on_cluster(
                config, destination, full or full_refresh, spec.text
            )
            return result
        with engine.start_run(
            destination, lease_ttl=LEASE_SECONDS, full=full or full_refresh
        ) as session:
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
    config: str = "syncer.yaml",
    destinations: list[str] | None = None,
    full_refresh: bool = False,
    dry_run: bool = False,
) -> list[dict[str, Any]]:
    """Sync several destinations of ``config`` in order (all of them by default), each as a
    child flow run; one failing does not stop the others, and the parent then fails."""
    names = destinations or list(load_config(config).destinations)
    results: list[dict[str, Any]] = []
    failed: list[str] = []
    for name in names:
        state = sync(
            config=config,
            destination=name,
            full_refresh=full_refresh,
            dry_run=dry_run,
            return_state=True,
        )
        if state.is_completed():
            results.append(state.result())
        else:
            failed.append(name)
            results.append({"destination": name, "status": "failed"})
    if failed:
        raise RuntimeError(f"destinations failed: {', '.join(failed)}")
    return results


# --- artifacts ------------------------------------------------------------------------------------


def artifact_key(destination: str, kind: str) -> str:
    """The stable key of a destination's artifact: ``syncer-<destination>-<kind>``."""
    # Artifact keys allow lowercase letters, digits and dashes only.
    safe = "".join(c if c.isalnum() else "-" for c in destination.lower())
    return f"syncer-{safe}-{kind}"


def _figures(objects: list[ObjectReport], *, ran: bool) -> dict[str, int]:
    """The headline figures of one object (or, summed, of a run)."""
    counts = [o.counts for o in objects]
    out = {
        "planned": sum(c.create + c.update + c.unchanged + c.remove + c.rejected + c.skipped
                       for c in counts),
        "unchanged": sum(c.unchanged for c in counts),
        "to send": sum(c.to_send for c in counts),
        "skipped": sum(c.skipped for c in counts),
    }  # fmt: skip
    if ran:
        out["sent"] = sum(o.sent for o in objects)
        out["rejected by syncer"] = sum(c.rejected for c in counts)
        out["refused by the destination"] = sum(o.refused for o in objects)
        out["set aside"] = sum(o.set_aside for o in objects)
        out["requests"] = sum(o.requests for o in objects)
        out["retries"] = sum(o.retries for o in objects)
    else:
        out["rejected"] = sum(c.rejected for c in counts)
    return out


def _rows(objects: list[ObjectReport], *, ran: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"object": o.object, **o.counts.as_dict(), **_figures([o], ran=ran)} for o in objects
    ]
    return rows


def _cell(value: object) -> str:
    """A value for a markdown table cell; a token list also shown decoded."""
    if value is None:
        return "—"
    text = str(value)
    readable = ""
    if len(text) > 2 and text.startswith(";") and text.endswith(";"):
        try:
            readable = " · ".join(":".join(parts) for parts in parse_tokens(text))
        except ValueError:
            readable = ""
    text = text.replace("|", "\\|")
    return f"`{text}` ({readable})" if readable else f"`{text}`"


def _samples_md(objects: list[ObjectReport]) -> list[str]:
    lines = []
    for o in objects:
        for change in o.samples[:3]:
            lines.append(f"**{o.object} {change.key}** ({change.action})\n")
            lines.append("| field | before | after |\n|---|---|---|")
            before: Mapping[str, Any] = change.before or {}
            for name, value in change.changes.items():
                lines.append(f"| `{name}` | {_cell(before.get(name))} | {_cell(value)} |")
            lines.append("")
    return lines


def publish_plan(report: PlanReport) -> None:
    """A table artifact of the plan's counts and a markdown one with samples."""
    create_table_artifact(
        key=artifact_key(report.destination, "plan"),
        table=_rows(report.objects, ran=False),
        description=f"syncer plan for {report.destination}",
    )
    create_markdown_artifact(
        key=artifact_key(report.destination, "plan-samples"),
        markdown="\n".join([f"# Plan for {report.destination}", "", *_samples_md(report.objects)]),
    )


def render_run(report: RunReport) -> str:
    """The markdown report of a run: status, counts, top errors, stage changes, samples."""
    lines = [
        f"# syncer run of {report.destination}: {report.status}",
        "",
        f"run `{report.run_id}`, {report.elapsed:.1f} s, policy marks saved: {report.marks_saved}",
        "",
        "| figure | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in _figures(report.objects, ran=True).items()),
    ]
    if report.links is not None:
        lines += [
            f"| associations created | {report.links.created} |",
            f"| associations removed | {report.links.removed} |",
        ]
    lines.append("")
    errors = [(o.object, k, r) for o in report.objects for k, r in o.errors]
    if errors:
        lines += ["## Top errors", "", "| object | key | reason |", "|---|---|---|"]
        lines += [f"| {o} | `{k}` | {r} |" for o, k, r in errors[:10]]
        lines.append("")
    stage_moves = [
        (o.object, before, after, n)
        for o in report.objects
        for (before, after), n in sorted(
            o.stage_moves.items(), key=lambda item: (-item[1], str(item[0]))
        )
    ]
    if stage_moves:
        lines += [
            "## Stage changes (every record sent)",
            "",
            "| object | from | to | records |",
            "|---|---|---|---|",
        ]
        lines += [f"| {o} | {a or '—'} | {b or '—'} | {n} |" for o, a, b, n in stage_moves]
        lines.append("")
    if report.message:
        lines += ["## Error", "", f"```\n{report.message}\n```", ""]
    samples = _samples_md(report.objects)
    if samples:
        lines += ["## Samples (fields sent, before and after)", "", *samples]
    return "\n".join(lines)


def publish_run(report: RunReport) -> None:
    """A table artifact of the run's counts per object and the markdown report."""
    create_table_artifact(
        key=artifact_key(report.destination, "run"),
        table=_rows(report.objects, ran=True),
        description=f"syncer run {report.run_id} of {report.destination}: {report.status}",
    )
    create_markdown_artifact(
        key=artifact_key(report.destination, "report"),
        markdown=render_run(report),
        description=f"syncer run {report.run_id} of {report.destination}: {report.status}",
    )


def read_report(flow_run_id: UUID, destination: str) -> str | None:
    """The markdown report a flow run published for ``destination`` (None if it has none)."""
    key = artifact_key(destination, "report")
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    for artifact in found:
        if artifact.key == key and isinstance(artifact.data, str):
            return artifact.data
    return None


def flows() -> list[Flow[..., Any]]:
    """The flows this module defines (for serve.py and tests)."""
    return [sync, sync_all]
