"""Mapping and config mistakes: one problem each, at its file:line and field, in plain words.

Each case is a realistic mistake; the error must name the line, say what is wrong without
pydantic's or Jinja's internals, and stand alone (no second, cascading error after it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from syncer.config import load_config
from syncer.errors import ConfigError
from syncer.mapping import load_mapping
from syncer.model import StageLadder
from syncer.testing.memory import MemoryConnector

HEAD = "objects:\n  contacts:\n    source: users\n    key: syncer_user_id\n    fields:\n"
INTERNALS = ("Input should", "type=", "input_value", "errors.pydantic.dev", "unexpected '}'")


def assert_one_plain_problem(error: ConfigError, file: str, line: int, words: str) -> None:
    """``error`` holds one problem, at ``file:line``, saying ``words``, with no internals."""
    [problem] = error.problems
    text = str(error)
    assert (problem.file, problem.line) == (file, line)
    assert words in text
    assert not [internal for internal in INTERNALS if internal in text]


MAPPING_MISTAKES = {
    "unknown field type": (
        HEAD + "      email: {type: emial, value: user.email}\n",
        6,
        "'emial' is not one of: string, tokens, email",
    ),
    "unknown filter": (
        HEAD + "      x: {type: tokens, value: \"memberships | tokenz('account_id')\"}\n",
        6,
        "unknown filter 'tokenz'. Did you mean 'tokens'?",
    ),
    "unknown variable": (HEAD + "      x: stag\n", 6, "unknown name 'stag'. Did you mean 'stage'?"),
    "a record's attribute written as a name": (
        HEAD + '      x: "{{ user.first_name }} {{ lastname }}"\n',
        6,
        "Did you mean 'user.last_name'?",
    ),
    "unknown attribute": (
        HEAD + "      x: user.frist_name\n",
        6,
        "User has no attribute 'frist_name'. Did you mean 'first_name'?",
    ),
    "typo in a key": (
        HEAD + "      x: {type: string, valeu: user.email}\n",
        6,
        "unknown key 'valeu'. Did you mean 'value'?",
    ),
    "missing value": (HEAD + "      x: {type: string}\n", 6, "missing required key 'value'"),
    "empty value": (HEAD + "      x:\n", 6, "has no value"),
    "a number where an expression goes": (HEAD + "      x: 3\n", 6, "quote a constant"),
    "max_length zero": (
        HEAD + "      x: {value: user.email, max_length: 0}\n",
        6,
        "max_length: must be at least 1",
    ),
    "max_length in words": (
        HEAD + "      x: {value: user.email, max_length: lots}\n",
        6,
        "max_length: must be a whole number, not text",
    ),
    "a single closing brace": (
        HEAD + '      x: "{{ stage }"\n',
        6,
        "the '{{' at column 1 is closed by a single '}' at column 10: write '}}'",
    ),
    "an unclosed call": (
        HEAD + '      x: "stage | tokens("\n',
        6,
        "'(' at column 15 is never closed (add ')'): the expression is unbalanced",
    ),
    "an unclosed quote": (
        HEAD + '      x: "tokens(\'a)"\n',
        6,
        "the quote ' at column 8 is never closed",
    ),
    "an expression cut short": (
        HEAD + '      x: "user.email +"\n',
        6,
        "it ends too early: something is missing after '+'",
    ),
    "an unclosed if": (
        HEAD + '      x: "{% if churned %}{{ user.first_name }}"\n',
        6,
        "the '{% if %}' block is never closed: add '{% endif %}'",
    ),
    "unknown object": (
        "objects:\n  deals:\n    source: users\n    key: x\n    fields: {a: user.email}\n",
        2,
        "unknown object 'deals'. The connector writes: companies, contacts",
    ),
    "wrong key field": (
        "objects:\n  contacts:\n    source: users\n    key: user_id\n    fields: {a: stage}\n",
        4,
        "key 'user_id' is not the connector's unique key field 'syncer_user_id'",
    ),
    "unknown source": (
        "objects:\n  contacts:\n    source: user\n    key: syncer_user_id\n"
        "    fields: {a: stage}\n",
        3,
        "'user' is not one of: users, accounts",
    ),
    "a value of the wrong type": (
        HEAD + "      n: {type: number, value: user.email}\n",
        6,
        "does not fit type number",
    ),
    "an enum without options": (
        HEAD + "      n: {type: enum, value: stage}\n",
        6,
        "an enum field needs options",
    ),
    "unknown association": (
        "objects:\n  contacts:\n    source: users\n    key: syncer_user_id\n"
        "    associations: [deals]\n    fields: {a: stage}\n",
        5,
        "association to unknown object 'deals'",
    ),
    "YAML: an unclosed flow mapping": (
        HEAD + "      x: {type: string, value: user.email\n      y: stage\n",
        7,
        "the '{' on line 6 is not closed with '}'",
    ),
    "YAML: bad indentation": (
        HEAD + "      x: stage\n     y: stage\n",
        7,
        "the indentation does not line up",
    ),
}


@pytest.mark.parametrize("mistake", list(MAPPING_MISTAKES))
def test_a_mapping_mistake_is_one_plain_problem_at_its_line(tmp_path: Path, mistake: str) -> None:
    body, line, words = MAPPING_MISTAKES[mistake]
    path = tmp_path / "m.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_mapping(path, MemoryConnector.objects, StageLadder())
    assert_one_plain_problem(caught.value, str(path), line, words)


def test_a_template_error_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(HEAD + '      full_name: "{{ stage }"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_mapping(path, MemoryConnector.objects, StageLadder())
    assert caught.value.problems[0].field == "contacts.full_name"
    assert f"{path}:6, field 'contacts.full_name': '{{{{ stage }}': " in str(caught.value)


def test_a_line_inside_a_block_template_is_the_line_of_the_mistake(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        HEAD + "      x:\n        value: |\n          {{ user.first_name }}\n"
        "          {{ user.last_name }\n"
        "      y: stage\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_mapping(path, MemoryConnector.objects, StageLadder())
    [problem] = caught.value.problems
    assert problem.line == 9
    assert "the '{{' at column 1 is closed by a single '}' at column 19" in problem.message


CONFIG_MISTAKES = {
    "unknown primary policy": ("policies: {primary: stickyy}\n", 1, "'stickyy' is not one of"),
    "max_attempts zero": ("policies: {max_attempts: 0}\n", 1, "must be at least 1"),
    "concurrency in words": (
        "destinations:\n  hubspot:\n    connector: hubspot\n    mapping: m.yaml\n"
        "    concurrency: many\n",
        5,
        "must be a whole number, not text",
    ),
    "destinations as a list": ("destinations: [hubspot]\n", 1, "must be a mapping"),
    "unknown removal": (
        "destinations:\n  hubspot:\n    connector: hubspot\n    mapping: m.yaml\n"
        "    removal: delete\n",
        5,
        "'delete' is not one of: none, clear, archive",
    ),
    "typo in a key": ("polices: {}\n", 1, "unknown key 'polices'. Did you mean 'policies'?"),
    "unknown roll-up aggregate": (
        "policies:\n  rollups: {licenses: avg}\n",
        2,
        "'avg' is not one of: sum, min, max, count",
    ),
    "stages as a list": ("stages: [a, b]\n", 1, "stages: must be a mapping"),
    "concurrency too high": (
        "destinations:\n  hubspot:\n    connector: hubspot\n    mapping: m.yaml\n"
        "    concurrency: 100\n",
        5,
        "must be at most 32",
    ),
    "a connector name in capitals": (
        "destinations:\n  hubspot:\n    connector: HubSpot\n    mapping: m.yaml\n",
        3,
        "'HubSpot' is not a connector name",
    ),
}


@pytest.mark.parametrize("mistake", list(CONFIG_MISTAKES))
def test_a_config_mistake_is_one_plain_problem_at_its_line(tmp_path: Path, mistake: str) -> None:
    body, line, words = CONFIG_MISTAKES[mistake]
    (tmp_path / "m.yaml").write_text("objects: {}\n", encoding="utf-8")
    path = tmp_path / "syncer.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert_one_plain_problem(caught.value, str(path), line, words)


def test_an_unknown_jinja_test_is_named_with_a_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(HEAD + '      x: "1 if primary is nnone else 2"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_mapping(path, MemoryConnector.objects, StageLadder())
    [problem] = caught.value.problems
    assert "unknown test 'nnone'. Did you mean 'none'?" in str(problem)
