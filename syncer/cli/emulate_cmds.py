"""``syncer emulate hubspot`` and ``syncer emulate salesforce``: a local destination API to point
syncer at, for trying things out."""

from __future__ import annotations

import functools
import re
import shutil
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from syncer.cli.app import command_group, console
from syncer.errors import ConfigError, Problem

emulate_app = command_group(
    "emulate", "Run a local emulator of a destination's API (no account, no network)."
)

_RATE = re.compile(r"^(\d+)/(\d+(?:\.\d+)?)(ms|s)$")


def serve_until_stopped() -> None:
    """Block until Ctrl-C or SIGTERM, both as :class:`KeyboardInterrupt`.

    SIGTERM is what ``kill``, process managers and test harnesses send, and the only one of the
    two a background job (``syncer emulate hubspot &``) receives: the shell starts background
    jobs with SIGINT ignored. Without this handler SIGTERM would end the process on the spot,
    without closing the emulator's connections or saying how many requests it served.
    """

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        threading.Event().wait()
    finally:
        signal.signal(signal.SIGTERM, previous)


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
    """Serve HubSpot's CRM API subset on 127.0.0.1 until Ctrl-C or SIGTERM."""
    from syncer.testing.hubspot_emulator import HubSpotEmulator

    max_requests, interval_ms = parse_rate(rate_limit)
    emulator = HubSpotEmulator(
        port=port,
        access_token=token,
        rate_limit_max=max_requests,
        rate_limit_interval_ms=interval_ms,
    )
    with emulator:
        console.print(f"HubSpot emulator listening on {emulator.url}", soft_wrap=True)
        console.print("In syncer.yaml, for a destination with connector: hubspot —")
        console.print(f"  settings: {{host: {emulator.url}}}")
        console.print("  credentials: {access_token: env:HUBSPOT_TOKEN}")
        console.print(f"and export HUBSPOT_TOKEN={token}.  Ctrl-C (or SIGTERM) stops it.")
        try:
            serve_until_stopped()
        except KeyboardInterrupt:
            console.print(f"stopped after {len(emulator.requests())} requests")


@emulate_app.command("salesforce")
def emulate_salesforce(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free one).")] = 8766,
    session_id: Annotated[str, typer.Option(help="The session id clients must send.")] = (
        "demo-session"
    ),
    daily_limit: Annotated[int, typer.Option(help="The org's daily API request budget.")] = 15_000,
    allow_field_creation: Annotated[
        bool, typer.Option(help="Let the Tooling API create custom fields.")
    ] = True,
    cert: Annotated[
        Path | None,
        typer.Option(help="Also write the throwaway certificate here, for a stable `verify:`."),
    ] = None,
) -> None:
    """Serve Salesforce's REST subset over HTTPS (a throwaway self-signed certificate) on
    127.0.0.1 until Ctrl-C or SIGTERM."""
    from syncer.testing.salesforce_emulator import SalesforceEmulator

    emulator = SalesforceEmulator(port=port, session_id=session_id, daily_api_limit=daily_limit)
    with emulator:
        emulator.allow_field_creation = allow_field_creation
        assert emulator.cert_path is not None  # tls is on
        cert_path = emulator.cert_path
        if cert is not None:
            shutil.copyfile(cert_path, cert)
            cert_path = cert.resolve()
        # soft_wrap: the URL and the certificate path must stay on one line to be copied.
        say = functools.partial(console.print, soft_wrap=True, highlight=False)
        say(f"Salesforce emulator listening on {emulator.url}")
        say(f"certificate: {cert_path}")
        say("In syncer.yaml, for a destination with connector: salesforce —")
        say(
            f"  settings: {{instance_url: {emulator.url}, verify: {cert_path}, "
            "allow_create_fields: true}"
        )
        say("  credentials: {session_id: env:SF_SESSION}")
        say(f"and export SF_SESSION={session_id}.  Ctrl-C (or SIGTERM) stops it.")
        try:
            serve_until_stopped()
        except KeyboardInterrupt:
            say(f"stopped after {len(emulator.requests())} requests")
