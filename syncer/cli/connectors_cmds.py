"""``syncer connectors``: the installed destination connectors and whether each one loads."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from syncer.cli.app import JsonOption, app, console, print_json


@app.command("connectors")
def connectors(
    check: Annotated[
        bool,
        typer.Option("--check", help="Exit with status 1 if any connector fails to load."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """List installed connectors: name, entry point, package and status."""
    from syncer.connectors.registry import GROUP, discover

    found = discover()
    failed = any(info.cls is None for info in found)
    if as_json:
        print_json(
            {
                "connectors": [
                    {
                        "name": info.name,
                        "entry_point": info.entry_point,
                        "package": info.distribution,
                        "status": "ok" if info.cls is not None else "error",
                        "error": None if info.cls is not None else (info.error or "failed"),
                    }
                    for info in found
                ]
            }
        )
        if check and (failed or not found):
            raise typer.Exit(1)
        return
    if not found:
        console.print(f"No connector is installed (entry point group {GROUP!r}).")
        raise typer.Exit(1 if check else 0)
    # Errors are long (they name the module and the exception): they go under the table, whole.
    table = Table("name", "entry point", "package", "status")
    for info in found:
        status = Text("ok", style="green") if info.cls is not None else Text("error", style="red")
        table.add_row(
            info.name, Text(info.entry_point, overflow="fold"), info.distribution or "-", status
        )
    console.print(table)
    for info in found:
        if info.cls is None:
            console.print(
                Text.assemble((f"{info.name}: ", "bold red"), info.error or "failed to load"),
                highlight=False,
            )
    if check and failed:
        raise typer.Exit(1)
