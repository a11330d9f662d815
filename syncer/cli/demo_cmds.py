"""``syncer demo``: the whole product on one machine, no credentials, no network.

It builds an SQLite store from ``examples/``, starts the HubSpot emulator on loopback, syncs
through the Prefect flow (or the engine directly with ``--no-prefect``), shows the CRM records
with their flattened fields, then changes the store — one membership rises to PRO, another
churns — and syncs again to show the stage policy at work and that only the changed records
were sent (with the run's report as the flow published it), then once more to show that
nothing is sent when nothing changed. It sets the Prefect settings an offline machine needs, and
runs against an ephemeral Prefect API of its own whatever the user's Prefect profile says.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table
from sqlalchemy import update

from syncer.cli.app import app, console
from syncer.errors import ConfigError, Problem
from syncer.plan import ACTIONS
from syncer.tokens import parse_tokens

_TOKEN_ENV = "SYNCER_DEMO_HUBSPOT_TOKEN"
# What a Prefect run on an offline machine needs (shared/reference/prefect.md): no analytics
# (there is no network to send them to), and time for the ephemeral server to start and migrate.
_PREFECT_OFFLINE = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}
# The demo's own API, whatever the user's Prefect profile says: a profile left by
# `prefect config set PREFECT_API_URL=...` pointing at a server that is not running failed the
# demo with a long traceback. An empty PREFECT_API_URL does not undo it (Prefect then sends its
# events to the URL ""): the API URL must be unset, so the demo runs under a profile file of its
# own, in which nothing but the ephemeral server is set, and drops the variables that would
# override it.
_PREFECT_PROFILE = """# Written by `syncer demo`: its Prefect runs use an API of their own.
active = "syncer-demo"

[profiles.syncer-demo]
PREFECT_SERVER_EPHEMERAL_ENABLED = "true"
"""
_PREFECT_OVERRIDES = ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE")
_SHOWN = {
    "contacts": (
        "syncer_user_id",
        "email",
        "syncer_stage",
        "syncer_accounts",
        "syncer_primary_account_id",
    ),
    "companies": ("syncer_account_id", "name", "syncer_stage", "syncer_user_stages"),
}


def source_root() -> Path:
    """The source checkout holding examples/ and mappings/ (syncer is installed editable)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "examples").is_dir() or not (root / "mappings").is_dir():
        raise ConfigError(
            Problem(
                f"examples/ and mappings/ not found next to the syncer package ({root})",
                hint="run the demo from a source checkout installed with `pip install -e .`",
            )
        )
    return root


def write_demo_config(workdir: Path, root: Path, host: str) -> Path:
    """A syncer.yaml for the demo: SQLite store in ``workdir``, HubSpot at ``host``."""
    path = workdir / "syncer.yaml"
    path.write_text(
        f"""# Written by `syncer demo`.
store: sqlite:///{workdir / "demo.db"}
policies:
  primary: sticky
destinations:
  hubspot:
    connector: hubspot
    mapping: {root / "mappings" / "hubspot.yaml"}
    credentials:
      access_token: env:{_TOKEN_ENV}
    settings:
      host: {host}
""",
        encoding="utf-8",
    )
    return path


@app.command()
def demo(
    workdir: Annotated[
        Path, typer.Option("--dir", help="Where the demo's store and config go (recreated).")
    ] = Path("syncer-demo"),
    prefect: Annotated[
        bool,
        typer.Option(
            "--prefect/--no-prefect",
            help="Run through the Prefect flow (an ephemeral Prefect server starts: ~20 s).",
        ),
    ] = True,
) -> None:
    """Sync the example dataset to a local HubSpot emulator, change it, sync again."""
    from syncer.store.database import init_store
    from syncer.store.loaders import load_paths
    from syncer.testing.hubspot_emulator import HubSpotEmulator

    started = time.monotonic()
    root = source_root()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    workdir = workdir.resolve()
    if prefect:
        prepare_prefect(workdir)
    store = init_store(f"sqlite:///{workdir / 'demo.db'}")
    load_paths(store, [root / "examples"])
    store.dispose()
    console.print(f"[bold]1.[/] store built from {root / 'examples'} in {workdir}")

    with HubSpotEmulator(access_token="demo-token") as hubspot:
        os.environ[_TOKEN_ENV] = "demo-token"
        config = write_demo_config(workdir, root, hubspot.url)
        console.print(f"[bold]2.[/] HubSpot emulator at {hubspot.url}; config {config}")
        sync = _runner(prefect)

        console.print(
            "[bold]3.[/] first sync"
            + (" (the demo's own ephemeral Prefect server starts first: ~20 s)" if prefect else "")
        )
        writes_before = len(hubspot.write_requests())
        sync(config, False)
        _show_crm(hubspot)
        first = len(hubspot.write_requests()) - writes_before

        console.print(
            "[bold]4.[/] change the store: Ada's XYZ membership rises to PRO; "
            "Edsger's XYZ membership (PRO) churns"
        )
        _change_store(workdir / "demo.db")
        writes_before = len(hubspot.write_requests())
        sync(config, True)
        second = len(hubspot.write_requests()) - writes_before
        _show_crm(hubspot, users=("u01", "u09"))
        console.print(
            "Ada is now PRO (her best account). Edsger stays CUS through ACME-EU although his "
            "PRO membership churned: a user never drops below the best stage of an active "
            "account."
        )
        console.print("[bold]5.[/] sync again with nothing changed")
        writes_before = len(hubspot.write_requests())
        sync(config, False)
        third = len(hubspot.write_requests()) - writes_before
    console.print(
        f"write requests: first sync {first}, after the change {second}, "
        f"with nothing changed {third}.  Total {time.monotonic() - started:.1f} s."
    )


