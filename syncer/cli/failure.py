"""How a failed ``syncer`` command is reported: the two kinds of failure a user can meet.

* A **usage error** (unknown command or option, missing argument, bad value) is the user's typing:
  one line saying what is wrong, one hint naming the ``--help`` that lists what is right, exit 2.
* A **domain error** (:class:`~syncer.errors.SyncerError`, a file that cannot be read, a database
  that cannot be reached) is the world disagreeing with the command: a message naming what, where
  and what to do, exit 1.

Neither prints a traceback unless asked (``--debug`` or ``SYNCER_DEBUG=1``): a traceback is for
whoever debugs syncer, not for whoever runs it. An exception of any other kind is a bug in
syncer; it is reported as such in one line, with the way to get its traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import TextIO

from rich.console import Console
from rich.text import Text
from sqlalchemy.exc import OperationalError
from typer import Abort

# Typer (0.2x) bundles its own copy of click: its exceptions, not the `click` package's, are what
# a typer application raises. Catching the `click` package's classes catches nothing.
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from syncer.errors import SyncerError

__all__ = [
    "DEBUG_ENV",
    "EXIT_DOMAIN",
    "EXIT_USAGE",
    "PREFECT_EXTRA_HINT",
    "configure_logging",
    "debug_requested",
    "report_failure",
]

DEBUG_ENV = "SYNCER_DEBUG"
EXIT_DOMAIN = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
PREFECT_EXTRA_HINT = (
    "install the extra that brings it: pip install 'syncer[prefect]' "
    "(or, for the demo, run it without Prefect: syncer demo --no-prefect)"
)
#: Modules that only the ``[prefect]`` extra installs.
_PREFECT_MODULES = frozenset({"prefect", "fastapi"})


def debug_requested(args: list[str]) -> bool:
    """Whether ``--debug`` is among ``args`` (before a ``--``) or ``SYNCER_DEBUG`` is set; the
    flag is taken out of ``args``, so it may follow any command (``syncer run --debug``)."""
    end = args.index("--") if "--" in args else len(args)
    found = "--debug" in args[:end]
    args[:end] = [a for a in args[:end] if a != "--debug"]
    return found or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def configure_logging(debug: bool) -> None:
    """syncer's log lines (a retry, a field created) on stderr, with the time: warnings and up,
    everything with ``--debug``. Only the ``syncer`` logger: libraries keep their own settings."""
    logger = logging.getLogger("syncer")
    handler = next((h for h in logger.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:  # main() may run more than once in a process (tests): one handler
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    handler.setLevel(logging.DEBUG if debug else logging.WARNING)
    if debug:
        logger.setLevel(logging.DEBUG)


class _StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a record is logged, not as it was at start-up (a
    test's captured stderr, a redirected one)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def report_failure(exc: BaseException, *, debug: bool, err: Console) -> int:
    """Print ``exc`` as the user should see it and return the exit status."""
    if isinstance(exc, NoArgsIsHelpError):
        # `syncer` or `syncer store` alone: the help is the answer, on stderr as click does.
        err.print(Text(exc.format_message()), highlight=False)
        return EXIT_USAGE
    if isinstance(exc, UsageError):
        _say(err, f"error: {exc.format_message()}", _usage_hint(exc))
        return EXIT_USAGE
    if isinstance(exc, (KeyboardInterrupt, Abort)):
        err.print("aborted", highlight=False)
        return EXIT_INTERRUPTED
    if debug:
        # Plain, unwrapped: a traceback is copied into bug reports.
        err.file.write("".join(traceback.format_exception(exc)))
    message, hint = _domain_message(exc)
    if message is None:
        _say(
            err,
            f"internal error: {type(exc).__name__}: {exc}",
            "this is a bug in syncer; rerun with --debug (or SYNCER_DEBUG=1) for the traceback "
            "and report it",
        )
    else:
        _say(err, f"error: {message}", None if debug else hint)
    return EXIT_DOMAIN


def _say(err: Console, line: str, hint: str | None) -> None:
    # Text, not markup: messages quote user data that may contain [brackets].
    head, _, rest = line.partition(": ")
    err.print(Text.assemble((f"{head}: ", "bold red"), rest), highlight=False, soft_wrap=True)
    if hint:
        err.print(Text(f"hint: {hint}", style="dim"), highlight=False, soft_wrap=True)


def _usage_hint(exc: UsageError) -> str:
    ctx = exc.ctx
    if ctx is None:
        return "syncer --help lists the commands"
    what = "commands" if ctx.command_path == ctx.find_root().command_path else "options"
    return f"{ctx.command_path} --help lists the {what}"


def _domain_message(exc: BaseException) -> tuple[str | None, str | None]:
    """(message, hint) for an error of the user's world; (None, None) for a bug."""
    if isinstance(exc, SyncerError):
        return str(exc), None  # its message already says what to do
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in _PREFECT_MODULES:
        return f"this command needs {exc.name}, which is not installed", PREFECT_EXTRA_HINT
    if isinstance(exc, ClickException):  # click's own non-usage errors (a file option)
        return exc.format_message(), None
    if isinstance(exc, OSError):  # a file, or a connection (requests' errors are OSErrors)
        hint = "check the path, that it exists and that you may use it" if exc.filename else None
        return _os_message(exc), hint
    if isinstance(exc, OperationalError):
        return (
            f"database error: {exc.orig}",
            "check the store or state URL (--store, SYNCER_STORE_URL, store: in syncer.yaml), "
            "that the database is running and that it may be written",
        )
    return None, None


def _os_message(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if exc.filename is None:
        return reason
    where = str(exc.filename)
    if exc.filename2 is not None:
        where += f" → {exc.filename2}"
    return f"{reason}: {where}"


def main_args(argv: Sequence[str] | None) -> list[str]:
    """The command line to parse: ``argv`` or the process's."""
    return list(sys.argv[1:] if argv is None else argv)
