"""A hierarchy cycle or a missing parent rejects those accounts (and the accounts under them) with
the reason, in the run report and ``syncer errors``; every other record syncs, members of the
rejected accounts included."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from syncer.cli import app
from syncer.cli.app import console
from syncer.db import create_db_engine
from syncer.state.failures import FailureLog
from syncer.store.schema import accounts
from syncer.testing.memory import MemoryConnector, MemoryStore

if TYPE_CHECKING:
    from syncer.engine import Sync

runner = CliRunner()

CYCLE = "parent_account_id forms a cycle: ACME → ACME-EU-RD → ACME-EU → ACME"
MISSING = "parent_account_id 'GHOST' is not an account"
EXPECTED = {
    "ACME": CYCLE,
    "ACME-EU": CYCLE,
    "ACME-EU-RD": CYCLE,
    "ACME-US": f"under account 'ACME', which is rejected: {CYCLE}",
    "UMBRELLA": MISSING,
}


def _break_the_hierarchy(store_url: str) -> None:
    engine = create_db_engine(store_url)
    with engine.begin() as conn:
        c = accounts.c
        conn.execute(
            update(accounts).where(c.account_id == "ACME").values(parent_account_id="ACME-EU-RD")
        )
        conn.execute(
            update(accounts).where(c.account_id == "UMBRELLA").values(parent_account_id="GHOST")
        )
    engine.dispose()


def test_bad_accounts_are_rejected_with_the_reason_and_everything_else_syncs(
    store_url: str,
    memory_sync: Callable[..., Sync],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _break_the_hierarchy(store_url)
    dest = MemoryStore()
    with memory_sync() as sync:
        plan = sync.plan("crm")
        report = sync.run("crm", connector=MemoryConnector(store=dest))
        failures = list(FailureLog(sync.state).iter_failures("crm"))
    planned = {o.object: o.counts for o in plan.objects}
    assert planned["companies"].rejected == 5  # the plan says so before anything is sent
    companies = next(o for o in report.objects if o.object == "companies")
    contacts = next(o for o in report.objects if o.object == "contacts")
    assert report.status == "partial"
    assert (companies.sent, companies.counts.rejected) == (6, 5)  # 11 accounts
    assert dict(companies.errors) == EXPECTED
    # Users sync whatever their accounts' fate: all 14, members of ACME and UMBRELLA included.
    assert (contacts.sent, contacts.counts.rejected) == (14, 0)
    assert set(dest.records["contacts"]) == {f"u{i:02d}" for i in range(1, 15)}
    assert set(dest.records["companies"]) == {
        "GLOBEX",
        "HOOLI",
        "INITECH",
        "STARK",
        "XYZ",
        "XYZ_Widget1",
    }
    # `syncer errors` reads these: one per rejected account, with the reason and the field.
    assert {f.key: f.reason for f in failures} == EXPECTED
    assert {f.field for f in failures} == {"parent_account_id"}
    monkeypatch.setattr(console, "width", 400)
    shown = runner.invoke(app, ["errors", "--config", str(tmp_path / "syncer.yaml")])
    assert shown.exit_code == 0, shown.output
    lines = [" ".join(line.split()) for line in shown.output.splitlines()]
    assert any("ACME-US" in line and EXPECTED["ACME-US"] in line for line in lines)
    assert any("UMBRELLA" in line and MISSING in line for line in lines)


def test_once_the_hierarchy_is_fixed_the_rejected_accounts_sync(
    store_url: str, memory_sync: Callable[..., Sync]
) -> None:
    _break_the_hierarchy(store_url)
    dest = MemoryStore()
    with memory_sync() as sync:
        sync.run("crm", connector=MemoryConnector(store=dest))
    engine = create_db_engine(store_url)
    with engine.begin() as conn:
        conn.execute(update(accounts).values(parent_account_id=None))
    engine.dispose()
    with memory_sync() as sync:
        report = sync.run("crm", connector=MemoryConnector(store=dest))
        failures = list(FailureLog(sync.state).iter_failures("crm"))
    assert report.status == "succeeded"
    assert set(EXPECTED) <= set(dest.records["companies"])
    assert failures == []
