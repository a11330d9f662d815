"""Load-time checks against the sync configuration: stages on the ladder (the configured one with
``syncer load --config``, else the default), roll-up attributes that are numbers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from syncer.cli import app
from syncer.config import load_config
from syncer.errors import BadInputError
from syncer.store.database import init_store, open_store
from syncer.store.loaders import load_paths
from syncer.store.readers import read_account
from syncer.store.rules import LoadRules, as_number

runner = CliRunner()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Engine]:
    engine = init_store(f"sqlite:///{tmp_path / 'store.db'}")
    yield engine
    engine.dispose()


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "syncer.yaml"
    path.write_text(
        f"store: sqlite:///{tmp_path / 'store.db'}\n"
        "stages:\n  names: [LEAD, TRIAL, PAID]\n  churned: GONE\n"
        "policies:\n  rollups: {seats: max, renewals: count}\n",
        encoding="utf-8",
    )
    return path


def test_roll_up_text_that_spells_a_number_is_stored_as_the_number(
    store: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "accounts.csv"
    path.write_text("account_id,licenses,contract_value,notes\nA,12.50,1e3,007\n", encoding="utf-8")
    load_paths(store, [path])
    found = read_account(store, "A")
    assert found is not None
    # Roll-up fields become numbers; any other attribute keeps its exact text.
    assert dict(found.account.attributes) == {
        "licenses": 12.5,
        "contract_value": 1000.0,
        "notes": "007",
    }


def test_stage_aliases_and_the_churn_marker_of_the_ladder_are_accepted(
    store: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "accounts.csv"
    path.write_text("account_id,stage\nA,customer\nB,churned\nC, mql \n", encoding="utf-8")
    report = load_paths(store, [path])
    assert report.total("inserted") == 3


def test_the_configured_ladder_and_roll_ups_replace_the_defaults(
    store: Engine, tmp_path: Path
) -> None:
    config = _config(tmp_path)
    rules = LoadRules.from_config(load_config(config), str(config))
    path = tmp_path / "accounts.csv"
    path.write_text(
        "account_id,stage,seats,renewals,licenses\nA,TRIAL,3,whenever,n/a\nB,CUS,x,,\n",
        encoding="utf-8",
    )
    with pytest.raises(BadInputError) as caught:
        load_paths(store, [path], rules=rules)
    problems = [(p.line, p.field, p.message) for p in caught.value.problems]
    # licenses does not roll up in this config, and count takes any value: only B is bad.
    assert [(line, field) for line, field, _ in problems] == [(3, "stage"), (3, "seats")]
    assert "unknown stage 'CUS'" in problems[0][2]
    assert "the ladder of" in (caught.value.problems[0].hint or "")
    assert "LEAD, TRIAL, PAID or GONE" in (caught.value.problems[0].hint or "")


def test_syncer_load_config_checks_against_the_config_and_uses_its_store(tmp_path: Path) -> None:
    config = _config(tmp_path)
    init_store(f"sqlite:///{tmp_path / 'store.db'}").dispose()
    data = tmp_path / "accounts.csv"
    data.write_text("account_id,stage,seats\nA,PAID,4\n", encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    refused = runner.invoke(app, ["load", str(data), "--store", url])
    assert refused.exit_code != 0
    assert "unknown stage 'PAID'" in str(refused.exception)  # not on the default ladder
    ok = runner.invoke(app, ["load", str(data), "--config", str(config)])
    assert ok.exit_code == 0, ok.output
    engine = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    found = read_account(engine, "A")
    engine.dispose()
    assert found is not None
    assert found.account.stage == "PAID"


@pytest.mark.parametrize(
    ("value", "number"),
    [
        (3, 3),
        (2.5, 2.5),
        (" 4 ", 4),
        ("1e3", 1000.0),
        ("NaN", None),
        ("-inf", None),
        (float("nan"), None),
        (True, None),
        ("12 seats", None),
        ([1], None),
    ],
)
def test_as_number(value: object, number: float | None) -> None:
    assert as_number(value) == number
