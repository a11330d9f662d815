"""Token lists: the grammar, budgets, and exact *contains* filters under both matching rules."""

from __future__ import annotations

import random
import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncer.errors import RecordRejected
from syncer.fields import FieldSpec, FieldType, format_field
from syncer.tokens import (
    BLANK_RUN,
    ESCAPES,
    Token,
    _encode,
    contains_query,
    decode_token,
    encode_part,
    encode_token,
    format_tokens,
    parse_tokens,
    readable_tokens,
)

# --- how destinations match a *contains* filter (the models the properties are checked under) ---


def matches_substring(query: str, field: str | None, case_insensitive: bool) -> bool:
    """Salesforce report/list-view "contains": a (case-insensitive) substring match."""
    if field is None:
        return False
    if case_insensitive:
        return query.lower() in field.lower()
    return query in field


def words_ascii(field: str) -> list[str]:
    """HubSpot CONTAINS_TOKEN as the brief models it: split on non-alphanumerics (ASCII)."""
    return [w for w in re.split(r"[^0-9A-Za-z]+", field) if w]


def words_unicode(field: str) -> list[str]:
    """A Unicode-aware tokenizer (letters of any script, underscore as a separator)."""
    return [w for w in re.split(r"[\W_]+", field) if w]


def matches_word(query: str, field: str | None, case_insensitive: bool, split=words_ascii) -> bool:
    if field is None:
        return False
    assert split(query) == [query], f"a word query must be one word, got {query!r}"
    if case_insensitive:
        return query.lower() in {w.lower() for w in split(field)}
    return query in split(field)


# --- a reference normalisation, written independently of the module --------------------------


def norm_part(part: str, case_insensitive: bool) -> str:
    if case_insensitive:
        part = part.lower()
    out: list[str] = []
    for char in part:
        blank = char.isspace() or unicodedata.category(char) == "Cc"
        if blank:
            if out and out[-1] != " ":
                out.append(" ")
        else:
            out.append(char)
    return "".join(out).strip()


def norm_token(token: Token | str, case_insensitive: bool) -> tuple[str, ...]:
    parts = (token,) if isinstance(token, str) else token.parts
    return tuple(norm_part(p, case_insensitive) for p in parts)


# --- strategies ---------------------------------------------------------------------------------

TRICKY = list("0134abcmqsuxzXZA;:@.-_+ \t\n\x00\x7f\u0085\u00a0\u200béÉß東İ🙂'\"|,")
parts_st = st.one_of(
    st.text(alphabet=st.sampled_from(TRICKY), max_size=5),
    st.sampled_from(["34", "340", "110", "CUS", "cus", "mql", "x", "z", "ze", "34x", ""]),
    st.text(max_size=3),
)
token_st = st.one_of(
    parts_st,
    st.builds(
        Token,
        parts=st.lists(parts_st, min_size=1, max_size=3).map(tuple),
        priority=st.integers(0, 3),
    ),
)
record_st = st.lists(token_st, max_size=6)
population_st = st.lists(record_st, min_size=1, max_size=5)
budget_st = st.one_of(st.none(), st.integers(3, 60))


# --- properties ---------------------------------------------------------------------------------


@settings(deadline=None, max_examples=300)
@given(population_st, token_st, budget_st, st.booleans())
def test_contains_filter_is_exact_under_substring_and_word_matching(
    population: list[list[Token | str]],
    extra: Token | str,
    budget: int | None,
    case_insensitive: bool,
) -> None:
    spec = FieldSpec("f", FieldType.TOKENS, max_length=budget, case_insensitive=case_insensitive)
    fields = [format_field(spec, record)["f"] for record in population]
    candidates = [t for record in population for t in record] + [extra]
    for query_token in candidates:
        wanted = norm_token(query_token, case_insensitive)
        sub_q = contains_query(query_token, "substring", case_insensitive=case_insensitive)
        word_q = contains_query(query_token, "word", case_insensitive=case_insensitive)
        lead = Token((query_token if isinstance(query_token, str) else query_token.parts[0],))
        prefix_q = contains_query(lead, "substring", prefix=True, case_insensitive=case_insensitive)
        for record, field in zip(population, fields, strict=True):
            shown = set(parse_tokens(field))
            held = wanted in shown
            assert matches_substring(sub_q, field, case_insensitive) == held
            assert matches_word(word_q, field, case_insensitive) == held
            assert matches_word(word_q, field, case_insensitive, words_unicode) == held
            starts = any(len(t) > 1 and t[0] == wanted[0] for t in shown)
            assert matches_substring(prefix_q, field, case_insensitive) == starts
            if budget is None:  # nothing dropped: the field holds exactly the record's tokens
                assert held == (wanted in {norm_token(t, case_insensitive) for t in record})


