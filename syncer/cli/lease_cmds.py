"""Lease commands: ``syncer lease show`` and ``syncer lease release``.

A run holds its destination's lease while it writes; a heartbeat renews it, so a run whose
process died lets go within the lease's TTL on its own. ``release`` is for not waiting that long:
it releases a lease whose holder is dead (on this host) or lapsed, and refuses one that may be
alive unless ``--force``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from syncer.cli.app import command_group, console
from syncer.cli.sync_cmds import ConfigOption, DestinationFilter, DestinationOption, open_sync
from syncer.state import HolderState, LeaseStatus, lease_statuses, release_lease

lease_app = command_group(
    "lease", "Destination leases: who holds them, and releasing one whose run died."
)

_SHOWN = {
    HolderState.LAPSED: "gone (lease lapsed)",
    HolderState.DEAD: "dead",
    HolderState.ALIVE: "alive",
    HolderState.REMOTE: "on another host",
}

_RELEASED = {
    HolderState.LAPSED: "its lease had lapsed",
    HolderState.DEAD: "its process was gone",
    HolderState.ALIVE: "its process still runs and stops writing at its next renewal",
    HolderState.REMOTE: "if it still runs on its host, it stops writing at its next renewal",
}


@lease_app.command("show")
def show(
    config: ConfigOption = Path("syncer.yaml"),
    destination: DestinationFilter = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Who holds each destination's lease: run, host, pid, until when, whether it is alive."""
    with open_sync(config) as sync:
        if destination is not None:
            sync.config.destination(destination)  # a misspelt name is an error, not "no lease"
        found = lease_statuses(sync.state, destination)
    if as_json:
        console.print_json(json.dumps([lease_json(s) for s in found]))
        return
    if not found:
        console.print("no leases held" + (f" on {destination}" if destination else ""))
        return
    # Short cells, as in `syncer status`, so the table fits an 80-column terminal; --json has
    # the full run id and times.
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for col in ("destination", "run", "host", "pid", "expires", "holder"):
        table.add_column(col, no_wrap=True)
    for status in found:
        info = status.lease
        table.add_row(
            info.destination,
            info.holder[:8],
            info.host or "?",
            str(info.pid) if info.pid is not None else "?",
            f"in {status.seconds_left:.0f} s" if status.seconds_left > 0 else "lapsed",
            _SHOWN[status.holder],
        )
    console.print(table)
    if any(s.releasable for s in found):
        console.print("release a dead holder's lease now: syncer lease release -d DESTINATION")


# ``list`` reads as naturally as ``show``: the same command under both names.
lease_app.command("list", hidden=True)(show)


@lease_app.command("release")
def release(
    destination: DestinationOption,
    config: ConfigOption = Path("syncer.yaml"),
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Release even a holder that may be alive (it stops at its next renewal).",
        ),
    ] = False,
) -> None:
    """Release a destination's lease whose run died (or lapsed), so the next run need not wait."""
    with open_sync(config) as sync:
        sync.config.destination(destination)
        released = release_lease(sync.state, destination, force=force)
    if released is None:
        console.print(f"no lease on {destination}: nothing to release")
        return
    info = released.lease
    where = f" (pid {info.pid} on {info.host})" if info.host and info.pid is not None else ""
    console.print(
        f"released the lease of run {info.holder}{where} on {destination}: "
        f"{_RELEASED[released.holder]}; the next run may start"
    )


def lease_json(status: LeaseStatus) -> dict[str, Any]:
    """One lease as ``syncer lease show --json`` prints it (a stable set of keys)."""
    info = status.lease
    return {
        "destination": info.destination,
        "run_id": info.holder,
        "host": info.host,
        "pid": info.pid,
        "acquired_at": info.acquired_at.isoformat(),
        "expires_at": info.expires_at.isoformat(),
        "seconds_left": round(status.seconds_left, 1),
        "holder": status.holder.value,
        "releasable": status.releasable,
    }
