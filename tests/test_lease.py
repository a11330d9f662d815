"""Leases that recover: a heartbeat keeps a live run's lease, a killed run's lapses within its
TTL, and ``syncer lease release`` frees a dead holder's lease but not a live one's. On SQLite and
PostgreSQL; the holders that get killed are real processes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Column, DateTime, MetaData, String, Table, event, insert, update
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from syncer.cli import app
from syncer.cli.app import console
from syncer.db import create_db_engine
from syncer.engine import LEASE_TTL, Sync
from syncer.errors import LeaseHeldError, LeaseLostError, LeaseReleaseRefused
from syncer.state import (
    HolderState,
    acquire,
    current_lease,
    init_state,
    lease_statuses,
    release_lease,
)
from syncer.state.database import utcnow
from syncer.state.lease_holders import pid_alive
from syncer.state.schema import sync_locks
from syncer.testing.memory import MemoryConnector

runner = CliRunner()

# Takes the lease of "crm" with a heartbeat, says so, then sleeps (until killed, or it ends
# without releasing: the heartbeat must not keep the process alive).
_HOLDER = """
import sys, time
from syncer.state import acquire, init_state
engine = init_state(sys.argv[1])
lease = acquire(engine, "crm", "doomed-run", float(sys.argv[2]), heartbeat=True)
print("held", flush=True)
time.sleep(float(sys.argv[3]))
"""


@pytest.fixture
def state(db_url: str) -> Iterator[Engine]:
    engine = init_state(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def spawn_holder(db_url: str) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Starts a process holding the lease of ``crm`` (returns once it holds it); killed and
    reaped at the end of the test whatever happened."""
    started: list[subprocess.Popen[str]] = []

    def spawn(ttl: float, sleep: float = 60.0) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, db_url, str(ttl), str(sleep)],
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held", "the holder process failed to start"
        return proc

    yield spawn
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def _kill9(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)  # reaped: a zombie would still answer signal 0


# --- the heartbeat ------------------------------------------------------------------------------


def test_a_killed_holders_lease_lapses_within_its_ttl(
    state: Engine, spawn_holder: Callable[..., subprocess.Popen[str]]
) -> None:
    ttl = 1.5
    holder = spawn_holder(ttl)
    time.sleep(ttl + 0.3)  # longer than the lease lasts: only the holder's heartbeat keeps it
    with pytest.raises(LeaseHeldError, match="doomed-run"):
        acquire(state, "crm", "next-run", 60)
    _kill9(holder)
    killed = time.monotonic()
    lease = acquire(state, "crm", "next-run", 60, wait_seconds=ttl + 5, poll_seconds=0.05)
    waited = time.monotonic() - killed
    lease.release()
    assert waited <= ttl + 0.5


def test_the_heartbeat_does_not_keep_its_process_alive(
    state: Engine, spawn_holder: Callable[..., subprocess.Popen[str]]
) -> None:
    holder = spawn_holder(60, sleep=0)
    assert holder.wait(10) == 0  # ended without releasing; the daemon thread did not hold it up


def test_the_heartbeat_keeps_a_live_lease_beyond_its_ttl_without_holding_a_connection(
    state: Engine,
) -> None:
    held: list[float] = []  # how long each beat kept its pooled connection
    out: dict[int, float] = {}

    def checkout(_dbapi: object, record: object, _proxy: object) -> None:
        if threading.current_thread().name.startswith("syncer-lease-"):
            out[id(record)] = time.monotonic()

    def checkin(_dbapi: object, record: object) -> None:
        if id(record) in out:
            held.append(time.monotonic() - out.pop(id(record)))

    event.listen(state.pool, "checkout", checkout)
    event.listen(state.pool, "checkin", checkin)
    with acquire(state, "crm", "run-1", 0.6, heartbeat=True) as lease:
        assert lease.heartbeat_running
        first_expiry = lease.expires_at
        time.sleep(1.0)  # longer than the lease lasts
        with pytest.raises(LeaseHeldError):
            acquire(state, "crm", "run-2", 60)
        assert lease.expires_at > first_expiry
    assert not lease.heartbeat_running  # released: nothing renews it any more
    acquire(state, "crm", "run-2", 60).release()
    # Every beat (one every 0.15 s) gave its connection back within the beat: none is out now,
    # and none was held across beats.
    assert len(held) >= 3
    assert not out
    assert max(held) < 0.15


