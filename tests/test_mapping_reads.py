"""What a mapping's account records show of their members: read from the expressions'
syntax trees, never less than they read."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncer.mapping.compile import parse_value
from syncer.mapping.filters import make_environment
from syncer.mapping.reads import MEMBER_FIELDS, expression_reads, member_fields
from syncer.model import DEFAULT_LADDER

ROOT = Path(__file__).resolve().parents[1]
ALL = set(MEMBER_FIELDS)


@pytest.mark.parametrize(
    ("text", "reads"),
    [
        ("account.name", set()),
        ("members | length", set()),
        ("member_stages | tokens", set()),
        ("members | emails", {"email"}),
        ("members | tokens('user_id', 'stage')", set()),
        ("members | tokens('email', 'stage')", {"email"}),
        ("members | tokens('first_name', 'last_name')", {"first_name", "last_name"}),
        # Whatever this does not follow reads everything.
        ("members | tokens", ALL),
        ("members | map(attribute='email') | list", ALL),
        ("members[0].first_name", ALL),
        ("members | first", ALL),
        ("members | tokens(name)", ALL),
        ("members | tokens(*names)", ALL),
        ("{% for m in members %}{{ m.email }}{% endfor %}", ALL),
        ("{% set x = members %}{{ x | length }}", ALL),
        ("{{ members }}", ALL),
    ],
)
def test_an_expression_reads_what_it_names_of_members(text: str, reads: set[str]) -> None:
    env = make_environment(DEFAULT_LADDER)
    assert expression_reads(parse_value(text, env)) == reads


def test_hubspots_companies_show_their_members_emails_only() -> None:
    from syncer.mapping.load import load_mapping
    from syncer.testing.memory import MemoryConnector

    mapping = load_mapping(
        ROOT / "mappings" / "hubspot.yaml", MemoryConnector.objects, DEFAULT_LADDER
    )
    assert member_fields(mapping.objects) == {"email"}
    users_only = [o for o in mapping.objects if o.source == "users"]
    assert member_fields(users_only) == set()  # contacts show no members
