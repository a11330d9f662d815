"""``syncer emulate hubspot``: a local HubSpot API to point syncer at, for trying things out."""

from __future__ import annotations

import re
import threading
from typing import Annotated

import typer

from syncer.cli.app import app, console
from syncer.errors import ConfigError, Problem

emulate_app = typer.Typer(
    name="emulate",
    help="Run a local emulator of a destination's API (no account, no network).",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(emulate_app, name="emulate")

_RATE = re.compile(r"^(\d+)/(\d+(?:\.\d+)?)(ms|s)$")


def parse_rate(text: str) -> tuple[int, int]:
    """``100/10s`` → (100 requests, 10,000 ms); ``100/1s`` emulates 100/10 s ten times faster."""
    match = _RATE.match(text.strip())
    if match is None:
        raise ConfigError(
            Problem(
                f"--rate-limit {text!r} is not REQUESTS/INTERVAL",
                hint="write it like 100/10s or 190/500ms",
            )
        )
    requests, amount, unit = int(match[1]), float(match[2]), match[3]
    return requests, int(amount * (1000 if unit == "s" else 1))


@emulate_app.command("hubspot")
def emulate_hubspot(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free one).")] = 8765,
    token: Annotated[str, typer.Option(help="The bearer token clients must send.")] = "demo-token",
    rate_limit: Annotated[
        str, typer.Option(help="Burst limit as REQUESTS/INTERVAL, e.g. 100/10s.")
    ] = "190/10s",
) -> None:
    """Serve HubSpot's CRM API subset on 127.0.0.1 until Ctrl-C."""
    from syncer.testing.hubspot_emulator import HubSpotEmulator

    max_requests, interval_ms = parse_rate(rate_limit)
    emulator = HubSpotEmulator(
        port=port,
        access_token=token,
        rate_limit_max=max_requests,
        rate_limit_interval_ms=interval_ms,
    )
    with emulator:
        console.print(f"HubSpot emulator listening on {emulator.url}")
        console.print("In syncer.yaml, for a destination with connector: hubspot —")
        console.print(f"  settings: {{host: {emulator.url}}}")
        console.print("  credentials: {access_token: env:HUBSPOT_TOKEN}")
        console.print(f"and export HUBSPOT_TOKEN={token}.  Ctrl-C stops it.")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            console.print(f"stopped after {len(emulator.requests())} requests")
