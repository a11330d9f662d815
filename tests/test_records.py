"""The model's record plumbing: fast frozen constructors and stored-timestamp conversion."""

from __future__ import annotations

import dataclasses
import inspect
import json
import pickle
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from syncer.db import as_utc
from syncer.frozen import builder, fast_init
from syncer.model import Account, Mark, Membership, ResolvedUser, User
from syncer.store.readers import json_value

FAST_RECORDS = [Account, User, Membership, Mark, ResolvedUser]


def _plain(cls: type) -> type:
    """The same fields as ``cls`` in a dataclass with the stock generated ``__init__``."""
    fields = [(f.name, f.type, f) for f in dataclasses.fields(cls)]
    copies: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for name, typ, f in fields:
        if f.default is not dataclasses.MISSING:
            copies.append((name, typ, field(default=f.default)))
        elif f.default_factory is not dataclasses.MISSING:
            copies.append((name, typ, field(default_factory=f.default_factory)))
        else:
            copies.append((name, typ))
    return dataclasses.make_dataclass(cls.__name__, copies, frozen=True, slots=True)


@pytest.mark.parametrize("cls", FAST_RECORDS, ids=lambda c: c.__name__)
def test_fast_init_keeps_the_dataclass_signature(cls: type) -> None:
    ours = inspect.signature(cls)
    stock = inspect.signature(_plain(cls))
    assert [(p.name, p.kind) for p in ours.parameters.values()] == [
        (p.name, p.kind) for p in stock.parameters.values()
    ]
    for mine, theirs in zip(ours.parameters.values(), stock.parameters.values(), strict=True):
        assert repr(mine.default) == repr(theirs.default)


def test_fast_init_sets_every_field_positionally_and_by_keyword() -> None:
    now = datetime(2024, 1, 2, tzinfo=UTC)
    a = Membership("u1", "A", "admin", "CUS", now, now)
    b = Membership(user_id="u1", account_id="A", role="admin", stage="CUS", joined_at=now,
                   updated_at=now)  # fmt: skip
    assert a == b
    assert (a.user_id, a.account_id, a.role, a.stage, a.joined_at, a.updated_at) == (
        "u1", "A", "admin", "CUS", now, now,
    )  # fmt: skip
    assert Membership("u1", "A") == Membership("u1", "A", None, None, None, None)


def test_fast_init_calls_default_factories_once_per_instance() -> None:
    one, two = User("u1"), User("u2")
    assert one.attributes == {}
    assert two.attributes == {}
    assert one.attributes is not two.attributes
    given = {"plan": "pro"}
    assert User("u3", attributes=given).attributes is given


def test_fast_init_records_stay_frozen_hashable_and_picklable() -> None:
    mark = Mark("membership", "u1", "A", "CUS")
    with pytest.raises(dataclasses.FrozenInstanceError):
        mark.stage = "PRO"  # type: ignore[misc]
    assert hash(mark) == hash(Mark("membership", "u1", "A", "CUS"))
    assert pickle.loads(pickle.dumps(mark)) == mark


def test_fast_init_errors_like_the_stock_init() -> None:
    with pytest.raises(TypeError, match="account_id"):
        Membership("u1")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword"):
        Membership("u1", "A", colour="red")  # type: ignore[call-arg]


def test_fast_init_refuses_classes_whose_semantics_it_cannot_keep() -> None:
    @dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclass(frozen=True, slots=True)
    class PostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclass(frozen=True, slots=True)
    class Derived:
        a: int
        b: Any = field(init=False, default=None)

    @dataclass(frozen=True, slots=True)
    class Base:
        a: int

    @dataclass(frozen=True, slots=True)
    class Child(Base):  # its layout is Base's plus its own slots: no twin to build it in
        b: int = 0

    for cls in (NoSlots, PostInit, Derived, Child):
        with pytest.raises(TypeError, match=cls.__name__):
            fast_init(cls)


@pytest.mark.parametrize("cls", FAST_RECORDS, ids=lambda c: c.__name__)
def test_fast_init_records_are_of_their_own_class_and_frozen_once_built(cls: type) -> None:
    record = cls(*["x"] * _required(cls))
    assert type(record) is cls
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(record, dataclasses.fields(cls)[0].name, "y")


@pytest.mark.parametrize("cls", FAST_RECORDS, ids=lambda c: c.__name__)
def test_a_builder_builds_what_the_class_builds(cls: type) -> None:
    build = builder(cls)
    values = [f"v{i}" for i in range(_required(cls))]
    record = build(*values)
    assert type(record) is cls
    assert record == cls(*values)
    assert repr(record) == repr(cls(*values))
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(record, dataclasses.fields(cls)[0].name, "y")
    last = dataclasses.fields(cls)[-1].name
    assert build(*values, **{last: "z"}) == cls(*values, **{last: "z"})


def test_a_builder_calls_default_factories_once_per_instance() -> None:
    build = builder(User)
    one, two = build("u1"), build("u2")
    assert one.attributes == {}
    assert one.attributes is not two.attributes


def test_fast_init_builds_a_subclass_instance_as_that_subclass() -> None:
    class Slotted(Mark):
        __slots__ = ()

    class WithDict(Mark):
        pass

    for sub in (Slotted, WithDict):
        mark = sub("membership", "u1", "A", "CUS")
        assert type(mark) is sub
        assert (mark.subject, mark.user_id, mark.account_id, mark.stage, mark.churned) == (
            "membership", "u1", "A", "CUS", False,
        )  # fmt: skip
        assert mark == sub("membership", "u1", "A", "CUS")


def _required(cls: type) -> int:
    fields = dataclasses.fields(cls)
    return sum(
        f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        for f in fields
    )


# --- stored timestamps --------------------------------------------------------------------------


def test_as_utc_parses_sqlite_text_as_utc() -> None:
    got = as_utc("2024-01-31 12:30:00.000123")
    assert got == datetime(2024, 1, 31, 12, 30, 0, 123, tzinfo=UTC)
    assert got.tzinfo is UTC


def test_as_utc_converts_text_that_carries_an_offset() -> None:
    got = as_utc("2024-01-31T14:30:00+02:00")
    assert got == datetime(2024, 1, 31, 12, 30, tzinfo=UTC)
    assert got.utcoffset() == timedelta(0)


def test_as_utc_treats_naive_datetimes_as_utc_and_converts_aware_ones() -> None:
    assert as_utc(datetime(2024, 1, 31, 12, 30)) == datetime(2024, 1, 31, 12, 30, tzinfo=UTC)
    cet = timezone(timedelta(hours=1))
    got = as_utc(datetime(2024, 1, 31, 13, 30, tzinfo=cet))
    assert got == datetime(2024, 1, 31, 12, 30, tzinfo=UTC)
    assert got.tzinfo is UTC
    assert as_utc(None) is None


def test_as_utc_refuses_text_that_is_not_a_timestamp() -> None:
    with pytest.raises(ValueError, match="next tuesday"):
        as_utc("next tuesday")


@pytest.mark.parametrize(
    "text",
    ['{"title": "Engineer", "n": 3, "tags": ["a", "b"], "x": null}', "{}", ' {"a": 1} ', "[1]"],
)
def test_stored_json_reads_as_json_loads_reads_it(text: str) -> None:
    assert json_value(text) == json.loads(text)


@pytest.mark.parametrize("text", ['{"a": 1} trailing', '{"a": ', "", "{'a': 1}"])
def test_stored_json_that_is_not_json_raises_as_json_loads_does(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        json_value(text)
