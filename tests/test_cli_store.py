"""``syncer init``, ``load`` (--skip-bad, progress) and ``explain`` as README's step by step types
them: ``--store`` only, no syncer.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import delete, update
from typer.testing import CliRunner

from syncer.cli import app
from syncer.cli.app import console
from syncer.model import DEFAULT_LADDER
from syncer.policies import resolve_user_stage
from syncer.state import open_state
from syncer.state.marks import MarkStore
from syncer.store.database import open_store
from syncer.store.readers import read_user
from syncer.store.schema import memberships

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables as wide as they want: cells do not wrap mid-phrase."""
    monkeypatch.setattr(console, "width", 200)


def _run(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # Rich wraps at 80 columns


def _loaded(url: str) -> str:
    _run("init", "--store", url)
    _run("load", str(ROOT / "examples"), "--store", url)
    return url


def test_init_creates_the_sync_state_so_explain_works_right_after_load(db_url: str) -> None:
    url = _loaded(db_url)
    open_state(url).dispose()  # would raise "run `syncer init`" without the state tables
    out = _run("explain", "user", "u01", "--store", url)
    assert "Ada Lovelace (u01)" in out
    assert "stage CUS — best active membership: CUS in account ACME (Acme Corp)" in out
    out = _run("explain", "account", "ACME", "--store", url)
    assert "children: ACME-EU, ACME-US" in out
    assert "stage CUS — account stage: CUS" in out


def test_init_with_a_separate_state_database(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'store.db'}"
    state = f"sqlite:///{tmp_path / 'state.db'}"
    out = _run("init", "--store", store, "--state", state)
    assert "sync state ready" in out
    open_state(state).dispose()
    _run("init", "--store", store, "--state", state)  # idempotent


def test_explain_user_shows_earlier_marks_and_the_high_water_rule(db_url: str) -> None:
    url = _loaded(db_url)
    engine = open_store(url)
    item = read_user(engine, "u01")
    assert item is not None
    first = resolve_user_stage(item.user, item.memberships, [], DEFAULT_LADDER)
    MarkStore(open_state(engine)).save(first.marks)
    m = memberships.c
    with engine.begin() as conn:  # ACME corrected down to MQL, XYZ left the store
        conn.execute(
            update(memberships)
            .where(m.user_id == "u01", m.account_id == "ACME")
            .values(stage="MQL")
        )
        conn.execute(delete(memberships).where(m.user_id == "u01", m.account_id == "XYZ"))
    engine.dispose()
    out = _run("explain", "user", "u01", "--store", url)
    assert "ACME Acme Corp MQL CUS CUS primary" in out  # stage in store, earlier mark, mark now
    assert "XYZ (not in store) MQL — left: churn" in out
    assert "stage CUS — best active membership: CUS in account ACME (Acme Corp) " in out
    assert "(high-water mark; now MQL)" in out


def test_explain_an_unknown_user_is_a_clear_error(tmp_path: Path) -> None:
    url = _loaded(f"sqlite:///{tmp_path / 's.db'}")
    result = runner.invoke(app, ["explain", "user", "nobody", "--store", url])
    assert result.exit_code != 0
    assert "no user 'nobody' in the store" in str(result.exception)


def test_load_skip_bad_reports_each_skipped_row_and_loads_the_rest(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    _run("init", "--store", url)
    bad = tmp_path / "users.csv"
    bad.write_text("user_id,created_at\nu1,2024-01-01\nu2,soon\nu3,\n", encoding="utf-8")
    refused = runner.invoke(app, ["load", str(bad), "--store", url])
    assert refused.exit_code != 0
    assert "--skip-bad" in str(refused.exception)
    out = _run("load", str(bad), "--skip-bad", "--store", url)
    assert "skipped 1 bad row(s):" in out
    assert "users.csv:3, record 'u2', field 'created_at': 'soon' is not an ISO 8601" in out
    assert "total 3 2 0 0 1" in out  # rows, inserted, updated, unchanged, skipped


def test_large_loads_show_progress_and_small_ones_do_not(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    _run("init", "--store", url)
    small = tmp_path / "users_small.csv"
    small.write_text("user_id\n" + "".join(f"s{i}\n" for i in range(100)), encoding="utf-8")
    assert "writing records" not in _run("load", str(small), "--store", url)
    big = tmp_path / "users_big.csv"
    big.write_text(
        "user_id,email\n" + "".join(f"b{i:05d},b{i}@x.io\n" for i in range(6000)),
        encoding="utf-8",
    )
    out = _run("load", str(big), "--store", url)
    assert "writing records" in out
    assert "6,000/6,000" in out
