"""The per-field writers (fused token fields included) write what the reference path gives.

The reference is :func:`syncer.fields.format_field` on the value the compiled expression (the
``tokens``/``emails`` filter building Token objects) evaluates to. A writer must write the same
payload entries, or fail wherever the reference fails: ``ObjectMapping.format`` then reruns the
record through the reference, which says why (``test_format_equals_the_reference_path``).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncer.connectors.registry import get_connector
from syncer.fields import FieldSpec, FieldType, format_field
from syncer.mapping import compile_value, context_for, load_mapping, make_environment
from syncer.mapping.context import Attributes
from syncer.mapping.objects import ObjectMapping
from syncer.mapping.writers import field_writer
from syncer.model import ResolvedMembership, ResolvedUser, StageLadder, User
from syncer.tokens import (
    BLANK_RUN,
    DELIMITER,
    PART_MARK,
    SEPARATOR,
    Token,
    format_tokens,
    token_texts,
)

LADDER = StageLadder()
ENV = make_environment(LADDER)
STAGES = [*LADDER.names, LADDER.churned, "cus", " PRO ", "nope"]

# Values a record may hold, good and bad: a token part must be text or an integer (None is an
# empty part); floats, bools, lists and dicts refuse the record.
values: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.text(max_size=8),
    st.sampled_from(["a", "A", "acme", "ann@acme.io", "x y", "é", "34"]),
    st.integers(-5, 40),
    st.booleans(),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=1),
)
stages: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(STAGES), st.none(), st.integers(0, 3), st.just(1.5)
)


@st.composite
def items(draw: st.DrawFn) -> Any:
    """An object with attributes (or a dict: Jinja's item lookup) of good and bad values."""
    fields = {
        "a": draw(values),
        "b": draw(values),
        "stage": draw(stages),
        "email": draw(st.one_of(values, st.emails(), st.just(" Ann@Acme.IO "))),
    }
    if draw(st.booleans()):
        del fields[draw(st.sampled_from(sorted(fields)))]
    return fields if draw(st.integers(0, 5)) == 0 else SimpleNamespace(**fields)


EXPRESSIONS = [
    "xs | tokens",
    "xs | tokens('a')",
    "xs | tokens('stage')",  # one name that is also where the priority comes from
    "xs | tokens('a', 'stage')",
    "xs | tokens('b', 'a')",
    "xs | tokens('a.real')",  # a dotted name: Jinja's lookup, not attrgetter
    "xs | emails",
]


def _outcome(run: Any) -> tuple[str, Any]:
    try:
        return "value", run()
    except Exception:
        return "fails", None


@pytest.mark.parametrize("expression", EXPRESSIONS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    xs=st.one_of(st.lists(items(), max_size=5), st.lists(values, max_size=5)),
    case_insensitive=st.booleans(),
    max_length=st.none() | st.integers(3, 40),
    companions=st.booleans(),
)
def test_a_fused_token_field_writes_what_the_filter_and_formatter_give(
    expression: str, xs: list[Any], case_insensitive: bool, max_length: int | None, companions: bool
) -> None:
    spec = FieldSpec(
        "f",
        FieldType.TOKENS,
        max_length=max_length,
        case_insensitive=case_insensitive,
        companions=companions,
    )
    evaluate = compile_value(expression, ENV)
    write = field_writer(spec, expression, evaluate, ENV)
    ctx = {"xs": xs}

    def written() -> dict[str, str | None]:
        payload: dict[str, str | None] = {}
        write(ctx, payload)
        return payload

    assert _outcome(written) == _outcome(lambda: format_field(spec, evaluate(ctx)))


def test_token_fields_of_the_shipped_shapes_are_fused() -> None:
    spec = FieldSpec("f", FieldType.TOKENS)
    for expression in EXPRESSIONS:
        # A fused writer never calls the compiled evaluator (which builds Token objects).
        write = field_writer(spec, expression, _never, ENV)
        payload: dict[str, str | None] = {}
        item = SimpleNamespace(a="acme", b=1, stage="CUS", email="a@b.io")
        xs = {"xs | tokens": ["acme"], "xs | tokens('a.real')": [{"a.real": "acme"}]}
        write({"xs": xs.get(expression, [item])}, payload)
        assert payload["f"] is not None


def _never(ctx: Any) -> Any:
    raise AssertionError("the fused writer evaluated the filter")


def test_other_token_values_take_the_reference_formatter() -> None:
    spec = FieldSpec("f", FieldType.TOKENS)
    expression = "xs | tokens('a') | list"
    evaluate = compile_value(expression, ENV)
    write = field_writer(spec, expression, evaluate, ENV)
    payload: dict[str, str | None] = {}
    write({"xs": [SimpleNamespace(a="b"), SimpleNamespace(a="a")]}, payload)
    assert payload == {"f": ";a;b;", "f_count": "2", "f_truncated": "false"}


@settings(max_examples=300, deadline=None)
@given(
    best=st.dictionaries(
        st.lists(st.text("ab019", min_size=1, max_size=4), min_size=1, max_size=2).map(tuple),
        st.integers(0, 5),
        max_size=5,
    ),
    max_length=st.none() | st.integers(3, 30),
)
def test_token_texts_equals_format_tokens(
    best: dict[tuple[str, ...], int], max_length: int | None
) -> None:
    # Parts that need no encoding: best is then exactly what format_tokens collects.
    tokens = [Token(parts, priority) for parts, priority in best.items()]
    keys = {PART_MARK.join(parts): rank for parts, rank in best.items()}
    assert token_texts(keys, max_length) == tuple(format_tokens(tokens, max_length=max_length))


@settings(max_examples=500, deadline=None)
@given(
    best=st.dictionaries(
        st.lists(st.text("abxz019AZ", min_size=1, max_size=4), min_size=2, max_size=2).map(tuple),
        st.integers(0, 5),
        max_size=6,
    ),
    max_length=st.none() | st.integers(3, 30),
)
def test_token_texts_orders_joined_keys_as_the_parts_tuples(
    best: dict[tuple[str, ...], int], max_length: int | None
) -> None:
    # Tokens are keyed by their parts joined with PART_MARK, which must sort as the parts'
    # tuples do (a part that is a prefix of another: "a" before "ab"): against the order of
    # the tuples themselves, best priority first, cut to whole tokens.
    keys = {PART_MARK.join(parts): rank for parts, rank in best.items()}
    assert token_texts(keys, max_length) == _by_parts(best, max_length)


def _by_parts(
    best: dict[tuple[str, ...], int], max_length: int | None
) -> tuple[str | None, int, bool]:
    words = [SEPARATOR.join(p) for _, p in sorted((-rank, p) for p, rank in best.items())]
    kept = words
    while kept and max_length is not None and sum(map(len, kept)) + len(kept) + 1 > max_length:
        kept = kept[:-1]
    text = DELIMITER + DELIMITER.join(kept) + DELIMITER if kept else None
    return text, len(words), len(kept) < len(words)


@pytest.mark.parametrize("type_", [t for t in FieldType if t is not FieldType.TOKENS])
@settings(max_examples=150, deadline=None)
@given(
    value=st.one_of(
        values,
        st.text(alphabet=" \t\n\x00\x85\xa0\u2003\u3000ab", max_size=8),
        st.datetimes(timezones=st.just(UTC)),
        st.sampled_from(["true", "1.50", "2024-01-02", "a@b.io", "x", " x  y "]),
    ),
    max_length=st.none() | st.integers(1, 5),
)
def test_a_scalar_field_writes_what_format_field_gives(
    type_: FieldType, value: Any, max_length: int | None
) -> None:
    spec = FieldSpec("f", type_, max_length=max_length, options=("x",) if type_ == "enum" else ())
    write = field_writer(spec, "v", compile_value("v", ENV), ENV)

    def written() -> dict[str, str | None]:
        payload: dict[str, str | None] = {}
        write({"v": value}, payload)
        return payload

    assert _outcome(written) == _outcome(lambda: format_field(spec, value))


@pytest.mark.parametrize("expression", ["o.a", "o.items", "o", "o.a | string"])
@pytest.mark.parametrize("type_", [FieldType.STRING, FieldType.NUMBER])
@settings(max_examples=100, deadline=None)
@given(
    value=st.one_of(values, st.sampled_from(["1.50", " x  y "])),
    holder=st.sampled_from(["object", "dict", "attributes", "empty attributes", "none"]),
)
def test_a_field_read_by_its_writer_writes_what_format_field_gives(
    expression: str, type_: FieldType, value: Any, holder: str
) -> None:
    # `name` and `name.attr` are read by the writer itself (an attributes mapping as an item):
    # Jinja's rules all the same, dict's own names (`items`) included.
    o: Any = {
        "object": SimpleNamespace(a=value, items=value),
        "dict": {"a": value, "items": value},
        "attributes": Attributes({"a": value, "items": value}),
        "empty attributes": Attributes(),
        "none": None,
    }[holder]
    spec = FieldSpec("f", type_)
    evaluate = compile_value(expression, ENV)
    write = field_writer(spec, expression, evaluate, ENV)

    def written() -> dict[str, str | None]:
        payload: dict[str, str | None] = {}
        write({"o": o}, payload)
        return payload

    assert _outcome(written) == _outcome(lambda: format_field(spec, evaluate({"o": o})))


def test_printable_text_has_no_blank_but_the_space() -> None:
    # The string writer skips the collapsing regex on printable text without a double space.
    blanks = [
        c
        for c in map(chr, range(sys.maxunicode + 1))
        if c.isprintable() and (BLANK_RUN.match(c) or c.isspace())
    ]
    assert blanks == [" "]


# --- a whole record: format() against the reference path, rejections and messages included ---

_AT = datetime(2024, 1, 2, tzinfo=UTC)


@st.composite
def bad_users(draw: st.DrawFn) -> ResolvedUser:
    """Users whose memberships hold good and bad values where text is expected."""
    ms = tuple(
        ResolvedMembership(
            draw(values),
            draw(values),
            None,
            None,
            draw(stages),
            None,
            False,
            _AT,
            i == 0,
        )
        for i in range(draw(st.integers(0, 3)))
    )
    user = User(
        "u1", draw(st.none() | st.emails() | values), draw(values), None, None, {}, _AT, _AT
    )
    return ResolvedUser(user, ms, "CUS", None, False, "r")


@pytest.fixture(scope="module")
def contacts() -> ObjectMapping:
    path = Path(__file__).resolve().parents[1] / "mappings" / "hubspot.yaml"
    return load_mapping(path, get_connector("hubspot").objects, LADDER).object("contacts")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(view=bad_users())
def test_format_equals_the_reference_path(contacts: ObjectMapping, view: ResolvedUser) -> None:
    got = contacts.format(view)
    expected = contacts._format_checked(got.key, context_for(view, LADDER))
    assert (got.payload, got.hints) == (expected.payload, expected.hints)
    assert list(got.payload) == list(expected.payload)  # the same field order
    if expected.rejected is None:
        assert got.rejected is None
    else:
        assert got.rejected is not None
        assert (got.rejected.key, got.rejected.reason, got.rejected.field) == (
            expected.rejected.key,
            expected.rejected.reason,
            expected.rejected.field,
        )