@settings(deadline=None, max_examples=300)
@given(record_st, budget_st, st.booleans(), st.randoms(use_true_random=False))
def test_budget_drops_whole_lowest_priority_tokens_and_counts_them(
    record: list[Token | str], budget: int | None, case_insensitive: bool, rnd: random.Random
) -> None:
    spec = FieldSpec("f", FieldType.TOKENS, max_length=budget, case_insensitive=case_insensitive)
    out = format_field(spec, record)
    text = out["f"]
    alphabet = "0-9a-z" if case_insensitive else "0-9A-Za-z"
    if text is not None:
        assert budget is None or len(text) <= budget
        assert re.fullmatch(rf";(?:[{alphabet}]+;)+", text), text
    # The full ordered list: distinct normalised tokens at their highest priority.
    best: dict[tuple[str, ...], int] = {}
    for t in record:
        key = norm_token(t, case_insensitive)
        prio = 0 if isinstance(t, str) else t.priority
        best[key] = max(prio, best.get(key, prio))
    full = sorted(
        best, key=lambda k: (-best[k], tuple(encode_part(p, case_insensitive) for p in k))
    )
    shown = parse_tokens(text)
    # No partial token: what is shown is a prefix of the full order, every token whole.
    assert shown == full[: len(shown)]
    assert out["f_count"] == str(len(full))
    assert out["f_truncated"] == ("true" if len(shown) < len(full) else "false")
    if len(shown) < len(full):  # the next token really did not fit
        next_word = encode_token(Token(full[len(shown)]), case_insensitive)
        assert budget is not None
        assert len(text or ";") + len(next_word) + 1 > budget
    # Equal input gives byte-equal output, whatever the order it came in.
    shuffled = list(record)
    rnd.shuffle(shuffled)
    assert format_field(spec, shuffled) == out


@settings(deadline=None, max_examples=300)
@given(st.lists(parts_st, min_size=1, max_size=4), st.booleans())
def test_encoding_is_one_ascii_word_and_decodes_back(parts: list[str], case_insensitive: bool):
    word = encode_token(Token(tuple(parts)), case_insensitive)
    assert re.fullmatch(r"[0-9A-Za-z]+", word)
    assert case_insensitive is False or word == word.lower()
    assert decode_token(word) == norm_token(Token(tuple(parts)), case_insensitive)


# --- examples -----------------------------------------------------------------------------------


def test_documented_examples_encode_as_shown() -> None:
    assert encode_token(Token(("34", "CUS"))) == "34xcus"
    assert encode_token(Token(("ann@acme.io", "MQL"))) == "annzaacmezdioxmql"
    assert encode_token("Max Zeta-Jones") == "mazxzszzetazhjones"
    assert encode_token(Token(("a:b", "x;y", "é", ""))) == "azcbxzxz59zyxz233zxze"
    spec = FieldSpec("syncer_accounts", FieldType.TOKENS)
    out = format_field(spec, [Token(("110", "MQL"), 2), Token(("34", "CUS"), 4)])
    assert out["syncer_accounts"] == ";34xcus;110xmql;"


def test_account_34_never_matches_account_340() -> None:
    spec = FieldSpec("syncer_account_ids", FieldType.TOKENS)
    field = format_field(spec, ["340", "1340"])["syncer_account_ids"]
    assert not matches_substring(contains_query("34", "substring"), field, True)
    assert not matches_word(contains_query("34", "word"), field, True)
    prefix = contains_query("34", "substring", prefix=True)
    pairs = format_field(spec, [Token(("340", "cus"))])["syncer_account_ids"]
    assert prefix == ";34x"
    assert not matches_substring(prefix, pairs, True)


def test_compound_token_is_one_word_so_swapped_stages_do_not_match() -> None:
    # The reason the separator is a letter: with `34:cus` this record would contain the words
    # 34 and cus and a word filter for account 34 as CUS would wrongly match it.
    spec = FieldSpec("syncer_accounts", FieldType.TOKENS)
    field = format_field(spec, [Token(("34", "MQL")), Token(("110", "CUS"))])["syncer_accounts"]
    query = contains_query(Token(("34", "CUS")), "word")
    assert query == "34xcus"
    assert not matches_word(query, field, True)
    assert not matches_substring(contains_query(Token(("34", "CUS")), "substring"), field, True)


def test_ties_drop_the_last_in_order_first() -> None:
    tokens = format_tokens(["b", "a", "c"], max_length=len(";a;b;"))
    assert tokens.text == ";a;b;"
    assert (tokens.total, tokens.truncated) == (3, True)


def test_lower_priority_goes_first_even_when_shorter() -> None:
    tokens = format_tokens(
        [Token(("short",), 0), Token(("muchlongertoken",), 9)], max_length=len(";muchlongertoken;")
    )
    assert tokens.text == ";muchlongertoken;"


def test_duplicates_after_normalisation_keep_the_highest_priority() -> None:
    tokens = format_tokens([Token(("B",), 1), " b ", Token(("a",), 0), Token(("b",), 5)])
    assert tokens.text == ";b;a;"
    assert tokens.total == 2


