"""Bad values the product's own jobs wrote into the store with plain SQL (so `syncer load` never
checked them): a stage the ladder does not know, a roll-up attribute that is not a number,
attributes that are not a JSON object, a timestamp that is not one.

Like an account the hierarchy rejects (tests/test_store_rejected_accounts.py), the record they
affect is rejected — not sent, reported with the table, key, column, value and the fix — and
everything else syncs; the run says `partial` and exits 1. Through the CLI, with `--json`."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from syncer.db import create_db_engine
from syncer.store.schema import accounts, memberships, users

Cli = Callable[..., tuple[int, str, str]]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def config(make_examples_config: Callable[[str], Path], tmp_path: Path) -> Path:
    """The examples store and the in-memory destination with the HubSpot mapping, less its
    associations: each CLI run starts a new in-memory destination, which knows no remote id of
    the run before, so the association changes of a second run would fail there."""
    text = (ROOT / "mappings" / "hubspot.yaml").read_text(encoding="utf-8")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "\n".join(line for line in text.splitlines() if "associations:" not in line),
        encoding="utf-8",
    )
    return make_examples_config(
        f"destinations:\n  crm:\n    connector: memory\n    mapping: {mapping}\n"
    )


def _sql(config: Path, *statements: Any) -> None:
    """Run ``statements`` against the config's store, as the product's own job would."""
    engine = create_db_engine(f"sqlite:///{config.parent / 'store.db'}")
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(statement)
    engine.dispose()


def _json(cli: Cli, *args: str, code: int) -> Any:
    status, out, err = cli(*args, "--json")
    assert status == code, (out, err)
    return json.loads(out)


def _objects(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["object"]: o for o in report["objects"]}


def _partial_run(cli: Cli, config: Path) -> dict[str, dict[str, Any]]:
    """``syncer run --json`` on a store with bad records: exit 1, status partial; its objects."""
    report = _json(cli, "run", "-c", str(config), "-d", "crm", code=1)
    assert report["status"] == "partial"
    return _objects(report)


def _sent_rejected(objects: dict[str, dict[str, Any]], name: str) -> tuple[int, int]:
    """Records of object ``name`` the run sent, and those syncer rejected."""
    return objects[name]["sent"], objects[name]["counts"]["rejected"]


def _errors(cli: Cli, config: Path) -> dict[str, dict[str, Any]]:
    return {e["key"]: e for e in _json(cli, "errors", "-c", str(config), code=0)["errors"]}


def test_an_unknown_membership_stage_rejects_that_user_and_account_and_the_rest_syncs(
    cli: Cli, config: Path
) -> None:
    c = str(config)
    m = memberships.c
    _sql(
        config,
        update(memberships)
        .where(m.user_id == "u04", m.account_id == "UMBRELLA")
        .values(stage="HOT"),
    )
    plan = _objects(_json(cli, "plan", "-c", c, "-d", "crm", "--samples", "50", code=0))
    assert plan["contacts"]["counts"]["rejected"] == 1
    assert plan["companies"]["counts"]["rejected"] == 1
    [sample] = [s for s in plan["contacts"]["samples"] if s["action"] == "rejected"]
    assert (sample["key"], sample["field"]) == ("u04", "stage")
    assert "'HOT' in memberships.stage" in sample["reason"]

    objects = _partial_run(cli, config)
    assert _sent_rejected(objects, "contacts") == (13, 1)
    assert _sent_rejected(objects, "companies") == (10, 1)
    errors = _errors(cli, config)
    assert set(errors) == {"u04", "UMBRELLA"}
    reason = errors["u04"]["reason"]
    # What, where and what to do: the user, the account, the value, the column and the fix.
    for part in ("user 'u04'", "account 'UMBRELLA'", "'HOT'", "memberships.stage", "alias"):
        assert part in reason, reason
    assert errors["u04"]["field"] == "stage"
    assert "memberships.stage" in errors["UMBRELLA"]["reason"]

    _sql(
        config,
        update(memberships)
        .where(m.user_id == "u04", m.account_id == "UMBRELLA")
        .values(stage="MQL"),
    )
    fixed = _json(cli, "run", "-c", c, "-d", "crm", code=0)
    assert fixed["status"] == "succeeded"
    assert _errors(cli, config) == {}


def test_an_unknown_lead_or_account_stage_rejects_that_record(cli: Cli, config: Path) -> None:
    _sql(
        config,
        update(users).where(users.c.user_id == "u07").values(lead_stage="warm"),
        update(accounts).where(accounts.c.account_id == "HOOLI").values(stage="VIP"),
    )
    objects = _partial_run(cli, config)
    assert objects["contacts"]["counts"]["rejected"] == 1
    assert objects["companies"]["counts"]["rejected"] == 1
    errors = _errors(cli, config)
    assert set(errors) == {"u07", "HOOLI"}
    assert "'warm' in users.lead_stage" in errors["u07"]["reason"]
    assert errors["u07"]["field"] == "lead_stage"
    assert "'VIP' in accounts.stage" in errors["HOOLI"]["reason"]
    assert errors["HOOLI"]["field"] == "stage"


def test_a_roll_up_value_that_is_not_a_number_rejects_the_account_and_its_ancestors(
    cli: Cli, config: Path
) -> None:
    c = str(config)
    attrs = {"status": "active", "contract_value": 8000, "licenses": "five"}
    _sql(
        config,
        update(accounts).where(accounts.c.account_id == "ACME-EU-RD").values(attributes=attrs),
    )
    plan = _objects(_json(cli, "plan", "-c", c, "-d", "crm", code=0))
    assert plan["companies"]["counts"]["rejected"] == 3

    objects = _partial_run(cli, config)
    # ACME-EU-RD holds it; ACME-EU and ACME would roll it up. ACME-US (a sibling) and the
    # other 7 accounts sync, and so do all 14 users, members of those accounts included.
    assert _sent_rejected(objects, "companies") == (8, 3)
    assert _sent_rejected(objects, "contacts") == (14, 0)
    errors = _errors(cli, config)
    assert set(errors) == {"ACME", "ACME-EU", "ACME-EU-RD"}
    own = errors["ACME-EU-RD"]["reason"]
    for part in ("accounts.attributes.licenses", "'ACME-EU-RD'", "'five'", "not a number"):
        assert part in own, own
    assert "JSON number" in own  # what to do
    assert "includes account 'ACME-EU-RD'" in errors["ACME"]["reason"]
    assert {e["field"] for e in errors.values()} == {"attributes.licenses"}

    _sql(
        config,
        update(accounts)
        .where(accounts.c.account_id == "ACME-EU-RD")
        .values(attributes={**attrs, "licenses": 5}),
    )
    fixed = _json(cli, "run", "-c", c, "-d", "crm", code=0)
    assert fixed["status"] == "succeeded"
    assert _objects(fixed)["companies"]["counts"]["rejected"] == 0
    account = _json(cli, "explain", "account", "ACME", "-c", c, code=0)
    assert account["rollups"]["licenses"] == 170  # the whole subtree, ACME-EU-RD's 5 included


def _raw(config: Path, statement: str) -> None:
    """Plain SQL text, bypassing SQLAlchemy's JSON type: what a job can write into SQLite."""
    with sqlite3.connect(config.parent / "store.db") as conn:
        conn.execute(statement)


