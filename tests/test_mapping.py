"""Mapping files: checked at load (file, line, field, the unknown name), fast path = Jinja."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from syncer.errors import ConfigError
from syncer.mapping import compile_value, context_for, load_mapping, make_environment
from syncer.model import ResolvedMember, ResolvedMembership, ResolvedUser, StageLadder, User
from syncer.testing.memory import MemoryConnector

ROOT = Path(__file__).resolve().parents[1]
LADDER = StageLadder()
OBJECTS = MemoryConnector.objects


def _mapping(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def _user() -> ResolvedUser:
    at = datetime(2024, 5, 1, tzinfo=UTC)
    ms = (
        ResolvedMembership("34", "Acme", None, "admin", "CUS", "CUS", False, at, True),
        ResolvedMembership("340", "Acme 2", None, "member", "MQL", "MQL", False, at),
        ResolvedMembership("7", "Gone", None, "member", "churned", None, True, at),
    )
    user = User("u1", "Ann@Acme.io", "Ann", "Lee", "MAL", {"plan": "pro"}, at, at)
    return ResolvedUser(user, ms, "CUS", "34", False, "best active membership")


def test_the_default_mappings_load() -> None:
    mapping = load_mapping(ROOT / "mappings" / "hubspot.yaml", OBJECTS, LADDER)
    assert [o.name for o in mapping.objects] == ["companies", "contacts"]  # write order
    contacts = mapping.object("contacts")
    out = contacts.format(_user())
    assert out.rejected is None
    assert out.payload["syncer_user_id"] == "u1"
    assert out.payload["email"] == "ann@acme.io"
    assert out.payload["syncer_accounts"] == ";34xcus;340xmql;"  # churned one left out
    assert out.payload["syncer_accounts_count"] == "2"
    assert out.payload["syncer_primary_account_name"] == "Acme"
    assert out.hints == {"email": "Ann@Acme.io", "primary_account_key": "34"}


def test_a_typo_names_file_line_field_and_the_unknown_name(tmp_path: Path) -> None:
    path = _mapping(
        tmp_path,
        "objects:\n"
        "  contacts:\n"
        "    source: users\n"
        "    key: syncer_user_id\n"
        "    fields:\n"
        "      email: {type: email, value: user.email}\n"
        "      syncer_stage: stag\n"
        "      firstname: user.frist_name\n"
        "      syncer_accounts: {type: tokens, value: \"memberships | tokenz('account_id')\"}\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_mapping(path, OBJECTS, LADDER)
    text = str(caught.value)
    for line, name in ((7, "'stag'"), (8, "frist_name"), (9, "tokenz")):
        [problem] = [p for p in caught.value.problems if p.line == line]
        assert problem.file == str(path)
        assert name in problem.message
    assert f"{path}:7" in text


def test_unknown_object_wrong_key_and_bad_type_are_reported_together(tmp_path: Path) -> None:
    path = _mapping(
        tmp_path,
        "objects:\n"
        "  deals:\n"
        "    source: users\n"
        "    key: x\n"
        "    fields: {a: user.email}\n"
        "  contacts:\n"
        "    source: users\n"
        "    key: user_id\n"
        "    fields:\n"
        "      n: {type: number, value: user.email}\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_mapping(path, OBJECTS, LADDER)
    text = str(caught.value)
    assert "unknown object 'deals'" in text
    assert "syncer_user_id" in text  # the key the connector upserts by
    assert "type number" in text


def test_templates_are_sandboxed(tmp_path: Path) -> None:
    path = _mapping(
        tmp_path,
        "objects:\n"
        "  contacts:\n"
        "    source: users\n"
        "    key: syncer_user_id\n"
        "    fields:\n"
        '      x: "user.__class__.__mro__"\n',
    )
    with pytest.raises(ConfigError):
        load_mapping(path, OBJECTS, LADDER)


@pytest.mark.parametrize(
    "expr",
    [
        "user.email",
        "user.attributes.plan",
        "attributes.missing",
        "memberships | length",
        "memberships | tokens('account_id', 'stage')",
        "primary.account_name if primary else none",
        "stage | at_least('MQL')",
        "memberships | map(attribute='account_id') | join(',')",
        "'{} of {}'.format(stage, primary_account_id)",
        "{{ user.first_name }} {{ user.last_name }}",
    ],
)
def test_the_fast_path_and_jinja_agree(expr: str) -> None:
    env = make_environment(LADDER)
    ctx = context_for(_user(), LADDER)
    fast = compile_value(expr, env)
    if "{{" in expr:
        expected = env.from_string(expr).render(ctx)
    else:
        expected = env.compile_expression(expr, undefined_to_none=False)(**ctx)
    assert fast(ctx) == expected


@pytest.mark.parametrize(
    "value",
    [
        "primary.account_name if primary else user.frist_name",
        "{% if churned %}{{ user.frist_name }}{% endif %}",
        "all_memberships | selectattr('churned') | map(attribute='acount_name') | join(',')",
    ],
)
def test_a_typo_in_a_branch_the_sample_does_not_take_is_reported_at_load(
    tmp_path: Path, value: str
) -> None:
    path = _mapping(
        tmp_path,
        "objects:\n"
        "  contacts:\n"
        "    source: users\n"
        "    key: syncer_user_id\n"
        "    fields:\n"
        f'      x: "{value}"\n',
    )
    with pytest.raises(ConfigError, match=r"frist_name|acount_name"):
        load_mapping(path, OBJECTS, LADDER)


def test_a_lookup_guarded_by_its_branch_still_loads(tmp_path: Path) -> None:
    # The edge views leave `primary` empty: only a misspelt attribute is a load error there.
    path = _mapping(
        tmp_path,
        "objects:\n"
        "  contacts:\n"
        "    source: users\n"
        "    key: syncer_user_id\n"
        "    fields:\n"
        '      x: "primary.account_name if primary else user.first_name"\n'
        '      y: "{% if churned %}{{ user.last_name }}{% endif %}"\n',
    )
    obj = load_mapping(path, OBJECTS, LADDER).object("contacts")
    assert [f.spec.name for f in obj.fields] == ["x", "y"]


def test_private_attributes_are_not_reachable_through_the_tokens_filter(tmp_path: Path) -> None:
    path = _mapping(
        tmp_path,
        "objects:\n"
        "  contacts:\n"
        "    source: users\n"
        "    key: syncer_user_id\n"
        "    fields:\n"
        "      x: {type: tokens, value: \"memberships | tokens('__class__')\"}\n",
    )
    with pytest.raises(ConfigError, match="not an attribute a mapping may read"):
        load_mapping(path, OBJECTS, LADDER)


def test_the_emails_filter_leaves_out_blank_and_invalid_addresses() -> None:
    env = make_environment(LADDER)
    at = datetime(2024, 5, 1, tzinfo=UTC)
    members = [
        ResolvedMember("u1", " Ann@Acme.IO ", None, None, None, "CUS", "CUS", at),
        ResolvedMember("u2", " not an email ", None, None, None, "PRO", "PRO", at),
        ResolvedMember("u3", "   ", None, None, None, "MQL", "MQL", at),
        ResolvedMember("u4", None, None, None, None, "MQL", "MQL", at),
    ]
    tokens = compile_value("members | emails", env)({"members": members})
    assert [t.parts for t in tokens] == [("ann@acme.io",)]