def test_budget_counts_characters_not_bytes() -> None:
    # Output is ASCII (é is escaped), so a budget holds exactly as many characters as bytes.
    text = format_tokens(["é" * 10], max_length=52).text
    assert text is not None
    assert len(text) == len(text.encode()) == 52


def test_empty_list_clears_the_field_and_counts_zero() -> None:
    spec = FieldSpec("f", FieldType.TOKENS, max_length=255)
    assert format_field(spec, []) == {"f": None, "f_count": "0", "f_truncated": "false"}
    assert format_field(spec, None) == {"f": None, "f_count": None, "f_truncated": None}


def test_no_token_fits_clears_the_field_and_says_truncated() -> None:
    spec = FieldSpec("f", FieldType.TOKENS, max_length=5)
    assert format_field(spec, ["abcdef"]) == {"f": None, "f_count": "1", "f_truncated": "true"}


def test_companions_can_be_turned_off() -> None:
    spec = FieldSpec("f", FieldType.TOKENS, companions=False)
    assert format_field(spec, ["a"]) == {"f": ";a;"}


def test_case_sensitive_fields_keep_capitals() -> None:
    assert encode_token("AbX", case_insensitive=False) == "AbX"
    assert encode_token("Abx", case_insensitive=False) == "Abzx"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("34;110", "needs a list of tokens, got str"),
        ({"34": "cus"}, "needs a list of tokens, got dict"),
        (34, "needs a list of tokens, got int"),
        ([Token(())], "at least one part"),
        ([Token(("34", 1.5))], "a token part must be text, got float 1.5"),  # type: ignore[arg-type]
        ([Token(("34", None))], "got NoneType"),  # type: ignore[arg-type]
        ([True], "a token must be a Token or a string, got bool"),
    ],
)
def test_values_that_are_not_tokens_reject_the_record(value: object, reason: str) -> None:
    spec = FieldSpec("syncer_accounts", FieldType.TOKENS)
    with pytest.raises(RecordRejected, match=re.escape(reason)) as caught:
        format_field(spec, value, key="u-7")
    assert (caught.value.key, caught.value.field) == ("u-7", "syncer_accounts")


def test_integer_parts_are_written_as_digits() -> None:
    assert format_tokens([Token((34, "cus"))]).text == ";34xcus;"  # type: ignore[arg-type]


def test_word_rule_cannot_express_a_prefix() -> None:
    with pytest.raises(ValueError, match="syncer_account_ids"):
        contains_query("34", "word", prefix=True)
    with pytest.raises(ValueError, match="unknown match rule"):
        contains_query("34", "regex")  # type: ignore[arg-type]


@pytest.mark.parametrize("word", ["34x", "x", "z", "z0z", "zq", "zeab", "z99999999z", "", "a;b"])
def test_decoding_rejects_what_the_encoder_never_writes(word: str) -> None:
    with pytest.raises(ValueError, match=r"token word|empty part|unknown escape"):
        decode_token(word)


def test_parse_tokens_reads_a_field_back() -> None:
    assert parse_tokens(";34xcus;annzaacmezdioxmql;") == [("34", "cus"), ("ann@acme.io", "mql")]
    assert parse_tokens(None) == []
    with pytest.raises(ValueError, match="not a token list"):
        parse_tokens("34xcus")


def test_readable_tokens_shows_a_token_list_and_leaves_other_values_alone() -> None:
    assert readable_tokens(";zxyzzxpro;acmexcus;") == ["xyz:pro", "acme:cus"]
    for other in ("Acme Inc", ";;", "a;b;", None, 34, ";not a token;"):
        assert readable_tokens(other) is None


def _reference_encode(part: str, case_insensitive: bool) -> str:
    """The encoding as the module docstring states it, one regex callback per character."""
    if case_insensitive:
        part = part.lower()
    part = BLANK_RUN.sub(" ", part).strip()
    if not part:
        return "ze"
    special = re.compile(r"[^0-9a-wy]" if case_insensitive else r"[^0-9A-Za-wy]")

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        code = ESCAPES.get(char)
        return "z" + code if code is not None else f"z{ord(char)}z"

    return special.sub(escape, part)


@settings(deadline=None, max_examples=500)
@given(
    st.text(max_size=12)
    | st.text(alphabet="aAxXzZ09@:.-+_ \t\n\x85\xa0é!;#٣Ⅻ", max_size=12)
    | st.emails(),
    st.booleans(),
)
def test_the_encoder_shortcuts_give_the_documented_encoding(part: str, ci: bool) -> None:
    # The shortcuts: no blank-run regex on printable text, mnemonic escapes by str.replace.
    assert _encode(part, ci) == _reference_encode(part, ci)


@pytest.mark.parametrize("char", sorted(ESCAPES))
def test_every_mnemonic_escape_is_applied(char: str) -> None:
    assert _encode(f"a{char}b{char}c", True) == f"az{ESCAPES[char]}bz{ESCAPES[char]}c"
