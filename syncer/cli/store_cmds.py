"""Store commands: ``syncer init``, ``syncer load``, ``syncer store stats``, ``syncer store
delete``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import OperationalError

from syncer.cli.app import JsonOption, StoreOption, app, command_group, console, print_json
from syncer.config import load_config
from syncer.db import DEFAULT_STORE_URL, STATE_URL_ENV, STORE_URL_ENV
from syncer.errors import BadInputError, ConfigError, Problem
from syncer.state import init_state
from syncer.store.database import display_url, init_store, open_store
from syncer.store.loaders import load_paths
from syncer.store.readers import store_stats
from syncer.store.removal import DeleteKeys, delete_records, keys_from_file, parse_membership
from syncer.store.reports import LoadReport
from syncer.store.rules import LoadRules

store_app = command_group("store", "Inspect the canonical store.")


class LoadKind(StrEnum):
    """What a file holds, when its name does not say."""

    accounts = "accounts"
    users = "users"
    memberships = "memberships"
    identities = "identities"
    segment = "segment"


@app.command()
def init(
    store: StoreOption = DEFAULT_STORE_URL,
    state: Annotated[
        str | None,
        typer.Option(
            "--state",
            envvar=STATE_URL_ENV,
            help="Sync state URL, if it is not the store's database.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Create the store's tables and the sync state's (safe to run again: it changes nothing).

    The sync state (marks, records, runs) lives in the store's database unless ``--state`` names
    another; ``syncer explain`` and ``syncer status`` read it, so it exists from the start.
    """
    engine = init_store(store)
    try:
        if state is None:
            init_state(engine)
        else:
            init_state(state).dispose()
    except OperationalError as exc:
        raise ConfigError(
            f"cannot create the sync state at {display_url(state or store)}: {exc.orig}"
        ) from None
    finally:
        engine.dispose()
    console.print(Text(f"store ready at {display_url(store)}"), highlight=False)
    if state is not None:
        console.print(Text(f"sync state ready at {display_url(state)}"), highlight=False)


