"""The canonical store and its loaders, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from syncer.cli import app
from syncer.errors import BadInputError
from syncer.store.database import init_store, open_store
from syncer.store.loaders import load_paths
from syncer.store.readers import (
    iter_accounts,
    iter_all_accounts,
    iter_users,
    read_account,
    read_user,
    store_stats,
)
from syncer.store.schema import accounts, memberships, users

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _count(url: str, table: object) -> int:
    engine = open_store(url)
    with engine.connect() as conn:
        n = int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]
    engine.dispose()
    return n


def test_init_is_idempotent(db_url: str) -> None:
    init_store(db_url).dispose()
    engine = init_store(db_url)
    assert store_stats(engine)["users"] == 0
    engine.dispose()


def test_loading_the_examples_twice_changes_nothing(db_url: str) -> None:
    engine = init_store(db_url)
    first = load_paths(engine, [ROOT / "examples"])
    assert first.total("inserted") > 40
    second = load_paths(engine, [ROOT / "examples"])
    assert second.total("inserted") == 0
    assert second.total("updated") == 0
    # Every record is there already (a Segment group call holds an account and a membership).
    assert second.total("unchanged") >= second.total("rows") - second.total("ignored")
    stats = store_stats(engine)
    assert (stats["accounts"], stats["users"], stats["memberships"]) == (11, 14, 23)
    engine.dispose()


def test_segment_identify_and_group_map_traits(db_url: str) -> None:
    engine = init_store(db_url)
    load_paths(engine, [ROOT / "examples"])
    radia = read_user(engine, "u14")
    assert radia is not None
    assert (radia.user.email, radia.user.first_name, radia.user.last_name) == (
        "radia@stark.example",
        "Radia",
        "Perlman",
    )
    assert radia.user.attributes.get("title") == "Chief Architect"  # a non-standard trait
    assert [m.account_id for m in radia.memberships] == ["STARK"]  # groupId ties user to account
    frances = read_user(engine, "u10")
    assert frances is not None
    assert {m.account_id for m in frances.memberships} == {
        "XYZ",
        "XYZ_Widget1",
    }  # traits.account_id
    engine.dispose()


def test_a_file_with_bad_rows_loads_nothing_and_names_file_line_field(
    db_url: str, tmp_path: Path
) -> None:
    engine = init_store(db_url)
    path = _write(
        tmp_path / "users.csv",
        "user_id,email,lead_stage,created_at\n"
        "u1,a@x.io,MQL,2024-01-01\n"
        "u2,b@x.io,MQL,not-a-date\n"
        "u3,c@x.io,MQL,2024-01-03\n",
    )
    with pytest.raises(BadInputError) as caught:
        load_paths(engine, [path])
    text = str(caught.value)
    assert "users.csv" in text
    assert "3" in text  # the line
    assert "created_at" in text
    assert store_stats(engine)["users"] == 0
    report = load_paths(engine, [path], skip_bad=True)
    assert report.total("inserted") == 2
    assert len(report.skipped) == 1
    assert report.skipped[0].line == 3
    engine.dispose()


def test_duplicate_keys_in_one_file_are_an_error(db_url: str, tmp_path: Path) -> None:
    engine = init_store(db_url)
    path = _write(tmp_path / "accounts.csv", "account_id,name\nA1,One\nA1,Uno\n")
    with pytest.raises(BadInputError, match="A1"):
        load_paths(engine, [path])
    engine.dispose()


def test_a_membership_pointing_at_an_unknown_account_is_an_error(
    db_url: str, tmp_path: Path
) -> None:
    engine = init_store(db_url)
    load_paths(engine, [_write(tmp_path / "users.csv", "user_id,email\nu1,a@x.io\n")])
    bad = _write(tmp_path / "memberships.csv", "user_id,account_id,stage\nu1,NOPE,CUS\n")
    with pytest.raises(BadInputError, match="NOPE"):
        load_paths(engine, [bad])
    assert store_stats(engine)["memberships"] == 0
    engine.dispose()


def test_missing_columns_and_non_utf8_input_are_clear_errors(db_url: str, tmp_path: Path) -> None:
    engine = init_store(db_url)
    with pytest.raises(BadInputError, match="user_id"):
        load_paths(engine, [_write(tmp_path / "users.csv", "email\na@x.io\n")])
    latin = tmp_path / "accounts.csv"
    latin.write_bytes("account_id,name\nA1,Caf\xe9\n".encode("latin-1"))
    with pytest.raises(BadInputError, match="UTF-8"):
        load_paths(engine, [latin])
    engine.dispose()


def test_readers_stream_in_key_order_across_chunk_boundaries(db_url: str, tmp_path: Path) -> None:
    engine = init_store(db_url)
    # Keys whose byte order differs from a case-insensitive or locale collation.
    ids = ["a", "B", "b", "Z", "_x", "é", "10", "9"]
    _write(
        tmp_path / "users.csv",
        "user_id,email\n" + "".join(f"{u},{i}@x.io\n" for i, u in enumerate(ids)),
    )
    _write(tmp_path / "accounts.csv", "account_id,name\nACC1,One\nACC2,Two\nACC3,Three\n")
    rows = "".join(f"{u},ACC{k},member,CUS\n" for u in ids for k in (1, 2, 3))
    _write(tmp_path / "memberships.csv", "user_id,account_id,role,stage\n" + rows)
    load_paths(engine, [tmp_path])
    # chunk_size 3: users' memberships straddle chunk boundaries.
    streamed = list(iter_users(engine, chunk_size=3))
    assert [u.user.user_id for u in streamed] == sorted(ids)
    assert all(len(u.memberships) == 3 for u in streamed)
    assert all([m.account_id for m in u.memberships] == ["ACC1", "ACC2", "ACC3"] for u in streamed)
    accts = list(iter_accounts(engine, chunk_size=2))
    assert [a.account.account_id for a in accts] == ["ACC1", "ACC2", "ACC3"]
    # chunk_size 2: each account's 8 members arrive over several fetches of the stream.
    assert all([m.membership.user_id for m in a.members] == sorted(ids) for a in accts)
    engine.dispose()


def test_json_attributes_compare_equal_on_reload(db_url: str, tmp_path: Path) -> None:
    engine = init_store(db_url)
    path = _write(
        tmp_path / "accounts.jsonl",
        json.dumps({"account_id": "A1", "name": "One", "licenses": 5, "tier": {"a": [1, 2]}})
        + "\n",
    )
    assert load_paths(engine, [path]).total("inserted") == 1
    again = load_paths(engine, [path])
    assert (again.total("updated"), again.total("unchanged")) == (0, 1)
    engine.dispose()


def test_cli_init_load_stats_and_a_one_line_error(tmp_path: Path) -> None:
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert runner.invoke(app, ["init", "--store", url]).exit_code == 0
    result = runner.invoke(app, ["load", str(ROOT / "examples"), "--store", url])
    assert result.exit_code == 0, result.output
    stats = runner.invoke(app, ["store", "stats", "--store", url])
    assert "memberships" in stats.output
    assert _count(url, memberships) == 23
    assert _count(url, accounts) == 11
    assert _count(url, users) == 14
    bad = _write(tmp_path / "accounts.csv", "account_id,name\nA1,One\nA1,Uno\n")
    result = runner.invoke(app, ["load", str(bad), "--store", url])
    assert result.exit_code != 0
    assert isinstance(result.exception, BadInputError)


def test_the_user_stream_reads_every_field_as_the_one_user_reader(
    db_url: str, tmp_path: Path
) -> None:
    # iter_users converts driver values on a fast path of its own; read_user goes through the
    # general row converters. Both must give the same records, field for field.
    engine = init_store(db_url)
    _write(
        tmp_path / "users.jsonl",
        "".join(
            json.dumps(row) + "\n"
            for row in [
                {"user_id": "u1", "email": "a@x.io", "lead_stage": "MQL", "title": "CTO"},
                {"user_id": "u2", "email": "b@x.io", "plan": {"seats": [1, 2]}},
                {"user_id": "u3"},
            ]
        ),
    )
    _write(tmp_path / "accounts.csv", "account_id,name\nA1,One\nA2,Two\n")
    _write(
        tmp_path / "memberships.csv",
        "user_id,account_id,role,stage,joined_at\n"
        "u1,A1,admin,CUS,2024-01-31T14:30:00+02:00\n"
        "u1,A2,,MQL,\n"
        "u3,A2,member,churned,2023-05-01\n",
    )
    load_paths(engine, [tmp_path])
    streamed = list(iter_users(engine, chunk_size=2))
    assert [u.user.user_id for u in streamed] == ["u1", "u2", "u3"]
    assert streamed == [read_user(engine, u.user.user_id) for u in streamed]
    u1 = streamed[0]
    assert u1.user.attributes == {"title": "CTO"}
    assert u1.memberships[0].joined_at is not None
    assert u1.memberships[0].joined_at.utcoffset() is not None
    assert streamed[1].memberships == ()
    engine.dispose()


def test_the_account_streams_read_every_field_as_the_one_account_reader(
    db_url: str, tmp_path: Path
) -> None:
    # iter_all_accounts reads raw driver values (no result processors) and converts them itself.
    engine = init_store(db_url)
    _write(
        tmp_path / "accounts.jsonl",
        json.dumps(
            {
                "account_id": "P",
                "name": "Parent",
                "licenses": 5,
                "tier": {"a": [1]},
                "created_at": "2024-01-31T14:30:00+02:00",
            }
        )
        + "\n"
        + json.dumps({"account_id": "C", "name": "Child", "parent_account_id": "P"})
        + "\n",
    )
    load_paths(engine, [tmp_path])
    streamed = list(iter_all_accounts(engine))
    assert [a.account_id for a in streamed] == ["C", "P"]
    one_by_one = [read_account(engine, a.account_id) for a in streamed]
    assert streamed == [found.account for found in one_by_one if found is not None]
    assert streamed[1].attributes == {"licenses": 5, "tier": {"a": [1]}}
    assert streamed[1].created_at is not None
    assert streamed[1].created_at.utcoffset() is not None
    engine.dispose()
