"""The ``syncer`` command. Each module below registers its commands on :data:`app`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from syncer.cli.app import app, err_console
from syncer.cli.failure import configure_logging, debug_requested, main_args, report_failure

# Importing a command module registers its commands.
from syncer.cli import store_cmds  # noqa: F401  isort: skip
from syncer.cli import connectors_cmds  # noqa: F401  isort: skip
from syncer.cli import sync_cmds  # noqa: F401  isort: skip
from syncer.cli import plan_cmds  # noqa: F401  isort: skip
from syncer.cli import demo_cmds  # noqa: F401  isort: skip
from syncer.cli import filter_cmds  # noqa: F401  isort: skip
from syncer.cli import emulate_cmds  # noqa: F401  isort: skip
from syncer.cli import explain_cmds  # noqa: F401  isort: skip
from syncer.cli import lease_cmds  # noqa: F401  isort: skip

__all__ = ["app", "main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point (``argv``: the arguments, default the process's). A usage error exits 2 with
    one line and a hint, a domain error exits 1 with what, where and what to do; a traceback only
    with ``--debug`` or ``SYNCER_DEBUG=1`` (see :mod:`syncer.cli.failure`)."""
    args = main_args(argv)
    debug = debug_requested(args)
    configure_logging(debug)
    try:
        # Without standalone mode click raises usage errors to us instead of printing them its
        # own way, and returns typer.Exit's code instead of exiting with it.
        code = app(args=args, prog_name="syncer", standalone_mode=False)
    except SystemExit:
        raise
    except BaseException as exc:  # every failure is reported, bugs included
        sys.exit(report_failure(exc, debug=debug, err=err_console))
    if isinstance(code, int) and code:
        sys.exit(code)
