"""syncer.yaml: every error at once with its line, no secret literals, paths anchored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from syncer.config import load_config, resolve_credentials
from syncer.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "syncer.yaml"
    path.write_text(text, encoding="utf-8")
    (tmp_path / "m.yaml").write_text("objects: {}\n", encoding="utf-8")
    return path


def test_the_example_config_loads_with_paths_relative_to_it() -> None:
    config = load_config(ROOT / "examples" / "syncer.yaml", environ={})
    dest = config.destination("hubspot")
    assert dest.mapping == (ROOT / "examples" / ".." / "mappings" / "hubspot.yaml")
    assert dest.mapping.resolve().is_file()
    # A relative SQLite path is relative to the config file, not the working directory.
    assert config.store is not None
    assert Path(config.store.removeprefix("sqlite:///")).resolve() == (ROOT / "demo.db").resolve()
    assert config.state == config.store  # the state defaults to the store
    assert dest.schedule is not None
    assert dest.schedule.timezone == "Europe/Berlin"


def test_every_problem_is_reported_at_once_with_its_line(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        "store: sqlite:///x.db\n"  # 1
        "policies:\n"  # 2
        "  primary: loudest\n"  # 3
        "destinations:\n"  # 4
        "  hubspot:\n"  # 5
        "    connector: hubspot\n"  # 6
        "    mapping: m.yaml\n"  # 7
        "    credentials: {access_token: pat-na1-0123456789}\n"  # 8
        "    removal: shred\n"  # 9
        "    schedule: {cron: 'every hour', timezone: Mars/Olympus}\n",  # 10
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    lines = {p.line for p in caught.value.problems}
    assert {3, 8, 9, 10} <= lines
    text = str(caught.value)
    assert "pat-na1-0123456789" not in text  # a secret is never echoed
    assert "env:" in text  # ... and the message says what to write instead


def test_environment_overrides_store_and_state(tmp_path: Path) -> None:
    path = _config(tmp_path, "store: sqlite:///file.db\n")
    config = load_config(
        path, environ={"SYNCER_STORE_URL": "sqlite:///other.db", "SYNCER_STATE_URL": "sqlite:///s"}
    )
    assert (config.store, config.state) == ("sqlite:///other.db", "sqlite:///s")


def test_credentials_come_from_the_environment_and_missing_ones_are_listed(
    tmp_path: Path,
) -> None:
    path = _config(
        tmp_path,
        "destinations:\n"
        "  hubspot:\n"
        "    connector: hubspot\n"
        "    mapping: m.yaml\n"
        "    credentials: {access_token: env:HS_TOKEN, other: prefect-secret:hs-other}\n",
    )
    dest = load_config(path, environ={}).destination("hubspot")
    with pytest.raises(ConfigError) as caught:
        resolve_credentials(dest, environ={})
    text = str(caught.value)
    assert "HS_TOKEN is not set" in text
    assert "Prefect Secret block 'hs-other'" in text
    got = resolve_credentials(
        dest, environ={"HS_TOKEN": "t0k"}, secret_loader=lambda name: f"secret-of-{name}"
    )
    assert got["access_token"] == SecretStr("t0k")
    assert got["other"].get_secret_value() == "secret-of-hs-other"


def test_an_unknown_destination_lists_the_known_ones(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        "destinations:\n  hubspot: {connector: hubspot, mapping: m.yaml}\n",
    )
    with pytest.raises(ConfigError, match="configured: hubspot"):
        load_config(path, environ={}).destination("hubspto")


@pytest.mark.parametrize(
    "value",
    [
        "pat-na1-0a1b2c3d-4e5f-6789-abcd-ef0123456789",
        "00D5e000000AbCd!AQ0AQKx3pVn.9mFz7_eXaMpLeSeSsIoNiD",
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeW5jZXIifQ.c2lnbmF0dXJl",
        "Bearer 0123456789abcdef",
    ],
)
def test_a_token_under_any_settings_key_is_an_error_and_never_echoed(
    tmp_path: Path, value: str
) -> None:
    path = _config(
        tmp_path,
        "destinations:\n"  # 1
        "  hubspot:\n"  # 2
        "    connector: hubspot\n"  # 3
        "    mapping: m.yaml\n"  # 4
        "    settings:\n"  # 5
        "      host: http://127.0.0.1:8765\n"  # 6
        f"      auth: {json.dumps(value)}\n",  # 7
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    [problem] = caught.value.problems
    assert (problem.file, problem.line) == (str(path), 7)
    assert "settings.auth" in problem.message
    assert value not in str(caught.value)
    assert "env:" in str(caught.value)


def test_ordinary_settings_are_not_mistaken_for_tokens(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        "destinations:\n"
        "  hubspot:\n"
        "    connector: hubspot\n"
        "    mapping: m.yaml\n"
        "    settings: {host: 'https://api.hubapi.com', portal: pattern-na1, region: eu1}\n",
    )
    assert load_config(path, environ={}).destination("hubspot").settings["portal"] == "pattern-na1"


def test_a_password_in_a_database_url_is_an_error_and_never_echoed(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        "store: postgresql+psycopg://syncer:hunter2@db:5432/prod\n"  # 1
        "state: postgresql+psycopg://syncer@db:5432/state\n"  # 2: no password, fine
        "destinations:\n"  # 3
        "  hubspot: {connector: hubspot, mapping: m.yaml, removal: shred}\n",  # 4
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert [p.line for p in caught.value.problems] == [1, 4]  # all at once, in line order
    assert "hunter2" not in str(caught.value)
    assert "SYNCER_STORE_URL" in str(caught.value)


def test_a_custom_ladder_keeps_only_the_default_aliases_that_fit_it(tmp_path: Path) -> None:
    path = tmp_path / "syncer.yaml"
    path.write_text("stages: {names: [trial, paying, lead]}\ndestinations: {}\n", encoding="utf-8")
    ladder = load_config(path).stages.ladder()
    assert ladder.names == ("trial", "paying", "lead")
    assert ladder.normalize("lead") == "lead"  # a name of this ladder, not the default alias
    with pytest.raises(ValueError, match="MAL"):
        ladder.normalize("MAL")


def test_explicit_aliases_replace_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "syncer.yaml"
    path.write_text(
        "stages: {names: [trial, paying], aliases: {customer: paying}}\ndestinations: {}\n",
        encoding="utf-8",
    )
    ladder = load_config(path).stages.ladder()
    assert ladder.normalize("Customer") == "paying"
    with pytest.raises(ValueError, match="lead"):
        ladder.normalize("lead")