def test_the_heartbeat_notices_a_lost_lease_and_the_next_renewal_raises(state: Engine) -> None:
    with acquire(state, "crm", "run-1", 60) as lease:
        lease.start_heartbeat(interval=0.05)
        release_lease(state, "crm", force=True)  # an operator released it; another run took it
        with acquire(state, "crm", "run-2", 60):
            deadline = time.monotonic() + 5
            while lease.heartbeat_running and time.monotonic() < deadline:
                time.sleep(0.02)
            assert lease.lost
            assert not lease.heartbeat_running
            with pytest.raises(LeaseLostError, match="run-2"):
                lease.renew_if_due()
            lease.release()  # not ours: run-2 keeps it
            info = current_lease(state, "crm")
            assert info is not None
            assert info.holder == "run-2"


def test_a_run_holds_its_lease_by_heartbeat_until_it_ends(
    memory_sync: Callable[..., Sync],
) -> None:
    assert 30 <= LEASE_TTL <= 60  # a killed run's lease lapses within a minute
    with memory_sync() as sync:
        with sync.start_run("crm", connector=MemoryConnector()) as session:
            lease = session.lease
            assert lease.heartbeat_running
            info = current_lease(sync.state, "crm")
            assert info is not None
            assert (info.host, info.pid) == (socket.gethostname(), os.getpid())
        assert not lease.heartbeat_running
        assert current_lease(sync.state, "crm") is None


# --- who holds it, and releasing ----------------------------------------------------------------


def test_a_lease_names_its_holders_host_and_pid(state: Engine) -> None:
    with acquire(state, "crm", "run-1", 60):
        with pytest.raises(LeaseHeldError) as caught:
            acquire(state, "crm", "run-2", 60)
    assert f"pid {os.getpid()} on {socket.gethostname()}" in str(caught.value)
    assert "syncer lease release -d crm" in str(caught.value)


def test_release_refuses_a_live_holder_on_this_host_unless_forced(
    state: Engine, spawn_holder: Callable[..., subprocess.Popen[str]]
) -> None:
    holder = spawn_holder(60)
    [status] = lease_statuses(state, "crm")
    assert (status.holder, status.lease.pid) == (HolderState.ALIVE, holder.pid)
    with pytest.raises(LeaseReleaseRefused, match=f"pid {holder.pid}.*running on this host"):
        release_lease(state, "crm")
    released = release_lease(state, "crm", force=True)
    assert released is not None
    assert released.lease.holder == "doomed-run"
    assert current_lease(state, "crm") is None


def test_release_frees_a_dead_holders_lease_before_it_lapses(
    state: Engine, spawn_holder: Callable[..., subprocess.Popen[str]]
) -> None:
    holder = spawn_holder(60)
    _kill9(holder)
    assert not pid_alive(holder.pid)
    released = release_lease(state, "crm")
    assert released is not None
    assert released.holder is HolderState.DEAD
    acquire(state, "crm", "next-run", 60).release()


def test_a_holder_on_another_host_is_released_only_once_lapsed(state: Engine) -> None:
    acquire(state, "crm", "remote-run", 0.3)
    with state.begin() as conn:
        conn.execute(update(sync_locks).values(host="worker-7.example", pid=1234))
    with pytest.raises(LeaseReleaseRefused, match=r"host worker-7\.example"):
        release_lease(state, "crm")
    time.sleep(0.4)
    released = release_lease(state, "crm")
    assert released is not None
    assert released.holder is HolderState.LAPSED
    assert release_lease(state, "crm") is None  # nothing left


# --- the command --------------------------------------------------------------------------------


