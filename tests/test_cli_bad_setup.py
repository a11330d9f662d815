"""A run that cannot start — no store there, a store never initialised, a mapping that is wrong
or missing, a config that is not YAML, a connector that is not installed — fails through the
real entry point the way docs/cli.md says a domain error does: exit 1, nothing on stdout (not
even with ``--json``), one ``error:`` saying what is wrong, where and what to do, no traceback,
and nothing created or written."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNCER_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")  # one message, one line: no wrapping by width


def _config(tmp_path: Path, *, store: Path, mapping: Path, connector: str = "memory") -> Path:
    path = tmp_path / "syncer.yaml"
    path.write_text(
        f"store: sqlite:///{store}\n"
        f"destinations:\n  crm:\n    connector: {connector}\n    mapping: {mapping}\n",
        encoding="utf-8",
    )
    return path


def _initialised(tmp_path: Path) -> Path:
    from syncer.store.database import init_store

    store = tmp_path / "store.db"
    init_store(f"sqlite:///{store}").dispose()
    return store


def _fails(cli: Cli, config: Path, *says: str) -> str:
    """``plan`` and ``run --json`` both fail with one clear error naming ``says``."""
    for args in (("plan", "-c", str(config), "-d", "crm"), ("run", "-c", str(config), "-d", "crm")):
        code, out, err = cli(*args, "--json")
        assert (code, out) == (1, ""), (args, out, err)
        assert err.startswith("error: "), err
        assert "Traceback" not in err
        for part in says:
            assert part in err, (part, err)
    return err


HUBSPOT = ROOT / "mappings" / "hubspot.yaml"


def test_a_store_that_is_not_there_is_named_with_the_command_that_creates_it(
    cli: Cli, tmp_path: Path
) -> None:
    store = tmp_path / "typo.db"
    config = _config(tmp_path, store=store, mapping=HUBSPOT)
    _fails(cli, config, f"no such file '{store}'", "syncer init --store")
    assert not store.exists()  # not created empty by the attempt


def test_a_store_never_initialised_says_to_run_init_and_gets_no_table(
    cli: Cli, tmp_path: Path
) -> None:
    store = tmp_path / "empty.db"
    sqlite3.connect(store).close()  # a file, but no syncer schema
    config = _config(tmp_path, store=store, mapping=HUBSPOT)
    _fails(cli, config, "is not initialised", "syncer init --store")
    with sqlite3.connect(store) as conn:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    assert tables == []  # neither the store's nor the sync state's tables were created


def test_every_mistake_of_a_mapping_is_named_at_its_line_before_anything_runs(
    cli: Cli, tmp_path: Path
) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "objects:\n"
        "  contacts:\n"
        "    source: users\n"
        "    key: syncer_user_id\n"
        "    fields:\n"
        '      email: {type: email, value: "user.emial"}\n'
        '      firstname: "{{ user.first_name"\n',
        encoding="utf-8",
    )
    config = _config(tmp_path, store=_initialised(tmp_path), mapping=mapping)
    err = _fails(
        cli,
        config,
        f"{mapping}:6",
        "Did you mean 'email'?",
        f"{mapping}:7",
        "never closed",
    )
    assert "--help" not in err  # a domain error: the fix is in the file, not in the options


def test_a_mapping_naming_an_object_the_connector_lacks_lists_what_it_writes(
    cli: Cli, tmp_path: Path
) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "objects:\n  deals:\n    source: users\n    key: id\n    fields: {}\n", encoding="utf-8"
    )
    config = _config(tmp_path, store=_initialised(tmp_path), mapping=mapping)
    _fails(cli, config, "unknown object 'deals'", "companies, contacts")


def test_a_mapping_file_that_is_not_there_is_named_with_the_config_line(
    cli: Cli, tmp_path: Path
) -> None:
    config = _config(tmp_path, store=_initialised(tmp_path), mapping=tmp_path / "nope.yaml")
    _fails(cli, config, "syncer.yaml:5", "file not found", "nope.yaml")


def test_a_config_that_is_not_yaml_names_the_line(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "syncer.yaml"
    config.write_text("store: [\n", encoding="utf-8")
    _fails(cli, config, "syncer.yaml:2: invalid YAML", "Fix the syntax")


def test_a_connector_that_is_not_installed_lists_the_installed_ones(
    cli: Cli, tmp_path: Path
) -> None:
    config = _config(tmp_path, store=_initialised(tmp_path), mapping=HUBSPOT, connector="hubspto")
    _fails(cli, config, "no connector named 'hubspto'", "installed: ", "hubspot")
