"""Sync commands: ``syncer run``, ``status``, ``errors``, ``retry`` (``plan`` is in plan_cmds).

Each of ``run``, ``status`` and ``errors`` takes ``--json``: one JSON document on stdout, with the
keys docs/cli.md lists (stable: a key is added, never renamed or removed)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from syncer.cli.app import JsonOption, app, console, print_json
from syncer.config import load_config
from syncer.engine import ApplyStats, ObjectReport, RunReport, Sync
from syncer.errors import ConfigError, Problem
from syncer.state import FailureLog, RunLog
from syncer.state.failures import Failure
from syncer.state.runs import RunInfo

CONFIG_ENV = "SYNCER_CONFIG"

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        envvar=CONFIG_ENV,
        help="The sync configuration file.",
        show_default=True,
    ),
]
DestinationOption = Annotated[
    str, typer.Option("--destination", "-d", help="The destination's name in the config file.")
]
DestinationFilter = Annotated[
    str | None, typer.Option("--destination", "-d", help="Only this destination.")
]

FullOption = Annotated[
    bool,
    typer.Option(
        "--full",
        help="Read the whole store, not only what changed since the last completed run.",
    ),
]


ClusterOption = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        metavar="local:N|tcp://HOST:PORT",
        help="Plan and write key-range partitions on Dask workers: local:N starts N worker "
        "processes for this command; tcp://HOST:PORT uses a running dask scheduler (its store "
        "and state must be PostgreSQL). Needs pip install 'syncer[dask]'.",
    ),
]


def checked_cluster(sync: Sync, cluster: str | None) -> str | None:
    """``--cluster`` as given, checked against the config before anything runs: a value that
    names no cluster, or a running cluster with a SQLite store or state, is a usage error."""
    try:
        sync.check_cluster(cluster)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--cluster") from None
    return cluster


def open_sync(config: Path) -> Sync:
    """A :class:`Sync` for the config file, with a clear error when the file is missing."""
    if not config.exists():
        raise ConfigError(
            Problem(
                f"no configuration file at {config}",
                hint=f"Pass --config FILE or set {CONFIG_ENV}; examples/syncer.yaml is a commented "
                "example to copy",
            )
        )
    return Sync(load_config(config))


# --- run ----------------------------------------------------------------------------------------


@app.command()
def run(
    destination: DestinationOption,
    config: ConfigOption = Path("syncer.yaml"),
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for another run's lease to end.")
    ] = 0.0,
    as_json: JsonOption = False,
    full: FullOption = False,
    cluster: ClusterOption = None,
) -> None:
    """Sync one destination: send what changed, record what the destination acknowledged.

    Exits 1 when the run did not succeed (its report says why)."""
    with open_sync(config) as sync:
        checked_cluster(sync, cluster)
        started = time.monotonic()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=as_json or not console.is_terminal,
        ) as bar:
            tasks: dict[str, Any] = {}

            def progress(obj: str, stats: ApplyStats) -> None:
                if obj not in tasks:
                    tasks[obj] = bar.add_task(f"{destination} {obj}", total=None, stats="")
                text = (
                    f"{stats.acknowledged + stats.rejected} records, "
                    f"{stats.records_per_second:.0f}/s, {stats.requests} requests, "
                    f"{stats.retries} retries"
                )
                bar.update(tasks[obj], stats=text)

            report = sync.run(
                destination, progress=progress, lease_wait=wait, full=full, cluster=cluster
            )
        elapsed = time.monotonic() - started
    if as_json:
        print_json({**run_json(report, elapsed), "cluster": cluster})
    else:
        print_run(report, elapsed)
    if report.status != "succeeded":
        raise typer.Exit(1)


def run_json(report: RunReport, elapsed: float | None = None) -> dict[str, Any]:
    """``syncer run --json``: the run's report from :class:`RunReport`'s public fields."""
    return {
        "run_id": report.run_id,
        "destination": report.destination,
        **report.cost(),  # mode, read
        "status": report.status,
        "message": report.message,
        "elapsed": round(report.elapsed if elapsed is None else elapsed, 3),
        "objects": [
            {
                "object": o.object,
                "counts": o.counts.as_dict(),
                "sent": o.sent,
                "refused": o.refused,
                "requests": o.requests,
                "retries": o.retries,
                "errors": [{"key": key, "reason": reason} for key, reason in o.errors],
            }
            for o in report.objects
        ],
    }


_SHORT = {
    "create": "new",
    "update": "upd",
    "unchanged": "same",
    "remove": "gone",
    "rejected": "rej",
    "skipped": "skip",
}


def print_run(report: RunReport, elapsed: float) -> None:
    """The run's report: per-object counts, what was sent, the first errors."""
    table = Table(
        title=f"run {report.run_id[:8]} of {report.destination}: {report.status}",
        caption="rej: rejected by syncer (formatting refused the record) · "
        "refused: refused by the destination",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
    )
    # Short headings: the table must fit an 80-column terminal.
    for col in ("object", *_SHORT.values(), "sent", "refused", "req", "retry"):
        table.add_column(col, justify="left" if col == "object" else "right", no_wrap=True)
    for obj in report.objects:
        table.add_row(
            obj.object,
            *(str(v) for v in obj.counts.as_dict().values()),
            str(obj.sent),
            str(obj.refused),
            str(obj.requests),
            str(obj.retries),
        )
    console.print(table)
    links = getattr(report, "links", None)
    if links is not None:
        console.print(
            f"associations: {links.created} created, {links.removed} removed, "
            f"{links.failed} failed, {links.waiting} waiting for a remote id"
        )
    _print_errors(report.objects)
    if report.message and report.status != "succeeded":
        console.print(Text(report.message, style="red"))
    console.print(f"{elapsed:.1f} s")


