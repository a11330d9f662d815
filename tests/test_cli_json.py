"""``--json`` on run, status, errors, explain, connectors, store stats and plan: one JSON document
on stdout, with exactly the keys docs/cli.md documents (a key renamed or dropped fails here)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from syncer.config import load_config
from syncer.engine import Sync
from syncer.state import acquire

ROOT = Path(__file__).resolve().parents[1]
Cli = Callable[..., tuple[int, str, str]]


def _documented() -> dict[str, set[str]]:
    """docs/cli.md's key tables: ``### `syncer run --json` `` heading → its keys."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    found: dict[str, set[str]] = {}
    section = None
    for line in text.splitlines():
        heading = re.match(r"### `syncer (.+?) --json`", line)
        if heading:
            section = heading[1]
            found[section] = set()
        elif section and (row := re.match(r"\| `([\w.\[\]]+)` \|", line)):
            found[section].add(row[1])
    return found


DOCUMENTED = _documented()


#: Keys whose value is a mapping of data (actions, figures, field names), not of more keys.
_MAPPINGS = {"counts", "totals", "figures", "rollups", "changes", "before", "payload", "rules"}


def _keys(data: Any, prefix: str = "") -> set[str]:
    """Every key path of ``data``: ``objects[].counts`` and the like."""
    out: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}{key}"
            out.add(path)
            if key not in _MAPPINGS:
                out |= _keys(value, f"{path}.")
    elif isinstance(data, list):
        for item in data:
            out |= _keys(item, f"{prefix[:-1]}[].")
    return out


def _json(cli: Cli, *args: str, code: int = 0) -> Any:
    status, out, err = cli(*args, "--json")
    assert status == code, err
    return json.loads(out)


@pytest.fixture
def refusing_config(make_examples_config: Callable[[str], Path]) -> Path:
    """The memory destination, refusing Ada's contact (u01) so that `errors` has a row."""
    return make_examples_config(
        "destinations:\n  crm:\n    connector: memory\n"
        f"    mapping: {ROOT / 'mappings' / 'hubspot.yaml'}\n"
        "    settings: {reject_keys: [u01]}\n"
    )


def test_every_json_output_has_exactly_the_documented_keys(
    cli: Cli, refusing_config: Path, tmp_path: Path
) -> None:
    c = str(refusing_config)
    outputs = {
        "plan": _json(cli, "plan", "-c", c, "-d", "crm"),
        "run": _json(cli, "run", "-c", c, "-d", "crm", code=1),  # partial: u01 refused
        "status": _json(cli, "status", "-c", c),
        "errors": _json(cli, "errors", "-c", c),
        "explain user": _json(cli, "explain", "user", "u09", "-c", c),
        "explain account": _json(cli, "explain", "account", "ACME", "-c", c),
        "connectors": _json(cli, "connectors"),
        "store stats": _json(cli, "store", "stats", "--store", f"sqlite:///{tmp_path}/store.db"),
    }
    with Sync(load_config(refusing_config)) as sync:
        held = acquire(sync.state, "crm", "a-run-id", ttl_seconds=60)
        outputs["lease show"] = _json(cli, "lease", "show", "-c", c)
        held.release()
    assert set(DOCUMENTED) == set(outputs)
    for command, data in outputs.items():
        assert _keys(data) == DOCUMENTED[command], command


def test_run_json_reports_what_was_sent_and_refused(cli: Cli, refusing_config: Path) -> None:
    report = _json(cli, "run", "-c", str(refusing_config), "-d", "crm", code=1)
    assert report["status"] == "partial"
    assert re.fullmatch(r"[0-9a-f-]{32,36}", report["run_id"])
    by_object = {o["object"]: o for o in report["objects"]}
    assert by_object["companies"]["sent"] == 11
    assert by_object["contacts"]["sent"] == 13
    assert by_object["contacts"]["refused"] == 1
    [error] = by_object["contacts"]["errors"]
    assert error["key"] == "u01"
    assert "refuses it" in error["reason"]
    assert report["elapsed"] > 0

    [last] = _json(cli, "status", "-c", str(refusing_config))["runs"]
    assert last["run_id"] == report["run_id"]
    assert last["status"] == "partial"
    [refused] = _json(cli, "errors", "-c", str(refusing_config))["errors"]
    assert (refused["key"], refused["object"], refused["set_aside"]) == ("u01", "contacts", False)


def test_json_goes_alone_on_stdout(cli: Cli, memory_config: Path) -> None:
    code, out, _ = cli("run", "-c", str(memory_config), "-d", "crm", "--json")
    assert code == 0
    json.loads(out)  # nothing but the document: no table, no progress bar
    assert out.lstrip().startswith("{")


def test_explain_json_names_the_deciding_rule(cli: Cli, memory_config: Path) -> None:
    user = _json(cli, "explain", "user", "u09", "-c", str(memory_config))
    assert user["stage"] == "PRO"
    assert "XYZ" in {m["account_id"] for m in user["memberships"]}
    account = _json(cli, "explain", "account", "ACME", "-c", str(memory_config))
    assert account["rollups"]["licenses"] == 170


def test_connectors_json_lists_the_installed_ones(cli: Cli) -> None:
    found = {c["name"]: c for c in _json(cli, "connectors")["connectors"]}
    assert {"hubspot", "salesforce"} <= set(found)
    assert found["hubspot"]["status"] == "ok"
    assert found["hubspot"]["error"] is None
