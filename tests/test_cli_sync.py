"""The sync commands as a user types them: plan, run, status, errors, retry, explain, filter,
emulate, demo."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from syncer.cli import app
from syncer.cli.emulate_cmds import parse_rate
from syncer.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture
def config(memory_config: Path) -> Path:
    return memory_config


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_plan_json_counts_and_explain_one_record(config: Path) -> None:
    data = json.loads(_ok("plan", "-c", str(config), "-d", "crm", "--json"))
    assert data["totals"]["create"] == 25
    explained = json.loads(
        _ok("plan", "-c", str(config), "-d", "crm", "--json", "--explain", "u01")
    )
    [sample] = [s for o in explained["objects"] for s in o["samples"]]
    assert sample["key"] == "u01"
    assert sample["payload"]["syncer_stage"] == "CUS"
    text = _ok("plan", "-c", str(config), "-d", "crm", "--explain", "u01")
    assert "hubspot.yaml:" in text  # the template behind each value


def test_run_status_errors_retry(config: Path) -> None:
    out = _ok("run", "-c", str(config), "-d", "crm")
    assert "succeeded" in out
    assert "run" in _ok("status", "-c", str(config))
    assert "no rejected records" in _ok("errors", "-c", str(config))
    assert "0 record(s)" in _ok("retry", "-c", str(config), "-d", "crm")


def test_a_missing_config_or_destination_is_a_clear_error(config: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", "-c", str(tmp_path / "nope.yaml"), "-d", "crm"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert "no configuration file" in str(result.exception)
    result = runner.invoke(app, ["plan", "-c", str(config), "-d", "salesforse"])
    assert "no destination 'salesforse'" in str(result.exception)
    assert "crm" in str(result.exception)


def test_explain_user_names_the_deciding_rule(config: Path) -> None:
    out = _ok("explain", "user", "u09", "-c", str(config))
    assert "stage PRO" in out
    assert "XYZ" in out
    out = _ok("explain", "account", "ACME", "-c", str(config))
    assert "licenses 170" in out


def test_filter_prints_the_exact_text_for_both_matching_rules() -> None:
    out = _ok("filter", "34", "CUS")
    assert ";34xcus;" in out
    assert re.search(r"\b34xcus\b", out)
    assert ";34x" in _ok("filter", "34", "--prefix")


def test_rate_limit_option_parses_and_rejects_nonsense() -> None:
    assert parse_rate("100/10s") == (100, 10_000)
    assert parse_rate("190/500ms") == (190, 500)
    with pytest.raises(ConfigError, match="100/10s"):
        parse_rate("fast")


def test_demo_without_prefect_runs_twice_and_sends_nothing_the_third_time(
    tmp_path: Path,
) -> None:
    out = _ok("demo", "--no-prefect", "--dir", str(tmp_path / "demo"))
    match = re.search(r"first sync (\d+), after the change (\d+), with nothing changed (\d+)", out)
    assert match is not None, out
    first, second, third = map(int, match.groups())
    assert first > second > third == 0


def _start_emulator(*args: str) -> tuple[subprocess.Popen[str], str]:
    """``syncer emulate ...`` as a person starts it; returns the process and the URL it prints."""
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("syncer")), "emulate", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        match = re.search(r"listening on (https?://127\.0\.0\.1:\d+)", line)
        if match:
            return process, match[1]
    process.wait(timeout=10)
    pytest.fail(f"syncer emulate {args[0]} exited with {process.returncode} without a URL")


def _stop(process: subprocess.Popen[str]) -> str:
    """Stop an emulator as a process manager does: SIGTERM, then wait for it to exit.

    Not SIGINT: a shell starts background jobs with SIGINT ignored, so under `bash .ci/run &`
    a SIGINT would be lost and the emulator left running.
    """
    process.send_signal(signal.SIGTERM)
    try:
        out, _ = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail("the emulator did not stop within 10 s of SIGTERM")
    return out


@pytest.mark.parametrize("destination", ["hubspot", "salesforce"])
def test_syncer_emulate_then_syncer_run_end_to_end(
    destination: str,
    make_examples_config: Callable[[str], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cert = tmp_path / "emulator.pem"
    extra = ["--cert", str(cert)] if destination == "salesforce" else []
    process, url = _start_emulator(destination, *extra)
    try:
        if destination == "hubspot":
            monkeypatch.setenv("HUBSPOT_TOKEN", "demo-token")
            credentials = "{access_token: env:HUBSPOT_TOKEN}"
            settings = f"{{host: '{url}'}}"
        else:
            monkeypatch.setenv("SF_SESSION", "demo-session")
            credentials = "{session_id: env:SF_SESSION}"
            settings = f"{{instance_url: '{url}', verify: '{cert}', allow_create_fields: true}}"
        config = make_examples_config(
            f"destinations:\n  crm:\n    connector: {destination}\n"
            f"    mapping: {ROOT / 'mappings' / f'{destination}.yaml'}\n"
            f"    credentials: {credentials}\n    settings: {settings}\n"
        )
        first = _run_table(_ok("run", "-c", str(config), "-d", "crm"))
        again = _run_table(_ok("run", "-c", str(config), "-d", "crm"))
    finally:
        out = _stop(process)
    # examples/ holds 11 accounts and 14 users: all sent at first, nothing (no request) again.
    assert sorted(row["sent"] for row in first.values()) == [11, 14]
    assert all(row["rej"] == row["refused"] == 0 for row in first.values())
    assert [(row["sent"], row["req"]) for row in again.values()] == [(0, 0), (0, 0)]
    assert "stopped after" in out


def _run_table(output: str) -> dict[str, dict[str, int]]:
    """The per-object rows of ``syncer run``'s table, by column name."""
    assert "succeeded" in output, output
    lines = output.splitlines()
    [header] = [i for i, line in enumerate(lines) if line.split()[:2] == ["object", "new"]]
    names = lines[header].split()[1:]
    rows: dict[str, dict[str, int]] = {}
    for line in lines[header + 2 :]:
        cells = line.split()
        if len(cells) != len(names) + 1:
            break
        rows[cells[0]] = dict(zip(names, map(int, cells[1:]), strict=True))
    return rows


def test_demo_without_prefect_installed_names_the_extra(tmp_path: Path) -> None:
    # The core install has no Prefect: `import prefect` fails as it would there.
    script = (
        "import sys; sys.modules['prefect'] = None\n"
        "from syncer.cli import main\n"
        f"main(['demo', '--dir', {str(tmp_path / 'demo')!r}])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "Prefect, which is not installed" in done.stderr
    assert "pip install 'syncer[prefect]'" in done.stderr
    assert "syncer demo --no-prefect" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_demo_runs_whatever_the_prefect_profile_says(tmp_path: Path) -> None:
    """A profile left pointing at a Prefect server that is not running (README's old advice,
    `prefect config set PREFECT_API_URL=...`) does not stop the demo: it runs its own API."""
    home = tmp_path / "prefect-home"
    env = {**os.environ, "PREFECT_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "prefect",
            "config",
            "set",
            "PREFECT_API_URL=http://127.0.0.1:9/api",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    profiles = (home / "profiles.toml").read_text()
    assert "127.0.0.1:9" in profiles
    done = subprocess.run(
        [str(Path(sys.executable).with_name("syncer")), "demo", "--dir", str(tmp_path / "demo")],
        env={**env, "PREFECT_API_URL": "http://127.0.0.1:9/api"},
        check=False,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "with nothing changed 0" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert (home / "profiles.toml").read_text() == profiles  # the user's profile is untouched
