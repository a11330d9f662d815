"""Segment-spec identify and group calls: standard traits to columns, the rest to attributes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from syncer.errors import BadInputError
from syncer.store.database import init_store
from syncer.store.loaders import load_paths
from syncer.store.readers import read_account, read_user


@pytest.fixture
def store(db_url: str) -> Iterator[Engine]:
    engine = init_store(db_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _events(tmp_path: Path, *calls: dict[str, Any]) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in calls), encoding="utf-8")
    return path


def _at(day: int) -> str:
    return f"2024-04-{day:02d}T08:00:00Z"


def _utc(day: int) -> datetime:
    return datetime(2024, 4, day, 8, tzinfo=UTC)


def test_identify_maps_standard_traits_to_user_columns(store: Engine, tmp_path: Path) -> None:
    path = _events(
        tmp_path,
        {
            "type": "identify",
            "userId": "u1",
            "timestamp": _at(3),
            "traits": {
                "email": "ada@acme.example",
                "firstName": "Ada",
                "lastName": "Lovelace",
                "createdAt": "2021-03-05T10:00:00+02:00",
                "name": "Ada Lovelace",
                "plan": "pro",
                "title": "CTO",
                "id": "u1",
                "stage": "MQL",
            },
        },
    )
    report = load_paths(store, [path])
    assert report.tables["users"]["inserted"] == 1
    found = read_user(store, "u1")
    assert found is not None
    user = found.user
    assert (user.email, user.first_name, user.last_name) == ("ada@acme.example", "Ada", "Lovelace")
    assert user.created_at == datetime(2021, 3, 5, 8, tzinfo=UTC)
    assert user.updated_at == _utc(3)  # the call's timestamp
    assert user.lead_stage == "MQL"  # stage without an account is the user's own
    # No user column for them: kept as attributes (name is Segment's full name); id repeats userId.
    assert dict(user.attributes) == {"name": "Ada Lovelace", "plan": "pro", "title": "CTO"}
    assert found.memberships == ()


def test_group_maps_standard_traits_to_account_columns(store: Engine, tmp_path: Path) -> None:
    path = _events(
        tmp_path,
        {
            "type": "group",
            "groupId": "STARK",
            "anonymousId": "visitor-7",  # a call needs one of userId / anonymousId
            "timestamp": _at(1),
            "traits": {
                "name": "Stark Industries",
                "website": "https://www.stark.example/about",
                "createdAt": "2024-03-01",
                "parentAccountId": "STARK-HOLDING",
                "stage": "CUS",
                "plan": "enterprise",
                "industry": "Manufacturing",
                "employees": 5000,
            },
        },
    )
    load_paths(store, [path])
    found = read_account(store, "STARK")
    assert found is not None
    account = found.account
    assert (account.name, account.domain, account.parent_account_id, account.stage) == (
        "Stark Industries",
        "stark.example",
        "STARK-HOLDING",
        "CUS",
    )
    assert account.created_at == datetime(2024, 3, 1, tzinfo=UTC)
    assert account.updated_at == _utc(1)
    assert dict(account.attributes) == {
        "plan": "enterprise",
        "industry": "Manufacturing",
        "employees": 5000,
    }
    assert found.members == ()  # no userId: nobody tied to it


def test_column_traits_are_taken_in_either_spelling(store: Engine, tmp_path: Path) -> None:
    # The spellings the tests above do not send: snake_case ones, and camelCase leadStage.
    path = _events(
        tmp_path,
        {
            "type": "identify",
            "userId": "u2",
            "traits": {
                "first_name": "Grace",
                "last_name": "Hopper",
                "created_at": "2022-01-02",
                "leadStage": "MAL",
            },
        },
        {
            "type": "group",
            "groupId": "NAVY",
            "userId": "u2",
            "traits": {
                "domain": "navy.example",
                "parent_account_id": "DOD",
                "created_at": "2020-06-01",
            },
        },
    )
    load_paths(store, [path])
    user = read_user(store, "u2")
    account = read_account(store, "NAVY")
    assert user is not None
    assert account is not None
    u, a = user.user, account.account
    assert (u.first_name, u.last_name, u.lead_stage) == ("Grace", "Hopper", "MAL")
    assert u.created_at == datetime(2022, 1, 2, tzinfo=UTC)
    assert (a.domain, a.parent_account_id) == ("navy.example", "DOD")
    assert a.created_at == datetime(2020, 6, 1, tzinfo=UTC)
    assert dict(u.attributes) == {}
    assert dict(a.attributes) == {}


def test_group_id_and_traits_account_id_tie_a_user_to_an_account(
    store: Engine, tmp_path: Path
) -> None:
    path = _events(
        tmp_path,
        {
            "type": "group",
            "userId": "u1",
            "groupId": "ACME",
            "timestamp": _at(5),
            "traits": {"member_role": "admin", "member_stage": "CUS"},
        },
        {"type": "group", "userId": "u1", "groupId": "ACME", "timestamp": _at(2)},
        {
            "type": "identify",
            "userId": "u2",
            "timestamp": _at(6),
            "traits": {"account_id": "XYZ", "role": "member", "stage": "MAL"},
        },
        {"type": "track", "userId": "u1", "event": "Report Exported"},
        {"type": "identify", "anonymousId": "anon-1", "traits": {"email": "who@x.io"}},
    )
    report = load_paths(store, [path])
    assert report.total("ignored") == 2  # the track call and the anonymous identify
    u1 = read_user(store, "u1")
    assert u1 is not None
    (acme,) = u1.memberships
    assert (acme.account_id, acme.role, acme.stage) == ("ACME", "admin", "CUS")
    assert acme.joined_at == _utc(2)  # the earliest call that tied them
    assert acme.updated_at == _utc(2)  # calls apply in file order: the later line's timestamp
    u2 = read_user(store, "u2")
    assert u2 is not None
    (xyz,) = u2.memberships
    assert (xyz.account_id, xyz.role, xyz.stage, xyz.joined_at) == ("XYZ", "member", "MAL", _utc(6))
    assert u2.user.lead_stage is None  # with an account, stage is the membership's
    assert read_account(store, "XYZ") is not None  # a bare account, filled by later group calls
    again = load_paths(store, [path])
    assert again.total("inserted") == again.total("updated") == 0


def test_bad_calls_name_line_and_trait(store: Engine, tmp_path: Path) -> None:
    path = _events(
        tmp_path,
        {"type": "identify", "userId": "u1", "traits": {"email": "a@x.io"}},
        {"type": "alias", "userId": "u1", "previousId": "x"},
        {"type": "identify", "userId": "u2", "traits": {"createdAt": "last week"}},
        {"type": "group", "userId": "u3", "traits": {"name": "No id"}},
        {"type": "group", "groupId": "G1", "userId": "u5", "traits": {"account_id": "G2"}},
        {"type": "screenview", "userId": "u4"},
        {"type": "identify", "traits": {"email": "nobody@x.io"}},
        {"type": "group", "groupId": "G3", "traits": {"name": "Nobody's"}},
    )
    with pytest.raises(BadInputError) as caught:
        load_paths(store, [path])
    assert [(p.line, p.field, p.key) for p in caught.value.problems] == [
        (3, "traits.createdAt", "u2"),
        (4, "groupId", None),
        (5, "traits.account_id", "G1"),
        (6, "type", None),
        (7, "userId", None),  # neither userId nor anonymousId: not skipped without a word
        (8, "userId", "G3"),
    ]
    assert all(p.file == str(path) for p in caught.value.problems)
    assert read_user(store, "u1") is None  # the good call did not load either