def prepare_prefect(workdir: Path) -> None:
    """Set what the demo's Prefect runs need, then import Prefect — or fail naming the extra to
    install when it is missing (the core install has no Prefect).

    Prefect reads its settings once, when it is imported: the environment must be set first. A
    fresh machine has no network and no Prefect settings, so the offline ones are defaults (an
    explicit setting of the user's wins); the API is the demo's own, always (nothing of the
    user's wins: the demo must not depend on their server, running or not). The user's profile
    file is left untouched.
    """
    for name, value in _PREFECT_OFFLINE.items():
        os.environ.setdefault(name, value)
    profiles = workdir / "prefect-profiles.toml"
    profiles.write_text(_PREFECT_PROFILE, encoding="utf-8")
    for name in _PREFECT_OVERRIDES:
        os.environ.pop(name, None)
    os.environ["PREFECT_PROFILES_PATH"] = str(profiles)
    os.environ["PREFECT_SERVER_EPHEMERAL_ENABLED"] = "true"
    try:
        # Through the flows, as the import contracts want: syncer itself never imports Prefect.
        import flows.sync  # noqa: F401
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ("prefect", "fastapi"):
            raise
        raise ConfigError(
            Problem(
                f"syncer demo runs through Prefect, which is not installed ({exc.name} is missing)",
                hint="pip install 'syncer[prefect]' adds it; or run the demo without Prefect: "
                "syncer demo --no-prefect",
            )
        ) from None


def _runner(prefect: bool) -> Callable[[Path, bool], None]:
    """How the demo syncs: ``run(config, full_report)`` prints the run's report."""
    from syncer.cli.sync_cmds import open_sync, print_run

    if not prefect:

        def run_engine(config: Path, _full_report: bool) -> None:
            t0 = time.monotonic()
            with open_sync(config) as sync:
                print_run(sync.run("hubspot"), time.monotonic() - t0)

        return run_engine

    # The CLI sits on top of the flows layer; syncer's engine never imports Prefect.
    # prepare_prefect() set the environment before this first import of Prefect's.
    from flows.sync import read_report
    from flows.sync import sync as sync_flow

    def run_flow(config: Path, full_report: bool) -> None:
        t0 = time.monotonic()
        state = sync_flow(config=str(config), destination="hubspot", return_state=True)
        result: dict[str, Any] = state.result()
        _print_counts(result, time.monotonic() - t0)
        run_id = state.state_details.flow_run_id
        if full_report and run_id is not None:
            report = read_report(run_id, "hubspot")
            if report is not None:
                console.print(Panel(Markdown(report), title="the run's report (Prefect artifact)"))

    return run_flow


def _print_counts(result: dict[str, Any], elapsed: float) -> None:
    planned = sum(result.get(a, 0) for a in ACTIONS)
    to_send = sum(result.get(a, 0) for a in ("create", "update", "remove"))
    console.print(
        f"flow run {result['status']} in {elapsed:.1f} s: planned {planned}, "
        f"unchanged {result['unchanged']}, to send {to_send}, [bold]sent {result['sent']}[/], "
        f"rejected by syncer {result['rejected']}, refused by the destination "
        f"{result['refused']}, {result['requests']} write requests"
    )


def _change_store(db: Path) -> None:
    from syncer.db import create_db_engine
    from syncer.store.schema import memberships

    engine = create_db_engine(f"sqlite:///{db}")
    m = memberships.c
    with engine.begin() as conn:
        conn.execute(
            update(memberships).where(m.user_id == "u01", m.account_id == "XYZ").values(stage="PRO")
        )
        conn.execute(
            update(memberships)
            .where(m.user_id == "u09", m.account_id == "XYZ")
            .values(stage="churned")
        )
    engine.dispose()


def _show_crm(hubspot: Any, users: tuple[str, ...] | None = None) -> None:
    """The emulator's records with their flattened fields, token lists decoded for reading."""
    example: tuple[str, str] | None = None
    for object_type, columns in _SHOWN.items():
        if users is not None and object_type != "contacts":
            continue
        table = Table(title=f"HubSpot {object_type}", box=box.SIMPLE_HEAD, title_justify="left")
        for col in columns:
            table.add_column(col, overflow="fold")
        rows = sorted(hubspot.objects(object_type).values(), key=lambda p: p.get(columns[0], ""))
        for props in rows:
            if users is not None and props.get("syncer_user_id") not in users:
                continue
            cells = []
            for col in columns:
                raw = props.get(col) or ""
                shown = _readable(raw)
                if shown != raw and example is None:
                    example = (col, raw)
                cells.append(shown)
            table.add_row(*cells)
        console.print(table)
    if example is not None:
        col, raw = example
        console.print(
            f"[dim]Token lists are shown decoded. HubSpot holds them as words a *contains* "
            f"filter matches exactly, e.g. {col} = {raw}[/]"
        )


def _readable(value: str) -> str:
    """A token list (``;zxyzzxpro;acmexcus;``) as its tokens (``xyz:pro acme:cus``)."""
    if len(value) < 3 or not (value.startswith(";") and value.endswith(";")):
        return value
    try:
        return " ".join(":".join(parts) for parts in parse_tokens(value))
    except ValueError:
        return value
