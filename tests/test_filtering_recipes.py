"""The marketers' recipes (docs/filtering.md, README) are the exact texts the code gives, and they
find exactly the right records in the golden HubSpot plan of examples/, under both matching rules.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from syncer.model import StageLadder
from syncer.store.database import init_store
from syncer.store.loaders import load_paths
from syncer.store.schema import memberships
from syncer.tokens import Token, contains_query

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = json.loads((ROOT / "tests" / "golden" / "hubspot_plan.json").read_text(encoding="utf-8"))
DOC = (ROOT / "docs" / "filtering.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")
LADDER = StageLadder()


def substring_match(query: str, field: str | None) -> bool:
    """Salesforce reports and list views: case-insensitive substring."""
    return field is not None and query.lower() in field.lower()


def word_match(query: str, field: str | None) -> bool:
    """HubSpot CONTAINS_TOKEN as modelled: words split on non-alphanumerics, any case."""
    if field is None:
        return False
    words = {w.lower() for w in re.split(r"[^0-9A-Za-z]+", field) if w}
    return query.lower() in words


@pytest.fixture(scope="module")
def active_memberships(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str, str]]:
    """(user_id, account_id, canonical stage) of every membership of examples/ not churned, as
    the store holds them after loading (CSV and Segment events)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'store.db'}"
    engine = init_store(url)
    try:
        load_paths(engine, [ROOT / "examples"])
        with engine.connect() as conn:
            rows = conn.execute(
                select(memberships.c.user_id, memberships.c.account_id, memberships.c.stage)
            ).all()
    finally:
        engine.dispose()
    out = []
    for user_id, account_id, raw in rows:
        stage = LADDER.normalize(raw) if raw and raw.strip() else LADDER.lowest
        if not LADDER.is_churned(stage):
            out.append((user_id, account_id, stage))
    return out


def _row(doc: str, question: str) -> str:
    [line] = [line for line in doc.splitlines() if line.startswith(f"| {question} |")]
    return line


@pytest.mark.parametrize("doc", [DOC, README], ids=["docs/filtering.md", "README"])
def test_the_documented_texts_are_what_the_code_gives(doc: str) -> None:
    users = _row(doc, "users of account 34")
    assert f"`{contains_query('34', 'substring')}`" in users
    assert f"`{contains_query('34', 'word')}`" in users
    assert "syncer_account_ids" in users
    assert "Syncer_Account_Ids__c" in users
    accounts = _row(doc, "accounts with a CUS user")
    assert f"`{contains_query('CUS', 'substring')}`" in accounts
    assert f"`{contains_query('CUS', 'word')}`" in accounts
    assert "syncer_member_stages" in accounts
    assert "Syncer_Member_Stages__c" in accounts


def test_the_detailed_recipes_are_what_the_code_gives() -> None:
    assert f"`{contains_query(Token(('34', 'CUS')), 'substring')}`" in DOC
    assert f"`{contains_query(Token(('34', 'CUS')), 'word')}`" in DOC
    assert f"`{contains_query('34', 'substring', prefix=True)}`" in DOC
    assert f"`{contains_query('ann@acme.io', 'word')}`" in DOC


@pytest.mark.parametrize("account", sorted(GOLDEN["companies"]))
def test_users_of_an_account_are_found_exactly_under_both_rules(
    account: str, active_memberships: list[tuple[str, str, str]]
) -> None:
    expected = {u for u, a, _ in active_memberships if a == account}
    contacts = GOLDEN["contacts"]
    for rule, match in (("substring", substring_match), ("word", word_match)):
        query = contains_query(account, rule)  # type: ignore[arg-type]
        found = {k for k, p in contacts.items() if match(query, p["syncer_account_ids"])}
        assert found == expected, (rule, query)
    prefix = contains_query(Token((account,)), "substring", prefix=True)
    found = {k for k, p in contacts.items() if substring_match(prefix, p["syncer_accounts"])}
    assert found == expected


@pytest.mark.parametrize("stage", LADDER.names)
def test_accounts_with_a_user_at_a_stage_are_found_exactly_under_both_rules(
    stage: str, active_memberships: list[tuple[str, str, str]]
) -> None:
    expected = {a for _, a, s in active_memberships if s == stage}
    companies = GOLDEN["companies"]
    for rule, match in (("substring", substring_match), ("word", word_match)):
        query = contains_query(stage, rule)  # type: ignore[arg-type]
        found = {k for k, p in companies.items() if match(query, p["syncer_member_stages"])}
        assert found == expected, (rule, query)


def test_a_bare_word_is_not_exact_under_substring_matching() -> None:
    # Why the substring column always carries the delimiters: `acme` is inside `acmezhus`.
    contacts = GOLDEN["contacts"]
    loose = {k for k, p in contacts.items() if substring_match("acme", p["syncer_account_ids"])}
    exact = {k for k, p in contacts.items() if substring_match(";acme;", p["syncer_account_ids"])}
    assert exact < loose
