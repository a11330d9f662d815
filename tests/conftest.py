"""Shared fixtures: one parametrized database fixture runs store and state tests on SQLite and
PostgreSQL.

PostgreSQL tests read ``SYNCER_TEST_POSTGRES_URL`` (e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432/test``). Without it they skip with a reason; under
``CI=true`` a missing URL fails them instead: CI must never pass on skipped PostgreSQL tests.
Each PostgreSQL test gets a schema of its own (through libpq's ``search_path`` option), dropped
afterwards, so tests never see each other's rows.

At the end of the session no process the tests started may be left running (an emulator, a
Prefect server): :func:`pytest_sessionfinish` fails the session if one is, names it and stops it.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text

if TYPE_CHECKING:
    from syncer.engine import Sync

POSTGRES_ENV = "SYNCER_TEST_POSTGRES_URL"

# Every process this session starts inherits this variable, grandchildren and orphans too (a
# parent-pid walk loses a child whose parent died): the end-of-session check finds them by it.
_SESSION_ENV = "SYNCER_TEST_SESSION"
_SESSION_MARK = f"{_SESSION_ENV}={uuid.uuid4().hex}".encode()
os.environ[_SESSION_ENV] = _SESSION_MARK.split(b"=", 1)[1].decode()


def _leftover_processes() -> dict[int, str]:
    """pid → command line of every process (but this one) started by this test session."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            if _SESSION_MARK not in environ:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if b"from multiprocessing." in cmdline:
            # multiprocessing's resource tracker (plan --workers): it belongs to the interpreter
            # and exits with it, when its pipe closes.
            continue
        found[int(entry.name)] = cmdline.decode(errors="replace")
    return found


def _stop_prefect_ephemeral_server() -> None:
    """Stop the ephemeral Prefect API server the in-process flow tests started: Prefect stops it
    at interpreter exit (atexit), after this check — stopping it here is what would happen
    anyway, only earlier."""
    server_module = sys.modules.get("prefect.server.api.server")
    if server_module is None:
        return
    for server in list(server_module.SubprocessASGIServer._instances.values()):
        server.stop()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the session if a process a test started is still running (then stop it)."""
    if not Path("/proc").is_dir():
        return
    _stop_prefect_ephemeral_server()
    deadline = time.monotonic() + 5  # a process told to stop may take a moment to exit
    left = _leftover_processes()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _leftover_processes()
    if not left:
        return
    lines = [f"  pid {pid}: {cmd}" for pid, cmd in sorted(left.items())]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = "processes started by the tests are still running:\n" + "\n".join(lines)
    if reporter is not None:
        reporter.write_line(message, red=True)
    else:
        sys.stderr.write(message + "\n")
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _postgres_base_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if url:
        return url
    reason = f"PostgreSQL tests need {POSTGRES_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run them, not skip them")
    pytest.skip(reason)


CliResult = tuple[int, str, str]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Runs ``syncer ARGS`` through its real entry point (:func:`syncer.cli.main`, what the
    console script calls) in this process: returns (exit status, stdout, stderr)."""
    from syncer.cli import main

    def invoke(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'syncer.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    base = _postgres_base_url()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        # A connection that only a reference cycle keeps alive (a traceback holding a suspended
        # reader, say) is closed by the collector; one still open after that is a leak, and the
        # lock timeout makes it fail here in seconds instead of hanging the drop.
        gc.collect()
        with admin.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '30s'"))
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database URL: SQLite file, then a PostgreSQL schema."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def examples_dir() -> Path:
    return EXAMPLES


ROOT = Path(__file__).resolve().parents[1]


def examples_config(directory: Path, destinations: str | None = None) -> Path:
    """A SQLite store in ``directory`` loaded with examples/, and a syncer.yaml for it whose
    ``destinations`` section defaults to one in-memory destination ``crm`` with the HubSpot
    mapping."""
    from syncer.store.database import init_store
    from syncer.store.loaders import load_paths

    url = f"sqlite:///{directory / 'store.db'}"
    engine = init_store(url)
    load_paths(engine, [ROOT / "examples"])
    engine.dispose()
    mapping = ROOT / "mappings" / "hubspot.yaml"
    path = directory / "syncer.yaml"
    path.write_text(
        f"store: {url}\n"
        + (
            destinations
            or f"destinations:\n  crm:\n    connector: memory\n    mapping: {mapping}\n"
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def store_url(db_url: str) -> str:
    """:func:`db_url` (SQLite, then PostgreSQL) holding the examples/ dataset."""
    from syncer.store.database import init_store
    from syncer.store.loaders import load_paths

    engine = init_store(db_url)
    load_paths(engine, [EXAMPLES])
    engine.dispose()
    return db_url


@pytest.fixture
def memory_sync(tmp_path: Path, store_url: str) -> Callable[..., Sync]:
    """Opens a :class:`Sync` of :func:`store_url` with one in-memory destination ``crm`` (the
    HubSpot mapping unless ``mapping``; ``removal`` when given; ``extra`` appended to the
    destination's YAML), retrying without waits. The config is ``tmp_path / "syncer.yaml"``."""
    from syncer.config import load_config
    from syncer.engine import Sync
    from syncer.retry import RetryPolicy

    def make(*, mapping: Path | None = None, removal: str | None = None, extra: str = "") -> Sync:
        config = tmp_path / "syncer.yaml"
        config.write_text(
            f"store: {json.dumps(store_url)}\n"
            "destinations:\n"
            "  crm:\n"
            "    connector: memory\n"
            f"    mapping: {mapping or ROOT / 'mappings' / 'hubspot.yaml'}\n"
            + (f"    removal: {removal}\n" if removal is not None else "")
            + extra,
            encoding="utf-8",
        )
        return Sync(load_config(config), retry=RetryPolicy.no_wait())

    return make


@pytest.fixture
def memory_config(tmp_path: Path) -> Path:
    """:func:`examples_config` with its default destination."""
    return examples_config(tmp_path)


@pytest.fixture
def make_examples_config(tmp_path: Path) -> Callable[[str], Path]:
    """:func:`examples_config` in this test's directory with the given destinations section."""
    return lambda destinations: examples_config(tmp_path, destinations)
