"""The compiled fast path gives sandboxed Jinja's values, on every shipped mapping.

For each field and hint of each ``mappings/*.yaml`` the loaded evaluator (a plain-Python closure
where :mod:`syncer.mapping.compile` made one, Jinja otherwise) and sandboxed Jinja itself are run
on generated resolved users and accounts: both give the same value, or both fail.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2 import Undefined
from jinja2.sandbox import SandboxedEnvironment

from syncer.connectors.registry import get_connector
from syncer.mapping import MappingFile, context_for, load_mapping, make_environment
from syncer.mapping.compile import is_template
from syncer.model import (
    Account,
    ResolvedAccount,
    ResolvedMember,
    ResolvedMembership,
    ResolvedUser,
    StageLadder,
    User,
)

ROOT = Path(__file__).resolve().parents[1]
LADDER = StageLadder()
SHIPPED = sorted((ROOT / "mappings").glob("*.yaml"))
STAGES = [*LADDER.names, LADDER.churned]

texts = st.text(max_size=12)
maybe_text = st.none() | texts
ids = st.text(alphabet="abcxyz019-_ .@", min_size=1, max_size=8)
moments = st.none() | st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
)
scalars: st.SearchStrategy[object] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
attributes = st.dictionaries(
    st.sampled_from(["plan", "status", "contract_value", "renewal_date", "licenses", "x"]),
    scalars,
    max_size=4,
)


@st.composite
def memberships(draw: st.DrawFn) -> tuple[ResolvedMembership, ...]:
    accounts = draw(st.lists(ids, unique=True, max_size=4))
    primary = draw(st.sampled_from([None, *accounts]))
    out = []
    for aid in accounts:
        stage = draw(st.sampled_from(STAGES))
        churned = stage == LADDER.churned
        mark = None if churned else draw(st.sampled_from(LADDER.names))
        out.append(
            ResolvedMembership(
                aid,
                draw(maybe_text),
                draw(st.none() | ids),
                draw(maybe_text),
                stage,
                mark,
                churned,
                draw(moments),
                aid == primary,
            )
        )
    return tuple(out)


@st.composite
def users(draw: st.DrawFn) -> ResolvedUser:
    user = User(
        draw(ids),
        draw(st.none() | texts | st.emails()),
        draw(maybe_text),
        draw(maybe_text),
        draw(st.none() | st.sampled_from(STAGES)),
        draw(attributes),
        draw(moments),
        draw(moments),
    )
    ms = draw(memberships())
    primary = next((m.account_id for m in ms if m.primary), None)
    churned = bool(ms) and all(m.churned for m in ms)
    stage = LADDER.churned if churned else draw(st.sampled_from(LADDER.names))
    return ResolvedUser(user, ms, stage, primary, churned, draw(texts))


@st.composite
def accounts(draw: st.DrawFn) -> ResolvedAccount:
    account = Account(
        draw(ids),
        draw(maybe_text),
        draw(maybe_text),
        draw(st.none() | ids),
        draw(st.none() | st.sampled_from(STAGES)),
        draw(attributes),
        draw(moments),
        draw(moments),
    )
    members = tuple(
        ResolvedMember(
            uid,
            draw(st.none() | texts | st.emails()),
            draw(maybe_text),
            draw(maybe_text),
            draw(maybe_text),
            draw(st.sampled_from(LADDER.names)),
            draw(st.none() | st.sampled_from(LADDER.names)),
            draw(moments),
        )
        for uid in draw(st.lists(ids, unique=True, max_size=4))
    )
    rollups = draw(
        st.dictionaries(
            st.sampled_from(["licenses", "contract_value"]),
            st.floats(allow_nan=False, allow_infinity=False),
        )
    )
    ancestors = tuple(draw(st.lists(ids, max_size=3)))
    children = tuple(draw(st.lists(ids, max_size=3)))
    return ResolvedAccount(
        account, members, draw(st.sampled_from(STAGES)), rollups, ancestors, children
    )


@cache
def _load(path: Path) -> MappingFile:
    return load_mapping(path, get_connector(path.stem).objects, LADDER)


def _outcome(evaluate: Any, ctx: dict[str, Any]) -> tuple[str, Any]:
    """``("value", v)``, or ``("fails", None)``: an exception, or an undefined Jinja value
    (which fails wherever it is used)."""
    try:
        value = evaluate(ctx)
    except Exception:
        return "fails", None
    return ("fails", None) if isinstance(value, Undefined) else ("value", value)


def _check(mapping: MappingFile, view: ResolvedUser | ResolvedAccount) -> None:
    env = make_environment(LADDER)
    source = "users" if isinstance(view, ResolvedUser) else "accounts"
    for obj in (o for o in mapping.objects if o.source == source):
        ctx = context_for(view, LADDER)
        evaluators = [(f.template, f.evaluate) for f in obj.fields]
        evaluators += [(obj.hints[name], evaluate) for name, evaluate in obj._hints]
        for text, evaluate in evaluators:
            expected = _outcome(_jinja(env, text), ctx)
            assert _outcome(evaluate, ctx) == expected, f"{obj.name}: {text}"


def _jinja(env: SandboxedEnvironment, text: str) -> Callable[[dict[str, Any]], Any]:
    """``text`` evaluated by sandboxed Jinja alone."""
    if is_template(text):
        return env.from_string(text).render
    compiled = env.compile_expression(text, undefined_to_none=False)
    return lambda ctx: compiled(**ctx)


def test_every_shipped_mapping_is_covered() -> None:
    assert SHIPPED
    for path in SHIPPED:  # each named for its connector
        assert _load(path).objects


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(view=st.one_of(users(), accounts()))
def test_the_fast_path_equals_sandboxed_jinja(path: Path, view: Any) -> None:
    _check(_load(path), view)