@pytest.fixture
def config(memory_config: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    # An 80-column terminal, whatever width the shared console was created with.
    monkeypatch.setattr(console, "width", 80)
    path = memory_config
    with path.open("a", encoding="utf-8") as out:
        out.write(f"state: {json.dumps(db_url)}\n")
    return path


def _cli(*args: str) -> tuple[int, str]:
    """Exit code and everything the command said (an error may come back as the exception)."""
    result = runner.invoke(app, list(args))
    said = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        said += str(result.exception)
    return result.exit_code, said


def _flat(text: str) -> str:
    """``text`` with the console's line wrapping undone."""
    return " ".join(text.split())


def test_lease_release_command_refuses_a_live_holder_and_frees_a_dead_one(
    config: Path, state: Engine, spawn_holder: Callable[..., subprocess.Popen[str]]
) -> None:
    c = str(config)
    assert _cli("lease", "release", "-c", c, "-d", "crm") == (
        0,
        "no lease on crm: nothing to release\n",
    )
    holder = spawn_holder(60)
    code, out = _cli("lease", "show", "-c", c)
    assert code == 0
    # The table fits 80 columns: nothing cut.
    assert re.search(rf"crm +doomed-r +\S+ +{holder.pid} +in \d+ s +alive", out), out
    code, out = _cli("lease", "release", "-c", c, "-d", "crm")
    assert code != 0
    assert "syncer lease release -d crm --force" in _flat(out)
    assert current_lease(state, "crm") is not None
    _kill9(holder)
    code, out = _cli("lease", "show", "-c", c, "-d", "crm", "--json")
    [shown] = json.loads(out)
    assert (shown["holder"], shown["releasable"], shown["pid"]) == ("dead", True, holder.pid)
    code, out = _cli("lease", "release", "-c", c, "-d", "crm")
    assert code == 0
    assert "released the lease of run doomed-run" in _flat(out)
    assert current_lease(state, "crm") is None


def test_lease_release_force_frees_a_live_holder(
    config: Path, state: Engine, spawn_holder: Callable[..., subprocess.Popen[str]]
) -> None:
    spawn_holder(60)
    code, out = _cli("lease", "release", "-c", str(config), "-d", "crm", "--force")
    assert code == 0, out
    assert "its process still runs" in _flat(out)
    assert current_lease(state, "crm") is None


def test_lease_commands_reject_an_unknown_destination(config: Path) -> None:
    code, out = _cli("lease", "release", "-c", str(config), "-d", "crn")
    assert code != 0
    assert "no destination 'crn'" in _flat(out)


def test_every_lease_message_names_a_command_that_exists(state: Engine) -> None:
    held = acquire(state, "crm", "run-1", 60)
    messages = []
    try:
        acquire(state, "crm", "run-2", 60)
    except LeaseHeldError as exc:
        messages.append(str(exc))
    release_lease(state, "crm", force=True)
    try:
        held.renew()
    except LeaseLostError as exc:
        messages.append(str(exc))
    acquire(state, "crm", "run-3", 60)
    try:
        release_lease(state, "crm")
    except LeaseReleaseRefused as exc:
        messages.append(str(exc))
    assert len(messages) == 3
    commands = {c for m in messages for c in re.findall(r"`syncer ([^`]+)`", m)}
    assert commands >= {"lease release -d crm", "lease release -d crm --force"}
    for command in commands:
        words = [w for w in command.split() if w != "SECONDS" and not w.startswith("-d")]
        # Every word is a command or an option the command has (its help lists it).
        path = [w for w in words if not w.startswith("-")]
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})  # all of it
        assert result.exit_code == 0, (command, result.output)
        for option in (w for w in words if w.startswith("-")):
            assert option in result.output, (command, option)


# --- a state database from before host and pid ---------------------------------------------------


def test_a_state_database_from_the_previous_version_gains_the_holder_columns(
    db_url: str,
) -> None:
    old = MetaData()
    old_locks = Table(
        "sync_locks",
        old,
        Column("destination", String(128), primary_key=True),
        Column("holder", String(64), nullable=False),
        Column("acquired_at", DateTime(timezone=True), nullable=False),
        Column("expires_at", DateTime(timezone=True), nullable=False),
    )
    engine = create_db_engine(db_url)
    old.create_all(engine)
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            insert(old_locks).values(
                destination="crm",
                holder="old-run",
                acquired_at=now,
                expires_at=now + timedelta(seconds=60),
            )
        )
    init_state(engine)
    init_state(engine)  # again: nothing to add
    info = current_lease(engine, "crm")
    assert info is not None
    assert (info.holder, info.host, info.pid) == ("old-run", None, None)
    with pytest.raises(LeaseReleaseRefused, match="older syncer"):
        release_lease(engine, "crm")  # a live lease whose holder syncer cannot check
    release_lease(engine, "crm", force=True)
    lease = acquire(engine, "crm", "new-run", 60)
    info = current_lease(engine, "crm")
    assert info is not None
    assert (info.holder, info.pid) == ("new-run", os.getpid())
    lease.release()
    engine.dispose()
