"""``syncer filter``: exactly what a marketer types in a CRM's *contains* filter."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from syncer.cli.app import app, console
from syncer.tokens import Token, contains_query


@app.command(name="filter")
def filter_text(
    parts: Annotated[
        list[str],
        typer.Argument(
            help="The token's parts, e.g. `34 CUS` (account 34 at stage CUS) or an email."
        ),
    ],
    prefix: Annotated[
        bool,
        typer.Option(
            "--prefix", help="Match every token that starts with these parts (e.g. any stage)."
        ),
    ] = False,
    case_sensitive: Annotated[
        bool, typer.Option("--case-sensitive", help="The field was written case-sensitive.")
    ] = False,
) -> None:
    """Print the text to type in a *contains* filter to find records holding a token."""
    token = Token(tuple(parts))
    ci = not case_sensitive
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("where")
    table.add_column("operator")
    table.add_column("type exactly")
    table.add_row(
        "Salesforce report / list view, HubSpot list filter",
        "contains",
        Text(contains_query(token, "substring", prefix=prefix, case_insensitive=ci)),
    )
    if prefix:
        table.add_row(
            "HubSpot search (CONTAINS_TOKEN)",
            "—",
            Text("not expressible as one word: filter the single-value field (e.g. *_ids)"),
        )
    else:
        table.add_row(
            "HubSpot search (CONTAINS_TOKEN)",
            "contains token",
            Text(contains_query(token, "word", case_insensitive=ci)),
        )
    console.print(table)