def test_attributes_that_are_not_a_json_object_reject_that_record_not_the_run(
    cli: Cli, config: Path
) -> None:
    _raw(config, "UPDATE users SET attributes = '{bad' WHERE user_id = 'u03'")
    _raw(config, "UPDATE accounts SET attributes = '[1, 2]' WHERE account_id = 'XYZ_Widget1'")
    objects = _partial_run(cli, config)
    assert _sent_rejected(objects, "contacts") == (13, 1)
    # XYZ_Widget1, and XYZ whose roll-ups would leave it out; the other 9 accounts sync.
    assert _sent_rejected(objects, "companies") == (9, 2)
    errors = _errors(cli, config)
    assert set(errors) == {"u03", "XYZ_Widget1", "XYZ"}
    assert {e["field"] for e in errors.values()} == {"attributes"}
    assert "users.attributes of 'u03' is not a JSON object (invalid JSON" in errors["u03"]["reason"]
    assert "'{bad'" in errors["u03"]["reason"]
    assert "store a JSON object" in errors["u03"]["reason"]
    assert "accounts.attributes of 'XYZ_Widget1'" in errors["XYZ_Widget1"]["reason"]
    assert "include account 'XYZ_Widget1'" in errors["XYZ"]["reason"]


def test_a_record_set_aside_for_bad_store_data_syncs_once_the_data_is_fixed(
    cli: Cli, config: Path
) -> None:
    """A rejection repeated ``max_attempts`` times sets the record aside; fixing the store (a
    new payload) must bring it back without `syncer retry`, as the docs promise."""
    with config.open("a", encoding="utf-8") as out:
        out.write("policies:\n  max_attempts: 1\n")
    m = memberships.c
    where = (m.user_id == "u04", m.account_id == "UMBRELLA")
    _sql(config, update(memberships).where(*where).values(stage="HOT"))
    _json(cli, "run", "-c", str(config), "-d", "crm", code=1)
    assert {k: e["set_aside"] for k, e in _errors(cli, config).items()} == {
        "u04": True,
        "UMBRELLA": True,
    }
    _sql(config, update(memberships).where(*where).values(stage="MQL"))
    fixed = _objects(_json(cli, "run", "-c", str(config), "-d", "crm", code=0))
    assert fixed["contacts"]["counts"]["skipped"] == 0
    assert fixed["contacts"]["sent"] == 1  # u04, now that its row is right
    assert _errors(cli, config) == {}


