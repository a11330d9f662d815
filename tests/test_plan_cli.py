"""``syncer plan`` as a user reads it: counts and one line per changed record, fitting the
terminal; ``--verbose`` per-field before → after with the rule or template behind each value;
``--json`` carries the same; ``--explain KEY`` shows one record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from syncer.cli import app
from syncer.cli.app import console

runner = CliRunner()


@pytest.fixture
def applied(memory_config: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The examples/ store synced once to the memory destination, then Ada renamed and Grace
    taken out of ACME: the next plan holds updates."""
    monkeypatch.setattr(console, "width", 200)
    result = runner.invoke(app, ["run", "-c", str(memory_config), "-d", "crm"])
    assert result.exit_code == 0, result.output
    store = create_engine(f"sqlite:///{memory_config.parent / 'store.db'}")
    with store.begin() as conn:
        conn.execute(text("UPDATE users SET first_name = 'Adaline' WHERE user_id = 'u01'"))
        conn.execute(text("DELETE FROM memberships WHERE user_id = 'u02' AND account_id = 'ACME'"))
    store.dispose()
    return memory_config


def _plan(config: Path, *args: str) -> str:
    result = runner.invoke(app, ["plan", "-c", str(config), "-d", "crm", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_plan_shows_counts_and_one_line_per_changed_record(applied: Path) -> None:
    out = _plan(applied)
    lines = out.splitlines()
    changed = [line for line in lines if line.startswith("update ")]
    # Ada renamed; Grace out of ACME: her contact and ACME's company (its member lists) change.
    assert sorted(line.split()[1:3][1] for line in changed) == ["ACME", "u01", "u02"]
    [ada] = [line for line in changed if " u01 " in line]
    assert ada.split()[:2] == ["update", "contacts"]
    assert "firstname Ada → Adaline" in ada
    assert len(lines) < 15  # the counts, three records, a hint: not a table per field
    assert "--verbose" in lines[-1]


def test_plan_lines_fit_the_terminal_whatever_its_width(
    applied: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wide = _plan(applied).splitlines()
    assert max(map(len, wide)) > 80  # a wide terminal is used, not cut at 80
    monkeypatch.setattr(console, "width", 80)
    narrow = _plan(applied).splitlines()
    assert len(narrow) == len(wide)  # cut, never wrapped onto a second line
    assert max(map(len, narrow)) <= 80
    assert any(line.endswith("…") for line in narrow)


def test_plan_on_a_first_run_prints_a_line_per_record_not_a_table_per_field(
    memory_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "width", 120)
    lines = _plan(memory_config).splitlines()
    creates = [line for line in lines if line.startswith("create ")]
    assert len(creates) == 25  # examples/: 11 accounts, 14 users
    assert len(lines) <= 25 + 8


def test_plan_verbose_shows_before_after_with_the_template(applied: Path) -> None:
    out = _plan(applied, "--verbose")
    assert "unchanged" in out
    [ada] = [line for line in out.splitlines() if line.strip().startswith("firstname")]
    assert ada.split()[:3] == ["firstname", "Ada", "Adaline"]
    assert "hubspot.yaml:" in ada
    assert "user.first_name" in ada
    # Only what changed is shown for an update; companions by their full names, with their rule.
    assert "lastname" not in out
    [count] = [line for line in out.splitlines() if line.strip().startswith("syncer_users_count")]
    assert "how many tokens syncer_users has" in count


def test_plan_json_gives_counts_changes_and_rules(applied: Path) -> None:
    data = json.loads(_plan(applied, "--json"))
    assert data["totals"]["update"] == 3
    contacts = next(o for o in data["objects"] if o["object"] == "contacts")
    [u01] = [s for s in contacts["samples"] if s["key"] == "u01"]
    assert u01["changes"] == {"firstname": "Adaline"}
    assert u01["before"]["firstname"] == "Ada"
    assert contacts["rules"]["firstname"].endswith("user.first_name")
    assert contacts["rules"]["syncer_user_id"] == "the product's user_id (the object's key)"
    assert "syncer_accounts" in contacts["rules"]["syncer_accounts_truncated"]


def test_plan_explain_shows_every_field_of_one_record(applied: Path) -> None:
    out = _plan(applied, "--explain", "u01")
    assert "contacts u01: update" in out
    [last] = [line for line in out.splitlines() if line.strip().startswith("lastname")]
    assert "(same)" in last
    assert "u02" not in out.replace("u01", "")
    missing = _plan(applied, "--explain", "nobody")
    assert "no record with key 'nobody'" in missing