def _print_errors(objects: list[ObjectReport]) -> None:
    for obj in objects:
        for key, reason in obj.errors:
            console.print(Text(f"not sent: {obj.object} {key}: {reason}", style="yellow"))


# --- status, errors, retry ----------------------------------------------------------------------


@app.command()
def status(
    config: ConfigOption = Path("syncer.yaml"),
    destination: DestinationFilter = None,
    last: Annotated[int, typer.Option(min=1, help="How many recent runs to show.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """Recent runs with their status and counts."""
    with open_sync(config) as sync:
        runs = RunLog(sync.state).last_runs(destination, limit=last)
    if as_json:
        print_json({"runs": [_run_info_json(info) for info in runs]})
        return
    table = Table(box=box.SIMPLE_HEAD)
    # One line per run: the other columns keep their width, the counts are cut to the terminal
    # (`--json` has them all).
    widest = max((len(info.destination) for info in runs), default=0)
    for col, width in (("run", 8), ("destination", widest), ("status", 11), ("started", 14)):
        table.add_column(col, no_wrap=True, min_width=max(width, len(col)))
    table.add_column("seconds", no_wrap=True, justify="right", min_width=7)
    table.add_column("counts", no_wrap=True, overflow="ellipsis")
    for info in runs:
        counts = ", ".join(f"{k} {v}" for k, v in info.counts.items() if v)
        seconds = _seconds(info)
        table.add_row(
            info.run_id[:8],
            info.destination,
            info.display_status,
            info.started_at.strftime("%m-%d %H:%M:%S"),
            "" if seconds is None else f"{seconds:.1f}",
            counts,
        )
    console.print(table if runs else "no runs yet")


def _seconds(info: RunInfo) -> float | None:
    if info.finished_at is None:
        return None
    return (info.finished_at - info.started_at).total_seconds()


def _run_info_json(info: RunInfo) -> dict[str, Any]:
    seconds = _seconds(info)
    return {
        "run_id": info.run_id,
        "destination": info.destination,
        "status": info.display_status,
        "dry_run": info.dry_run,
        "started_at": info.started_at.isoformat(),
        "finished_at": info.finished_at.isoformat() if info.finished_at else None,
        "seconds": None if seconds is None else round(seconds, 3),
        "counts": dict(info.counts),
        "message": info.message,
    }


@app.command()
def errors(
    config: ConfigOption = Path("syncer.yaml"),
    destination: DestinationFilter = None,
    set_aside: Annotated[
        bool, typer.Option("--set-aside", help="Only records set aside (dead-letter list).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Records the destination refused: reason, attempts, set aside or retried next run."""
    with open_sync(config) as sync:
        failures = list(FailureLog(sync.state).iter_failures(destination))
    if set_aside:
        failures = [f for f in failures if f.set_aside]
    if as_json:
        print_json({"errors": [_failure_json(f) for f in failures]})
        return
    table = Table(box=box.SIMPLE_HEAD)
    for col in ("destination", "object", "key", "attempts", "state", "field", "reason"):
        table.add_column(col)
    for f in failures:
        table.add_row(
            f.destination,
            f.object,
            f.key,
            str(f.attempts),
            "set aside" if f.set_aside else "retried next run",
            f.field or "",
            Text(f.reason),
        )
    console.print(table if failures else "no rejected records")


def _failure_json(f: Failure) -> dict[str, Any]:
    return {
        "destination": f.destination,
        "object": f.object,
        "key": f.key,
        "reason": f.reason,
        "field": f.field,
        "attempts": f.attempts,
        "set_aside": f.set_aside,
        "first_seen": f.first_seen.isoformat(),
        "last_seen": f.last_seen.isoformat(),
        "run_id": f.run_id,
    }


@app.command()
def retry(
    destination: DestinationOption,
    config: ConfigOption = Path("syncer.yaml"),
    keys: Annotated[
        list[str] | None, typer.Argument(help="Keys to retry (default: all set aside).")
    ] = None,
) -> None:
    """Put set-aside records back in line: the next run sends them again."""
    with open_sync(config) as sync:
        sync.config.destination(destination)
        changed = FailureLog(sync.state).retry(destination, keys or None)
    console.print(f"{changed} record(s) will be sent again by the next run of {destination}")
