"""How ``syncer`` fails, through its real entry point (:func:`syncer.cli.main`, the console
script): a usage error is one line and a hint, exit 2; a domain error is a message saying what,
where and what to do, exit 1; a traceback only with ``--debug`` or ``SYNCER_DEBUG=1``; a retry
against a destination that is down is on stderr within seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from processes import free_port

from syncer.retry import RetryPolicy

ROOT = Path(__file__).resolve().parents[1]
Cli = Callable[..., tuple[int, str, str]]
SYNCER = str(Path(sys.executable).with_name("syncer"))


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNCER_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")  # one message, one line: no wrapping by width


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["bogus"], "No such command 'bogus'"),
        (["plan", "--bogus"], "No such option: --bogus"),
        (["plan"], "Missing option '--destination'"),
        (["plan", "-d", "crm", "--workers", "zero"], "Invalid value for '--workers'"),
        (["plan", "-d", "crm", "--workers", "0"], "Invalid value for '--workers'"),
        (["explain", "user"], "Missing argument 'user_id'"),
        (["store", "stats", "--bogus"], "No such option: --bogus"),
        (["load", "x.csv", "--kind", "things"], "Invalid value for '--kind'"),
        (["emulate", "hubspot", "--port", "http"], "Invalid value for '--port'"),
        (["status", "extra"], "unexpected extra argument"),
    ],
)
def test_a_usage_error_is_one_line_and_a_hint_exit_2(cli: Cli, args: list[str], says: str) -> None:
    code, out, err = cli(*args)
    assert code == 2
    assert out == ""
    first, hint = _lines(err)
    assert first.startswith("error: ")
    assert says in first
    assert hint.startswith("hint: syncer")
    assert "--help" in hint
    assert "Traceback" not in err


def _commands() -> list[list[str]]:
    """Every command of ``syncer``, sub-commands included, as the words that call it."""
    from typer.main import get_command

    from syncer.cli import app

    found: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            found.append(path)
            return
        for name, sub in subcommands.items():
            walk(sub, [*path, name])

    walk(get_command(app), [])
    return found


@pytest.mark.parametrize("command", _commands(), ids=" ".join)
def test_every_command_answers_an_unknown_option_with_one_line_and_a_hint(
    cli: Cli, command: list[str]
) -> None:
    code, out, err = cli(*command, "--no-such-option")
    assert code == 2
    assert out == ""
    assert _lines(err) == [
        "error: No such option: --no-such-option",
        f"hint: syncer {' '.join(command)} --help lists the options",
    ]


def test_the_usage_hint_names_the_command_whose_help_helps(
    cli: Cli,
) -> None:
    assert _lines(cli("bogus")[2])[1] == "hint: syncer --help lists the commands"
    assert _lines(cli("store", "stats", "-x")[2])[1] == (
        "hint: syncer store stats --help lists the options"
    )


def test_a_missing_config_is_a_domain_error_naming_the_file_and_what_to_do(
    cli: Cli, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.yaml"
    code, _out, err = cli("plan", "-c", str(missing), "-d", "crm")
    assert code == 1
    [line] = _lines(err)
    assert line.startswith(f"error: no configuration file at {missing}")
    assert "--config" in line
    assert "examples/syncer.yaml" in line
    assert (ROOT / "examples" / "syncer.yaml").is_file()  # the file the hint names exists


def test_an_os_error_names_the_path_and_exits_1(cli: Cli, tmp_path: Path) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a directory")
    code, _, err = cli("demo", "--no-prefect", "--dir", str(a_file / "demo"))
    assert code == 1
    first, hint = _lines(err)
    assert first.startswith("error: ")
    assert str(a_file / "demo") in first
    assert hint.startswith("hint: check the path")
    assert "Traceback" not in err


def test_a_bug_is_reported_as_one_and_debug_shows_its_traceback(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, memory_config: Path
) -> None:
    from syncer.cli import sync_cmds

    def broken(_config: Path) -> None:
        raise RuntimeError("an invariant broke")

    monkeypatch.setattr(sync_cmds, "open_sync", broken)
    code, _, err = cli("status", "-c", str(memory_config))
    assert code == 1
    first, hint = _lines(err)
    assert first == "internal error: RuntimeError: an invariant broke"
    assert "--debug" in hint
    assert "SYNCER_DEBUG=1" in hint
    assert "Traceback" not in err

    code, _, err = cli("status", "-c", str(memory_config), "--debug")
    assert code == 1
    assert "Traceback (most recent call last)" in err
    assert 'raise RuntimeError("an invariant broke")' in err

    monkeypatch.setenv("SYNCER_DEBUG", "1")
    code, _, err = cli("status", "-c", str(memory_config))
    assert "Traceback (most recent call last)" in err


def test_debug_on_a_domain_error_adds_the_traceback_to_the_same_message(
    cli: Cli, tmp_path: Path
) -> None:
    code, _, err = cli("--debug", "plan", "-c", str(tmp_path / "x.yaml"), "-d", "crm")
    assert code == 1
    assert "Traceback (most recent call last)" in err
    assert err.rstrip().splitlines()[-1].startswith("error: no configuration file")


def test_the_console_script_fails_the_same_way(tmp_path: Path) -> None:
    usage = subprocess.run([SYNCER, "plan", "--bogus"], check=False, capture_output=True, text=True)
    assert (usage.returncode, usage.stdout) == (2, "")
    assert len(_lines(usage.stderr)) == 2
    assert "No such option: --bogus" in usage.stderr
    domain = subprocess.run(
        [SYNCER, "status", "-c", str(tmp_path / "x.yaml")],
        check=False,
        capture_output=True,
        text=True,
    )
    assert domain.returncode == 1
    assert domain.stderr.startswith("error: no configuration file")
    assert "Traceback" not in domain.stderr


@pytest.fixture
def down_config(make_examples_config: Callable[[str], Path]) -> Path:
    """A HubSpot destination on a port where nothing listens."""
    return make_examples_config(
        "destinations:\n  hubspot:\n    connector: hubspot\n"
        f"    mapping: {ROOT / 'mappings' / 'hubspot.yaml'}\n"
        "    credentials: {access_token: env:DOWN_TOKEN}\n"
        f"    settings: {{host: 'http://127.0.0.1:{free_port()}'}}\n"
    )


def test_with_the_destination_down_the_first_retry_is_on_stderr_within_5_s(
    down_config: Path,
) -> None:
    started = time.monotonic()
    process = subprocess.Popen(
        [SYNCER, "run", "-c", str(down_config), "-d", "hubspot"],
        env={**os.environ, "DOWN_TOKEN": "t"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        seconds = time.monotonic() - started
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert seconds < 5, f"first line after {seconds:.1f} s"
    # What failed, which attempt, why, and when the next attempt is.
    assert "WARNING hubspot " in line  # the first request: the preflight check, then ensure
    assert "attempt 1 of 8 failed" in line
    assert "Connection refused" in line
    assert "next attempt in" in line
    assert ", at " in line


def test_with_the_destination_down_the_final_error_is_one_clear_message(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, down_config: Path
) -> None:
    # The default policy keeps trying for 30 to 65 s: two quick attempts show the same ending.
    defaults = RetryPolicy.__init__.__defaults__
    assert defaults is not None
    monkeypatch.setattr(RetryPolicy.__init__, "__defaults__", (2, 0.01, 0.01, None, *defaults[4:]))
    monkeypatch.setenv("DOWN_TOKEN", "t")
    code, _, err = cli("run", "-c", str(down_config), "-d", "hubspot")
    assert code == 1
    assert "attempt 1 of 2 failed" in err
    [final] = [line for line in _lines(err) if line.startswith("error: ")]
    assert "gave up after 2 attempt(s)" in final
    assert "Connection refused" in final
    assert "run again later" in final
    assert "Traceback" not in err
