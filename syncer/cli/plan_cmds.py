"""``syncer plan``: what a sync would send, written nowhere.

Three readings of one plan:

* the default — the counts per object, then **one line per changed record** (action, object, key,
  what changes), each cut to the terminal's width: a plan of 25 records is about 35 lines;
* ``--verbose`` — per record, a table of every changed field, before → after, with the template
  (``file:line``) or the rule that fills it; ``--explain KEY`` does the same for one record, every
  field included;
* ``--json`` — the same data for programs (keys in docs/cli.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from syncer.cli.app import JsonOption, app, console, print_json
from syncer.cli.sync_cmds import (
    ClusterOption,
    ConfigOption,
    DestinationOption,
    FullOption,
    checked_cluster,
    open_sync,
)
from syncer.engine import PlanReport
from syncer.fields import FieldType, companion_names
from syncer.mapping import MappingFile
from syncer.plan import ACTIONS, Change

__all__ = ["field_rules", "plan", "plan_json"]

#: How a record's action reads at the start of its line (same width: the keys line up).
_ACTION_WORD = {"create": "create", "update": "update", "remove": "remove", "rejected": "reject"}
_STYLE = {"create": "green", "update": "yellow", "remove": "red", "rejected": "magenta"}
_VALUE_WIDTH = 40  # a longer value is cut: the line is for seeing what changes, not reading it


@app.command()
def plan(
    destination: DestinationOption,
    config: ConfigOption = Path("syncer.yaml"),
    as_json: JsonOption = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Every changed field of each record, with its template."
        ),
    ] = False,
    explain: Annotated[
        str | None, typer.Option("--explain", metavar="KEY", help="Show one record in full.")
    ] = None,
    samples: Annotated[
        int, typer.Option(min=0, help="Changed records shown per object (the counts cover all).")
    ] = 50,
    cluster: ClusterOption = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Same as --cluster local:N (N worker processes on this machine).",
        ),
    ] = None,
    full: FullOption = False,
) -> None:
    """Dry run: what a sync would send, per object — nothing is written anywhere."""
    if workers is not None:
        if cluster is not None:
            raise typer.BadParameter(
                "give --cluster or --workers, not both (--workers N is --cluster local:N)",
                param_hint="--workers",
            )
        cluster = f"local:{workers}" if workers > 1 else None
    with open_sync(config) as sync:
        checked_cluster(sync, cluster)
        report = sync.plan(
            destination,
            samples=samples,
            keys=[explain] if explain else None,
            cluster=cluster,
            full=full,
        )
        mapping = sync.destination(destination).mapping
    rules = field_rules(mapping)
    if as_json:
        print_json({**plan_json(report, rules), "cluster": cluster})
        return
    _print_counts(report)
    if explain is not None or verbose:
        for obj in report.objects:
            for change in obj.samples:
                _print_change(change, rules, full=explain is not None)
    else:
        _print_lines(report)
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
        **report.cost(),  # mode, read
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
    totals = report.totals()
    to_send = sum(totals.get(a, 0) for a in ("create", "update", "remove"))
    table = Table(
        title=f"plan for {report.destination}: {to_send} record(s) to send",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
    )
    table.add_column("object", no_wrap=True)
    for action in ACTIONS:
        table.add_column(action, justify="right", no_wrap=True)
    for obj in report.objects:
        table.add_row(obj.object, *(str(v) for v in obj.counts.as_dict().values()))
    console.print(table)


def _print_lines(report: PlanReport) -> None:
    """One line per changed record, cut to the terminal's width, then what was left out."""
    width = max((len(o.object) for o in report.objects), default=0)
    key_width = min(max((len(c.key) for o in report.objects for c in o.samples), default=0), 24)
    hidden = 0
    for obj in report.objects:
        for change in obj.samples:
            line = Text.assemble(
                (f"{_ACTION_WORD.get(change.action, change.action):<7}", _STYLE[change.action]),
                f"{obj.object:<{width}} ",
                (f"{change.key:<{key_width}}", "bold"),
                "  ",
                _what_changes(change),
            )
            console.print(line, no_wrap=True, overflow="ellipsis", crop=True, highlight=False)
        counts = obj.counts
        hidden += counts.to_send + counts.rejected - len(obj.samples)
    if hidden > 0:
        console.print(
            f"… and {hidden} more changed record(s): --samples N shows more, "
            "--verbose every field, --json all of it",
            style="dim",
        )
    elif any(o.samples for o in report.objects):
        console.print("--verbose shows every changed field with its template", style="dim")


def _what_changes(change: Change) -> str:
    if change.action == "rejected":
        where = f" (field {change.field})" if change.field else ""
        return f"{change.reason or 'rejected'}{where}"
    before = change.before or {}
    if change.action == "create":
        parts = [f"{k}={_cut(v)}" for k, v in change.changes.items() if v not in (None, "")]
        # The key is already on the line: its field is counted, not repeated.
        shown = [p for p in parts if p.partition("=")[2] != change.key]
        return f"{len(parts)} field(s): " + ", ".join(shown)
    parts = [f"{k} {_cut(before.get(k))} → {_cut(v)}" for k, v in change.changes.items()]
    return ", ".join(parts) if parts else "no field changes"


def _cut(value: object) -> str:
    if value is None or value == "":
        return "∅"
    text = str(value)
    return text if len(text) <= _VALUE_WIDTH else text[: _VALUE_WIDTH - 1] + "…"


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
