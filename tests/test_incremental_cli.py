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


def test_a_scope_that_needs_much_of_the_forest_reads_it_whole(
    memory_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above a share of the store's accounts the whole forest is streamed instead of its part
    by recursive queries (faster per row): the same plan, and the whole forest counted."""
    from syncer.engine import incremental

    result = runner.invoke(app, ["run", "-c", str(memory_config), "-d", "crm", "--full"])
    assert result.exit_code == 0, result.output
    store = create_engine(f"sqlite:///{memory_config.parent / 'store.db'}")
    with store.begin() as conn:
        # Another column too: the user is rebuilt, which needs its accounts' part of the
        # forest (a user whose email alone changed is made from its row, without it).
        conn.execute(
            text(
                "UPDATE users SET email = 'ada@new.example', attributes = '{\"x\": 1}' "
                "WHERE user_id = 'u01'"
            )
        )
        total = conn.execute(text("SELECT count(*) FROM accounts")).scalar_one()
    store.dispose()
    part = _plan_json(memory_config)
    part_forest = _forest_size(memory_config)
    monkeypatch.setattr(incremental, "WHOLE_FOREST_MIN", 0)
    monkeypatch.setattr(incremental, "WHOLE_FOREST_SHARE", 0.0)
    whole = _plan_json(memory_config)
    assert part["mode"] == whole["mode"] == "incremental"
    assert part["totals"] == whole["totals"]
    assert part["totals"]["update"] >= 1  # type: ignore[index]
    assert part_forest < total == _forest_size(memory_config)


def _forest_size(config: Path) -> int:
    """How many accounts the hierarchy of an incremental scope of ``crm`` holds now."""
    from syncer.config import load_config
    from syncer.engine import Sync
    from syncer.engine.incremental import read_scope

    with Sync(load_config(config)) as sync:
        scope = read_scope(sync, sync.destination("crm"))
        assert scope.mode == "incremental"
        return len(sync.hierarchy)
