"""``syncer plan --json`` and ``syncer run`` say what a plan read: ``mode`` (``incremental`` or
``full``) and ``read`` (store rows by table); ``--full`` forces the whole recompute."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from syncer.cli import app
from syncer.cli.app import console

runner = CliRunner()


def _plan_json(config: Path, *args: str) -> dict[str, object]:
    result = runner.invoke(app, ["plan", "-c", str(config), "-d", "crm", "--json", *args])
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.output)
    return data


def test_plan_json_says_what_it_read(memory_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "width", 200)
    first = _plan_json(memory_config)
    assert first["mode"] == "full"  # no run completed yet
    read = first["read"]
    assert isinstance(read, dict)
    assert set(read) == {"users", "accounts", "memberships"}
    assert read["users"] > 0
    result = runner.invoke(app, ["run", "-c", str(memory_config), "-d", "crm", "--full"])
    assert result.exit_code == 0, result.output
    idle = _plan_json(memory_config)
    assert idle["mode"] == "incremental"
    assert idle["read"] == {"users": 0, "accounts": 0, "memberships": 0}
    assert idle["totals"] == dict.fromkeys(
        ("create", "update", "unchanged", "remove", "rejected", "skipped"), 0
    )
    store = create_engine(f"sqlite:///{memory_config.parent / 'store.db'}")
    with store.begin() as conn:
        conn.execute(text("UPDATE users SET first_name = 'Adaline' WHERE user_id = 'u01'"))
    store.dispose()
    one = _plan_json(memory_config)
    assert one["mode"] == "incremental"
    assert one["read"]["users"] == 1  # type: ignore[index]
    assert one["totals"]["update"] == 1  # type: ignore[index]
    full = _plan_json(memory_config, "--full")
    assert full["mode"] == "full"
    assert full["totals"]["update"] == 1  # type: ignore[index]
    assert full["read"]["users"] == first["read"]["users"]  # type: ignore[index]


def test_explain_finds_a_record_that_did_not_change(memory_config: Path) -> None:
    result = runner.invoke(app, ["run", "-c", str(memory_config), "-d", "crm"])
    assert result.exit_code == 0, result.output
    shown = _plan_json(memory_config, "--explain", "u03")
    assert shown["mode"] == "full"  # the record to show may be anywhere: everything is read
    samples = [s for o in shown["objects"] for s in o["samples"]]  # type: ignore[attr-defined]
    assert [(s["key"], s["action"]) for s in samples] == [("u03", "unchanged")]
