"""Sync commands: ``syncer plan``, ``run``, ``status``, ``errors``, ``retry``."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from syncer.cli.app import app, console
from syncer.config import load_config
from syncer.engine import ApplyStats, ObjectReport, PlanReport, RunReport, Sync
from syncer.errors import ConfigError, Problem
from syncer.fields import FieldType, companion_names
from syncer.mapping import MappingFile
from syncer.plan import ACTIONS, Change
from syncer.state import FailureLog, RunLog

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


# --- plan ---------------------------------------------------------------------------------------


@app.command()
def plan(
    destination: DestinationOption,
    config: ConfigOption = Path("syncer.yaml"),
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    explain: Annotated[
        str | None, typer.Option("--explain", metavar="KEY", help="Show one record in full.")
    ] = None,
    samples: Annotated[int, typer.Option(help="Sample changes shown per object.")] = 5,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Processes to plan in, one key range each (pays off on large stores).",
        ),
    ] = 1,
) -> None:
    """Dry run: what a sync would send, per object — nothing is written anywhere."""
    with open_sync(config) as sync:
        report = sync.plan(
            destination,
            samples=samples,
            keys=[explain] if explain else None,
            workers=workers,
        )
        mapping = sync.destination(destination).mapping
    rules = field_rules(mapping)
    if as_json:
        console.print_json(json.dumps(plan_json(report, rules)))
        return
    _print_counts(report)
    for obj in report.objects:
        for change in obj.samples:
            _print_change(change, rules, full=explain is not None)
    if explain and not any(o.samples for o in report.objects):
        console.print(f"no record with key {explain!r} in the source or the sync state")


def field_rules(mapping: MappingFile) -> dict[tuple[str, str], str]:
    """(object, field) → what fills that field: ``file:line template`` for a mapped field, and
    a sentence for the product id and the token companions."""
    rules: dict[tuple[str, str], str] = {}
    for obj in mapping.objects:
        id_name = "user_id" if obj.source == "users" else "account_id"
        rules[(obj.name, obj.key_field)] = f"the product's {id_name} (the object's key)"
        for f in obj.fields:
            rules[(obj.name, f.spec.name)] = f"{mapping.path.name}:{f.line} {f.template}"
            if f.spec.type is FieldType.TOKENS and f.spec.companions:
                count, truncated = companion_names(f.spec.name, f.spec.suffix)
                rules[(obj.name, count)] = f"how many tokens {f.spec.name} has, dropped ones too"
                limit = f"{f.spec.max_length} characters" if f.spec.max_length else "its limit"
                rules[(obj.name, truncated)] = (
                    f"true when tokens of {f.spec.name} were dropped to fit {limit}"
                )
    return rules


def plan_json(
    report: PlanReport, rules: Mapping[tuple[str, str], str] | None = None
) -> dict[str, Any]:
    """The plan as JSON-ready data (``syncer plan --json``); with ``rules`` (see
    :func:`field_rules`) each object lists what fills each of its fields."""
    known = rules or {}
    return {
        "destination": report.destination,
        "totals": report.totals(),
        "objects": [
            {
                "object": o.object,
                "counts": o.counts.as_dict(),
                "samples": [_change_json(c) for c in o.samples],
                "rules": {f: rule for (obj, f), rule in known.items() if obj == o.object},
            }
            for o in report.objects
        ],
    }


def _change_json(change: Change) -> dict[str, Any]:
    return {
        "key": change.key,
        "action": change.action,
        "changes": dict(change.changes),
        "before": dict(change.before) if change.before is not None else None,
        "payload": dict(change.payload),
        "reason": change.reason,
        "field": change.field,
    }


def _print_counts(report: PlanReport) -> None:
    table = Table(title=f"plan for {report.destination}", box=box.SIMPLE_HEAD)
    table.add_column("object")
    for action in ACTIONS:
        table.add_column(action, justify="right")
    for obj in report.objects:
        table.add_row(obj.object, *(str(v) for v in obj.counts.as_dict().values()))
    console.print(table)


def _print_change(change: Change, rules: Mapping[tuple[str, str], str], *, full: bool) -> None:
    title = f"{change.object} {change.key}: {change.action}"
    if change.reason:
        title += f" — {change.reason}"
    fields = list(change.payload if full else change.changes)
    table = Table(title=title, box=box.SIMPLE, title_justify="left", show_edge=False)
    # Field names are never cut: two companions differ only at their end.
    table.add_column("field", no_wrap=True, min_width=max(map(len, fields), default=5))
    table.add_column("before", overflow="fold")
    table.add_column("→ after", overflow="fold")
    table.add_column("from", style="dim", overflow="fold")
    before = change.before or {}
    for name in fields:
        old, new = before.get(name), change.payload.get(name)
        mark = "" if old != new else " (same)"
        table.add_row(
            name,
            Text(_show(old)),
            Text(_show(new) + mark),
            Text(rules.get((change.object, name), "not in the mapping")),
        )
    console.print(table)


def _show(value: object) -> str:
    if value is None:
        return "∅"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "…"


# --- run ----------------------------------------------------------------------------------------


@app.command()
def run(
    destination: DestinationOption,
    config: ConfigOption = Path("syncer.yaml"),
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for another run's lease to end.")
    ] = 0.0,
) -> None:
    """Sync one destination: send what changed, record what the destination acknowledged."""
    with open_sync(config) as sync:
        started = time.monotonic()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
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

            report = sync.run(destination, progress=progress, lease_wait=wait)
        print_run(report, time.monotonic() - started)
    if report.status != "succeeded":
        raise typer.Exit(1)


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
    if report.links is not None:
        links = report.links
        console.print(
            f"associations: {links.created} created, {links.removed} removed, "
            f"{links.failed} failed, {links.waiting} waiting for a remote id"
        )
    _print_errors(report.objects)
    console.print(f"{elapsed:.1f} s")


def _print_errors(objects: list[ObjectReport]) -> None:
    for obj in objects:
        for key, reason in obj.errors:
            console.print(Text(f"not sent: {obj.object} {key}: {reason}", style="yellow"))


# --- status, errors, retry ----------------------------------------------------------------------


@app.command()
def status(
    config: ConfigOption = Path("syncer.yaml"),
    destination: Annotated[
        str | None, typer.Option("--destination", "-d", help="Only this destination.")
    ] = None,
    last: Annotated[int, typer.Option(help="How many recent runs to show.")] = 10,
) -> None:
    """Recent runs with their status and counts."""
    with open_sync(config) as sync:
        runs = RunLog(sync.state).last_runs(destination, limit=last)
    table = Table(box=box.SIMPLE_HEAD)
    for col in ("run", "destination", "status", "started", "seconds", "counts"):
        table.add_column(col)
    for info in runs:
        counts = ", ".join(f"{k} {v}" for k, v in info.counts.items() if v)
        seconds = (
            f"{(info.finished_at - info.started_at).total_seconds():.1f}"
            if info.finished_at
            else ""
        )
        table.add_row(
            info.run_id[:8],
            info.destination,
            info.display_status,
            info.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            seconds,
            counts,
        )
    console.print(table if runs else "no runs yet")


@app.command()
def errors(
    config: ConfigOption = Path("syncer.yaml"),
    destination: Annotated[
        str | None, typer.Option("--destination", "-d", help="Only this destination.")
    ] = None,
    set_aside: Annotated[
        bool, typer.Option("--set-aside", help="Only records set aside (dead-letter list).")
    ] = False,
) -> None:
    """Records the destination refused: reason, attempts, set aside or retried next run."""
    with open_sync(config) as sync:
        failures = list(FailureLog(sync.state).iter_failures(destination))
    if set_aside:
        failures = [f for f in failures if f.set_aside]
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
