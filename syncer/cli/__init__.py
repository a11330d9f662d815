"""The ``syncer`` command. Each module below registers its commands on :data:`app`."""

from __future__ import annotations

import sys

from rich.text import Text

from syncer.cli.app import app, err_console
from syncer.errors import SyncerError

# Importing a command module registers its commands.
from syncer.cli import store_cmds  # noqa: F401  isort: skip
from syncer.cli import connectors_cmds  # noqa: F401  isort: skip
from syncer.cli import sync_cmds  # noqa: F401  isort: skip
from syncer.cli import demo_cmds  # noqa: F401  isort: skip
from syncer.cli import filter_cmds  # noqa: F401  isort: skip
from syncer.cli import emulate_cmds  # noqa: F401  isort: skip
from syncer.cli import explain_cmds  # noqa: F401  isort: skip
from syncer.cli import lease_cmds  # noqa: F401  isort: skip

__all__ = ["app", "main"]


def main() -> None:
    """Entry point: syncer's own errors print as one clear message and exit 2, never a trace."""
    try:
        # Without standalone mode click returns typer.Exit's code instead of exiting with it.
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except SyncerError as exc:
        # Text, not markup: messages quote user data that may contain [brackets].
        err_console.print(Text.assemble(("error: ", "bold red"), str(exc)), highlight=False)
        sys.exit(2)
    except SystemExit:
        raise
    except Exception as exc:  # click's usage errors come here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        raise