def test_a_timestamp_that_is_not_one_rejects_that_record_not_the_run(
    cli: Cli, config: Path
) -> None:
    """Text (or a number) another job wrote into a timestamp column of SQLite: the user or
    account it belongs to is rejected — for a membership's, both — and the rest syncs."""
    c = str(config)
    _raw(config, "UPDATE users SET created_at = 'yesterday' WHERE user_id = 'u03'")
    _raw(
        config,
        "UPDATE memberships SET joined_at = 'soon' "
        "WHERE user_id = 'u04' AND account_id = 'UMBRELLA'",
    )
    _raw(config, "UPDATE accounts SET updated_at = 12 WHERE account_id = 'HOOLI'")
    plan = _objects(_json(cli, "plan", "-c", c, "-d", "crm", code=0))
    assert plan["contacts"]["counts"]["rejected"] == 2
    assert plan["companies"]["counts"]["rejected"] == 2

    objects = _partial_run(cli, config)
    assert _sent_rejected(objects, "contacts") == (12, 2)
    # UMBRELLA (its member's joined_at) and HOOLI alone: their parents' roll-ups are readable.
    assert _sent_rejected(objects, "companies") == (9, 2)
    errors = _errors(cli, config)
    assert set(errors) == {"u03", "u04", "UMBRELLA", "HOOLI"}
    fields = {k: e["field"] for k, e in errors.items()}
    assert fields == {
        "u03": "created_at",
        "u04": "joined_at",
        "UMBRELLA": "joined_at",
        "HOOLI": "updated_at",
    }
    # What, where and what to do: the table.column, the key, the value and the fix.
    assert (
        "users.created_at of user 'u03' is 'yesterday', not a timestamp"
        in (errors["u03"]["reason"])
    )
    assert "ISO 8601" in errors["u03"]["reason"]
    for key in ("u04", "UMBRELLA"):
        assert (
            "memberships.joined_at of user 'u04', account 'UMBRELLA' is 'soon'"
            in (errors[key]["reason"])
        )
    assert (
        "accounts.updated_at of account 'HOOLI' is 12, not a timestamp"
        in (errors["HOOLI"]["reason"])
    )
    # explain reads the same rows one record at a time: it shows the rejection, no crash.
    status, out, err = cli("explain", "user", "u04", "-c", c)
    assert status == 0, (out, err)
    assert "memberships.joined_at" in " ".join(out.split())

    _raw(config, "UPDATE users SET created_at = '2024-01-02 03:04:05' WHERE user_id = 'u03'")
    _raw(
        config,
        "UPDATE memberships SET joined_at = '2024-02-01T10:00:00+02:00' "
        "WHERE user_id = 'u04' AND account_id = 'UMBRELLA'",
    )
    _raw(config, "UPDATE accounts SET updated_at = NULL WHERE account_id = 'HOOLI'")
    fixed = _json(cli, "run", "-c", c, "-d", "crm", code=0)
    assert fixed["status"] == "succeeded"
    assert _errors(cli, config) == {}