@app.command()
def load(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="CSV / JSON Lines files, or directories of them. The kind comes from the name: "
            "accounts*, users*, memberships*, identities*, events* (Segment calls).",
            show_default=False,
        ),
    ],
    kind: Annotated[
        LoadKind | None,
        typer.Option("--kind", help="What every file holds, overriding the file names."),
    ] = None,
    skip_bad: Annotated[
        bool,
        typer.Option("--skip-bad", help="Load the good rows and list the bad ones, not nothing."),
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Check stages and roll-up values against this sync configuration (and use "
            "its store unless --store is given). Default: the default ladder and roll-ups.",
            show_default=False,
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            envvar=STORE_URL_ENV,
            help="Canonical store URL (SQLAlchemy). Default: the config's, or "
            f"{DEFAULT_STORE_URL}.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Load files into the store: upsert by key, all files in one transaction.

    Any bad row stops the load, writing nothing, and every problem is listed (file, line, field).
    """
    rules = LoadRules.default()
    if config is not None:
        sync_config = load_config(config)
        rules = LoadRules.from_config(sync_config, str(config))
        store = store or sync_config.store
    engine = open_store(store or DEFAULT_STORE_URL)
    try:
        with _LoadProgress(console) as progress:
            report = load_paths(
                engine,
                paths,
                kind=kind.value if kind else None,
                skip_bad=skip_bad,
                progress=progress,
                rules=rules,
            )
    finally:
        engine.dispose()
    _print_report(report)


@store_app.command("stats")
def stats(store: StoreOption = DEFAULT_STORE_URL, as_json: JsonOption = False) -> None:
    """Row counts and shape of the store."""
    engine = open_store(store)
    try:
        figures = store_stats(engine)
    finally:
        engine.dispose()
    if as_json:
        print_json({"store": display_url(store), "figures": dict(figures)})
        return
    table = Table(title=f"store {display_url(store)}", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in figures.items():
        table.add_row(name.replace("_", " "), f"{value:,}")
    console.print(table)


@store_app.command("delete")
def delete_records_cmd(
    user: Annotated[
        list[str] | None,
        typer.Option("--user", help="A user id to delete (repeatable).", show_default=False),
    ] = None,
    account: Annotated[
        list[str] | None,
        typer.Option("--account", help="An account id to delete (repeatable).", show_default=False),
    ] = None,
    membership: Annotated[
        list[str] | None,
        typer.Option(
            "--membership",
            help="USER_ID:ACCOUNT_ID of a membership to delete (repeatable).",
            show_default=False,
        ),
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="A CSV of keys: user_id and/or account_id columns (both: a membership).",
            show_default=False,
        ),
    ] = None,
    store: StoreOption = DEFAULT_STORE_URL,
) -> None:
    """Delete users, accounts and memberships from the store, in one transaction.

    A user or an account takes its memberships and identities with it. An id that does not
    exist, or an account whose child accounts stay, refuses the whole command. The next run of
    each destination clears or archives what left the store, as its `removal` setting says.
    """
    keys = DeleteKeys(list(user or []), list(account or []), [])
    keys.memberships.extend(parse_membership(m) for m in membership or [])
    if from_file is not None:
        extra = keys_from_file(from_file)
        keys.users += extra.users
        keys.accounts += extra.accounts
        keys.memberships += extra.memberships
    if not keys:
        raise BadInputError(
            Problem(
                "nothing to delete",
                hint="name keys with --user, --account, --membership USER:ACCOUNT or --from FILE",
            )
        )
    engine = open_store(store)
    try:
        report = delete_records(engine, keys)
    finally:
        engine.dispose()
    singular = {"users": "user", "accounts": "account", "memberships": "membership"}
    counts = ", ".join(
        f"{n:,} {table if n != 1 else singular.get(table, 'identity')}"
        for table, n in report.items()
    )
    console.print(Text(f"deleted {counts} from {display_url(store)}"), highlight=False)
    console.print(
        "the next `syncer run` clears or archives them in each destination, as its `removal` "
        "setting says",
        highlight=False,
    )


def _print_report(report: LoadReport) -> None:
    show_ignored = report.total("ignored") > 0
    table = Table(
        title="load",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
        collapse_padding=True,
    )
    columns = ["rows", "inserted", "updated", "unchanged", "skipped"]
    if show_ignored:
        columns.append("ignored")
    table.add_column("file", overflow="fold", min_width=22)
    for name in columns:
        table.add_column(name, justify="right", no_wrap=True)
    for f in report.files:
        table.add_row(_shown_path(f.path), *(f"{getattr(f, c):,}" for c in columns))
    table.add_section()
    table.add_row("total", *(f"{report.total(c):,}" for c in columns), style="bold")
    console.print(table)
    if report.skipped:
        shown = report.skipped[:50]
        console.print(
            Text(f"skipped {len(report.skipped)} bad row(s):", style="yellow"), highlight=False
        )
        for problem in shown:
            console.print(Text(f"  {problem}"), highlight=False)
        if len(report.skipped) > len(shown):
            console.print(f"  ... and {len(report.skipped) - len(shown)} more")


def _shown_path(path: str) -> str:
    """``path`` relative to the working directory when it is under it (shorter tables)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


class _LoadProgress:
    """Rich progress bars, shown only once a load is big enough to wait for."""

    MIN_ROWS = 5000
    MIN_BYTES = 512 * 1024  # about 5,000 rows of a typical CSV

    def __init__(self, out: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[count]}"),
            TimeElapsedColumn(),
            console=out,
        )
        self.tasks: dict[str, TaskID] = {}
        self.started = False

    def __call__(self, phase: str, done: int, total: int) -> None:
        task = self.tasks.get(phase)
        if task is None:
            if total < (self.MIN_BYTES if phase == "reading" else self.MIN_ROWS):
                return
            if not self.started:
                self.progress.start()
                self.started = True
            label = "checking files" if phase == "reading" else "writing records"
            task = self.progress.add_task(label, total=total, count="")
            self.tasks[phase] = task
        count = f"{done:,}/{total:,}" if phase == "writing" else ""
        self.progress.update(task, completed=done, count=count)

    def __enter__(self) -> _LoadProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.progress.stop()
