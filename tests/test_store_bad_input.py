"""Every kind of bad input names file, line and field, and leaves the store exactly as it was.

Each case loads a good file (which would change the store) together with a bad one into a store
that already holds examples/; nothing of either may land. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from syncer.errors import BadInputError, Problem
from syncer.store.database import init_store
from syncer.store.loaders import load_paths
from syncer.store.schema import metadata

ROOT = Path(__file__).resolve().parents[1]

# Would update u01 and add u99: proof that a good file next to a bad one is not loaded either.
GOOD_USERS = "user_id,email,first_name\nu01,ada@new.example,Ada\nu99,new@x.io,New\n"


@dataclass(frozen=True)
class Case:
    """A bad file and the one problem it must be reported with."""

    name: str
    file: str
    content: bytes
    line: int
    field: str
    key: str | None
    says: str
    skippable: bool  # a bad row (--skip-bad loads the rest), not a bad file


CASES = [
    Case(
        "bad value",
        "accounts_bad.csv",
        b"account_id,name,created_at\nN1,New One,2024-01-01\nN2,New Two,not-a-date\n",
        3,
        "created_at",
        "N2",
        "'not-a-date' is not an ISO 8601 date",
        True,
    ),
    Case(
        "non-UTF-8 CSV",
        "accounts_latin1.csv",
        "account_id,name\nN1,New One\nN2,Café\n".encode("latin-1"),
        3,
        "name",
        None,
        "not valid UTF-8: byte 0xe9",
        False,
    ),
    Case(
        "non-UTF-8 JSON Lines",
        "events_latin1.jsonl",
        '{"type": "identify", "userId": "u98", "traits": {"firstName": "José"}}\n'.encode(
            "latin-1"
        ),
        1,
        "traits.firstName",
        None,
        "not valid UTF-8: byte 0xe9",
        False,
    ),
    Case(
        "missing column",
        "memberships_nokey.csv",
        b"user_id,stage\nu01,CUS\n",
        1,
        "account_id",
        None,
        "missing required column: account_id",
        False,
    ),
    Case(
        "duplicate key",
        "accounts_dup.csv",
        b"account_id,name\nN1,New One\nN2,New Two\nN1,New Uno\n",
        4,
        "account_id",
        "N1",
        "duplicate key 'N1': also on line 2",
        True,
    ),
    Case(
        "unknown stage",
        "accounts_stage.csv",
        b"account_id,name,stage\nN1,New One,CUS\nN2,New Two,GODMODE\n",
        3,
        "stage",
        "N2",
        "unknown stage 'GODMODE'",
        True,
    ),
    Case(
        "unknown stage in a Segment call",
        "events_stage.jsonl",
        b'{"type": "identify", "userId": "n1", "traits": {"account_id": "ACME", '
        b'"stage": "GODMODE"}}\n',
        1,
        "stage",
        "n1/ACME",
        "unknown stage 'GODMODE'",
        True,
    ),
    Case(
        "invalid email",
        "users_email.csv",
        b"user_id,email\nn1,ok@x.io\nn2,not-an-email\n",
        3,
        "email",
        "n2",
        "invalid email 'not-an-email'",
        True,
    ),
    Case(
        "NUL in a value",
        "accounts_nul.csv",
        b"account_id,name\nN1,New One\nN2,New\x00Two\n",
        3,
        "name",
        "N2",
        "holds U+0000 (NUL) at character 4",
        True,
    ),
    Case(
        "control character in a nested attribute",
        "accounts_ctl.jsonl",
        b'{"account_id": "N1", "notes": {"text": "a\\u001bb"}}\n',
        1,
        "notes",
        "N1",
        "holds U+001B (a control character)",
        True,
    ),
    Case(
        "NaN in a roll-up attribute",
        "accounts_nan.csv",
        b"account_id,licenses\nN1,5\nN2,NaN\n",
        3,
        "licenses",
        "N2",
        "'NaN' is not a number; 'licenses' rolls up (sum)",
        True,
    ),
    Case(
        "inf in a roll-up attribute",
        "accounts_inf.csv",
        b"account_id,contract_value\nN1,inf\n",
        2,
        "contract_value",
        "N1",
        "'inf' is not a number",
        True,
    ),
    Case(
        "text in a roll-up attribute",
        "accounts_text.jsonl",
        b'{"account_id": "N1", "licenses": "12 seats"}\n',
        1,
        "licenses",
        "N1",
        "'12 seats' is not a number",
        True,
    ),
    Case(
        "Segment identify without any id",
        "events_noid.jsonl",
        b'{"type": "identify", "traits": {"email": "who@x.io"}}\n',
        1,
        "userId",
        None,
        "an identify call needs a userId (or an anonymousId",
        True,
    ),
    Case(
        "Segment group without groupId",
        "events_nogroup.jsonl",
        b'{"type": "group", "userId": "u01", "traits": {"name": "Who"}}\n',
        1,
        "groupId",
        None,
        "a group call needs the account id in groupId",
        True,
    ),
    Case(
        "membership to an unknown account",
        "memberships_ghost.csv",
        b"user_id,account_id,stage\nu99,ACME,MQL\nu01,GHOST,CUS\n",
        3,
        "account_id",
        "u01/GHOST",
        "unknown account 'GHOST': not in the store and not in this load",
        True,
    ),
]


def _snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {
            name: sorted(tuple(map(repr, row)) for row in conn.execute(select(table)))
            for name, table in metadata.tables.items()
        }


@pytest.fixture
def loaded(db_url: str) -> Iterator[Engine]:
    engine = init_store(db_url)
    try:
        load_paths(engine, [ROOT / "examples"])
        yield engine
    finally:
        engine.dispose()


def _files(tmp_path: Path, case: Case) -> list[Path]:
    good = tmp_path / "users_good.csv"
    good.write_text(GOOD_USERS, encoding="utf-8")
    bad = tmp_path / case.file
    bad.write_bytes(case.content)
    return [good, bad]


def _located(problem: Problem) -> tuple[str | None, int | None, str | None, str | None]:
    return (
        Path(problem.file).name if problem.file else None,
        problem.line,
        problem.field,
        problem.key,
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input_names_file_line_and_field_and_loads_nothing(
    loaded: Engine, tmp_path: Path, case: Case
) -> None:
    before = _snapshot(loaded)
    files = _files(tmp_path, case)
    with pytest.raises(BadInputError) as caught:
        load_paths(loaded, files)
    (problem,) = caught.value.problems
    assert _located(problem) == (case.file, case.line, case.field, case.key)
    assert case.says in problem.message
    assert problem.hint or "e.g." in problem.message  # what to do about it
    text = str(caught.value)
    assert f"{case.file}:{case.line}" in text
    assert f"field {case.field!r}" in text
    assert "nothing was loaded" in text
    assert _snapshot(loaded) == before


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_skip_bad_loads_the_good_rows_of_a_bad_row_but_nothing_of_a_bad_file(
    loaded: Engine, tmp_path: Path, case: Case
) -> None:
    before = _snapshot(loaded)
    files = _files(tmp_path, case)
    if not case.skippable:
        with pytest.raises(BadInputError, match=case.says):
            load_paths(loaded, files, skip_bad=True)
        assert _snapshot(loaded) == before
        return
    report = load_paths(loaded, files, skip_bad=True)
    assert [_located(p) for p in report.skipped] == [(case.file, case.line, case.field, case.key)]
    by_file = {Path(f.path).name: f for f in report.files}
    assert by_file[case.file].skipped == 1
    assert by_file["users_good.csv"].inserted == 1  # u99
    assert by_file["users_good.csv"].updated == 1  # u01's email
    after = _snapshot(loaded)
    assert after != before
    # The bad line itself left no trace.
    again = load_paths(loaded, files, skip_bad=True)
    assert again.total("inserted") == again.total("updated") == 0


def test_every_bad_row_of_every_file_is_listed_at_once(loaded: Engine, tmp_path: Path) -> None:
    (tmp_path / "users_x.csv").write_text(
        "user_id,email,created_at\nx1,a@x.io,yesterday\n,b@x.io,\n", encoding="utf-8"
    )
    (tmp_path / "memberships_x.csv").write_text(
        "user_id,account_id,stage\nx1,ACME,CUS\nu01,NOPE,CUS\n", encoding="utf-8"
    )
    before = _snapshot(loaded)
    with pytest.raises(BadInputError) as caught:
        load_paths(loaded, [tmp_path])
    located = [_located(p) for p in caught.value.problems]
    assert located == [
        ("users_x.csv", 2, "created_at", "x1"),
        ("users_x.csv", 3, "user_id", None),
        ("memberships_x.csv", 2, "user_id", "x1/ACME"),  # x1's own row was rejected
        ("memberships_x.csv", 3, "account_id", "u01/NOPE"),
    ]
    assert "users_x.csv:2" in (caught.value.problems[2].hint or "")
    assert "4 bad rows in 2 files" in str(caught.value)
    assert _snapshot(loaded) == before
