"""The Typer application every command module registers on."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from syncer.db import DEFAULT_STORE_URL, STORE_URL_ENV

app = typer.Typer(
    name="syncer",
    help="Reverse-ETL sync engine: resolve multi-account product data and sync it to CRMs.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)

console = Console()
err_console = Console(stderr=True)

StoreOption = Annotated[
    str,
    typer.Option(
        "--store",
        envvar=STORE_URL_ENV,
        help=f"Canonical store URL (SQLAlchemy). Default {DEFAULT_STORE_URL}.",
        show_default=False,
    ),
]

JsonOption = Annotated[
    bool, typer.Option("--json", help="Machine-readable output (keys: docs/cli.md).")
]


def command_group(name: str, help: str) -> typer.Typer:
    """A group of sub-commands, ``syncer NAME ...``, registered on :data:`app`."""
    group = typer.Typer(name=name, help=help, no_args_is_help=True, add_completion=False)
    app.add_typer(group, name=name)
    return group


def print_json(data: object) -> None:
    """``data`` as one JSON document on stdout, nothing else (no colour, no wrapping)."""
    console.file.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _version(value: bool) -> None:
    if value:
        from syncer import __version__

        console.print(f"syncer {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help="Show the traceback of an error (also SYNCER_DEBUG=1); may follow any command.",
        ),
    ] = False,
) -> None:
    """Reverse-ETL sync engine: resolve multi-account product data and sync it to CRMs."""
