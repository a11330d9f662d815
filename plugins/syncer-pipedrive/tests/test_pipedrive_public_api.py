"""The plugin stands on syncer's public connector API only, and registers like any plugin."""

from __future__ import annotations

import ast
from importlib.metadata import entry_points
from pathlib import Path

import syncer_pipedrive

from syncer.connectors.registry import GROUP, get_connector

PUBLIC = {
    "syncer.connectors.base",
    "syncer.connectors.http",
    "syncer.connectors.http_status",
    "syncer.errors",
    "syncer.fields",
}


def test_the_package_imports_nothing_but_the_public_api() -> None:
    package = Path(syncer_pipedrive.__file__).parent
    used: dict[str, str] = {}
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                used[node.module] = path.name
            elif isinstance(node, ast.Import):
                used.update((alias.name, path.name) for alias in node.names)
    private = {m: f for m, f in used.items() if m.split(".")[0] == "syncer" and m not in PUBLIC}
    assert not private, f"syncer internals imported: {private}"


def test_it_is_registered_under_the_connectors_entry_point() -> None:
    [entry] = [ep for ep in entry_points(group=GROUP) if ep.name == "pipedrive"]
    assert entry.value == "syncer_pipedrive.connector:PipedriveConnector"
    assert get_connector("pipedrive") is syncer_pipedrive.PipedriveConnector
