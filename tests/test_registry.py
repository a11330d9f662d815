"""Connector discovery through entry points: broken plugins are reported, never fatal to others."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from typer.testing import CliRunner

from syncer.cli import app
from syncer.connectors import registry
from syncer.connectors.base import Capabilities, Connector, ConnectorConfig, WriteRecord
from syncer.errors import ConfigError
from syncer.testing.memory import MemoryConnector


@dataclass
class FakeDist:
    name: str


@dataclass
class FakeEntryPoint:
    """What registry reads of an importlib.metadata.EntryPoint."""

    name: str
    value: str
    target: Any = None
    dist: FakeDist | None = None

    def load(self) -> Any:
        if self.target is None:
            module = self.value.split(":")[0]
            raise ModuleNotFoundError(f"No module named {module!r}")
        return self.target


class Unfinished(Connector[ConnectorConfig]):
    """A plugin that forgot ``write`` and its declarations."""

    name = "unfinished"


class ZeroBatch(MemoryConnector):
    name = "zero"
    capabilities = Capabilities(max_batch=0)


PLUGINS = [
    FakeEntryPoint(
        "memory", "syncer.testing.memory:MemoryConnector", MemoryConnector, FakeDist("syncer")
    ),
    FakeEntryPoint("acme", "acme_syncer.connector:AcmeConnector", None, FakeDist("acme-syncer")),
    FakeEntryPoint("memo", "syncer.testing.memory:MemoryConnector", MemoryConnector),
]


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> list[FakeEntryPoint]:
    found = list(PLUGINS)

    def entry_points(*, group: str) -> Sequence[FakeEntryPoint]:
        assert group == "syncer.connectors"
        return found

    monkeypatch.setattr(registry, "entry_points", entry_points)
    return found


def test_the_built_in_entry_points_are_discovered_even_before_their_modules_exist() -> None:
    found = {info.name: info for info in registry.discover()}
    assert {"hubspot", "salesforce"} <= set(found)
    for name in ("hubspot", "salesforce"):
        info = found[name]
        assert info.distribution == "syncer"
        # Either the module is there and valid, or its failure is reported, not raised.
        assert (info.cls is None) != (info.error is None)
        if info.error is not None:
            assert info.entry_point in info.error


def test_a_plugin_that_fails_to_import_is_reported_and_the_others_still_load(
    plugins: list[FakeEntryPoint],
) -> None:
    found = {info.name: info for info in registry.discover()}
    assert found["memory"].cls is MemoryConnector
    assert found["memory"].error is None
    assert found["acme"].cls is None
    assert found["acme"].error == (
        "failed to import acme_syncer.connector:AcmeConnector: "
        "ModuleNotFoundError(\"No module named 'acme_syncer.connector'\")"
    )
    assert found["acme"].distribution == "acme-syncer"


def test_a_plugin_registered_under_another_name_is_invalid_and_named(
    plugins: list[FakeEntryPoint],
) -> None:
    info = {i.name: i for i in registry.discover()}["memo"]
    assert info.cls is None
    assert "connector plugin 'memo' (syncer.testing.memory:MemoryConnector)" in (info.error or "")
    assert "registered as 'memo'; make them equal" in (info.error or "")


def test_an_unfinished_plugin_lists_everything_it_lacks() -> None:
    with pytest.raises(ConfigError) as exc:
        registry.validate_connector(Unfinished, "unfinished", "acme:Unfinished")
    text = str(exc.value)
    assert text.startswith("connector plugin 'unfinished' is invalid:")
    for problem in (
        "config_model must be",
        "capabilities must be",
        "objects must map",
        "does not implement write",
    ):
        assert problem in text


def test_a_plugin_that_is_not_a_connector_class_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"connector plugin 'x' \(m:f\) is not a subclass"):
        registry.validate_connector(lambda: None, "x", "m:f")
    with pytest.raises(ConfigError, match="max_batch must be >= 1, not 0"):
        registry.validate_connector(ZeroBatch, "zero", "m:ZeroBatch")


def test_get_connector_returns_the_class_or_says_what_is_installed(
    plugins: list[FakeEntryPoint],
) -> None:
    assert registry.get_connector("memory") is MemoryConnector
    with pytest.raises(
        ConfigError,
        match=r"no connector named 'pipedrive' is installed \(installed: acme, memo, memory\)",
    ):
        registry.get_connector("pipedrive")
    with pytest.raises(ConfigError, match="failed to import acme_syncer"):
        registry.get_connector("acme")


def test_the_connectors_command_lists_name_entry_point_package_and_status(
    plugins: list[FakeEntryPoint],
) -> None:
    result = CliRunner().invoke(app, ["connectors"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = {
        line.split("│")[1].strip(): line
        for line in result.output.splitlines()
        if line.count("│") >= 4
    }
    assert "syncer.testing.memory:MemoryConnector" in rows["memory"]
    assert "ok" in rows["memory"]
    assert "acme-syncer" in rows["acme"]
    assert "error" in rows["acme"]
    assert "acme: failed to import acme_syncer.connector:AcmeConnector" in result.output


def test_the_connectors_check_fails_when_a_plugin_is_broken(plugins: list[FakeEntryPoint]) -> None:
    assert CliRunner().invoke(app, ["connectors", "--check"]).exit_code == 1
    plugins[:] = [plugins[0]]
    assert CliRunner().invoke(app, ["connectors", "--check"]).exit_code == 0


def test_memory_connector_is_a_valid_plugin() -> None:
    assert registry.validate_connector(MemoryConnector, "memory", "tests") is MemoryConnector
    batch = [WriteRecord("k", {}, {})]
    assert MemoryConnector().write("contacts", batch)[0].ok
