"""Token lists: multi-value fields a marketer filters exactly with a *contains* operator.

A token list is ``;word;word;`` — the delimiter ``;`` on both ends and between tokens — where
every token is **one word of ASCII letters and digits**. A token's parts are joined by the
letter ``x``; anything else is escaped with the letter ``z``::

    Token(("34", "CUS"))                 ->  34xcus
    Token(("ann@acme.io", "MQL"))        ->  annzaacmezdioxmql
    ["34", "110"]                        ->  ;34;110;

Escapes (``z`` followed by a code; the code table is :data:`ESCAPES`)::

    x -> zx    z -> zz    @ -> za    : -> zc    . -> zd    - -> zh    + -> zp
    space -> zs    _ -> zu    an empty part -> ze    any other character -> z<decimal code>z
                                                     (e.g. é -> z233z, ; -> z59z)

Why this grammar: CRMs run *contains* two ways, and a filter must be exact under both.

* **Substring** (Salesforce reports and list views; maybe HubSpot lists): the query
  ``;34xcus;`` is a substring of a field exactly when the field holds that token, because ``;``
  never occurs inside a token, so a match must run from one delimiter to the next.
* **Word** (HubSpot search ``CONTAINS_TOKEN``: the field is split into words on
  non-alphanumerics): the query ``34xcus`` is one word, and the field's words are exactly its
  tokens, because a token has no non-alphanumeric character. A readable ``34:cus`` would split
  into ``34`` and ``cus`` and match ``;34:mql;110:cus;`` too — that is why the separator is a
  letter.

The encoding is injective (a prefix code, read left to right), so different tokens never share a
word; being a prefix code also makes ``;34x`` an exact substring query for "every token whose
first part is 34". Output is pure ASCII, so a budget in characters is also one in bytes, and
case-insensitive matching cannot merge two tokens: on case-insensitive fields (the default) the
parts are lowercased first, so the output has no capital letters at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, NamedTuple

DELIMITER = ";"
SEPARATOR = "x"  # joins the parts of one token: a letter, so a token stays one word
#: Joins a token's encoded parts in the tables :func:`token_texts` orders: it sorts below every
#: character an encoded part holds, so the joined keys sort as the parts' tuples do ("a" before
#: "ab"), and it becomes SEPARATOR in the text.
PART_MARK = "\x00"
ESCAPE = "z"
EMPTY_PART = "ze"

#: Characters with a short, mnemonic escape code (``z`` + code). Every other character outside
#: the plain alphabet is written ``z<decimal code point>z``.
ESCAPES: dict[str, str] = {
    "x": "x", "z": "z", "@": "a", ":": "c", ".": "d", "-": "h", "+": "p", " ": "s", "_": "u"
}  # fmt: skip
_UNESCAPES = {code: char for char, code in ESCAPES.items()}

MatchRule = Literal["substring", "word"]

# Plain characters stand for themselves: ASCII digits and letters except the separator and the
# escape letter (and, on case-insensitive fields, except capitals, which are lowercased first).
_PLAIN_CI = re.compile(r"[0-9a-wy]+").fullmatch
_PLAIN_CS = re.compile(r"[0-9A-Za-wy]+").fullmatch
_SPECIAL_CI = re.compile(r"[^0-9a-wy]")
_SPECIAL_CS = re.compile(r"[^0-9A-Za-wy]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
# Whitespace and control characters collapse to one space (then escaped as ``zs``).
BLANK_RUN = re.compile(r"[\s\x00-\x1f\x7f-\x9f]+")
_WORD = re.compile(r"[0-9A-Za-z]+").fullmatch


class InvalidValue(ValueError):
    """A value the formatter cannot format; :func:`syncer.fields.format_field` turns it into
    :class:`syncer.errors.RecordRejected` naming the record and field."""


@dataclass(frozen=True, slots=True)
class Token:
    """One value of a multi-value field, e.g. ``Token(("34", "CUS"), priority=3)``.

    ``parts`` are joined by the formatter with the component separator after escaping each part
    (so templates never deal with escaping). Order in the output: higher ``priority`` first, then
    ``parts`` ascending; when a budget is exceeded the lowest-priority tokens are dropped whole.
    """

    parts: tuple[str, ...]
    priority: int = 0


class TokenList(NamedTuple):
    """A formatted token list: the field text (``None`` when no token is shown), the true number
    of distinct tokens, and whether some were dropped to fit the budget."""

    text: str | None
    total: int
    truncated: bool


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    code = ESCAPES.get(char)
    return ESCAPE + code if code is not None else f"{ESCAPE}{ord(char)}{ESCAPE}"


def part_text(value: object) -> str:
    """The text of a token part: a string, or an integer (never a bool, float or None)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidValue(
        f"a token part must be text, got {type(value).__name__} {show_value(value)}; "
        "check the template that builds this field's tokens"
    )


def encode_part(part: str, case_insensitive: bool = True) -> str:
    """One token part as written in the field: lowercased (on case-insensitive fields),
    whitespace and control runs collapsed to one space and trimmed, then escaped."""
    memo = _MEMO_CI if case_insensitive else _MEMO_CS
    word = memo.get(part)
    if word is None:
        word = _encode(part, case_insensitive)
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        memo[part] = word
    return word


def word_memo(case_insensitive: bool = True) -> dict[str, str]:
    """:func:`encode_part`'s memo (part → word), for loops that look words up themselves."""
    return _MEMO_CI if case_insensitive else _MEMO_CS


# Memos of encode_part, one per case mode. The same ids, stage names and emails recur across
# millions of records, and a dict hit costs a tenth of a regex check; clearing when full keeps
# memory flat. Only ``str`` keys go in (True == 1 must never find "1"'s entry).
_MEMO_CI: dict[str, str] = {}
_MEMO_CS: dict[str, str] = {}
_MEMO_LIMIT = 1 << 16


def _escape_table(case_insensitive: bool) -> dict[int, str]:
    """``str.translate`` table escaping every ASCII character that is not plain."""
    special = _SPECIAL_CI if case_insensitive else _SPECIAL_CS
    return {i: _escape_char(m) for i in range(128) if (m := special.match(chr(i))) is not None}


# Escaping ASCII through one C-level translate instead of a regex callback per character halves
# the cost of an email part (the common escaped value); non-ASCII text still takes the regex.
_TABLE_CI = _escape_table(True)
_TABLE_CS = _escape_table(False)


def _encode(part: str, case_insensitive: bool) -> str:
    text = part.lower() if case_insensitive else part
    # Letters and digits (ids, mostly) are plain but for x and z: two C checks, not a regex.
    if part.isalnum() and part.isascii() and "x" not in text and "z" not in text:
        return text
    plain = _PLAIN_CI if case_insensitive else _PLAIN_CS
    # Printable text has no blank but " " (test_mapping_writers checks every code point): with
    # no double space, collapsing blank runs would change nothing.
    if text.isprintable() and "  " not in text:
        text = text.strip()
    else:
        text = BLANK_RUN.sub(" ", text).strip()
    if not text:
        return EMPTY_PART
    if text != part and plain(text):  # unchanged text is not plain: checked above
        return text
    if text.isascii():
        # Emails and names mostly need mnemonic escapes only: a third of translate's cost.
        escaped = _escape_mnemonic(text)
        if escaped.isalnum():  # nothing left to escape (isalnum is ASCII-only here)
            return escaped
    escaped = text.translate(_TABLE_CI if case_insensitive else _TABLE_CS)
    if escaped.isascii():
        return escaped
    return _NON_ASCII.sub(_escape_char, escaped)


def _escape_mnemonic(text: str) -> str:
    """:data:`ESCAPES` applied, the escape letter first (no later one is in a code)."""
    return (
        text.replace("z", "zz")
        .replace("x", "zx")
        .replace("@", "za")
        .replace(":", "zc")
        .replace(".", "zd")
        .replace("-", "zh")
        .replace("+", "zp")
        .replace(" ", "zs")
        .replace("_", "zu")
    )


def _encode_parts(parts: object, case_insensitive: bool) -> tuple[str, ...]:
    """The checked, slow path for a token's parts (a miss, a non-str part, a bad value)."""
    if not isinstance(parts, tuple | list):
        raise InvalidValue(
            f"a token's parts must be a tuple of texts, got {type(parts).__name__} "
            f"{show_value(parts)}"
        )
    if not parts:
        raise InvalidValue("a token needs at least one part, got Token(parts=())")
    return tuple([encode_part(part_text(p), case_insensitive) for p in parts])


def encode_token(token: Token | str, case_insensitive: bool = True) -> str:
    """A token as the one word written in the field (without delimiters)."""
    if isinstance(token, str):
        return encode_part(token, case_insensitive)
    return SEPARATOR.join(_encode_parts(token.parts, case_insensitive))


def format_tokens(
    tokens: Iterable[Token | str], *, max_length: int | None = None, case_insensitive: bool = True
) -> TokenList:
    """Format tokens as ``;a;b;``: deduplicated, ordered by priority (highest first) then parts
    (as written, in code-point order), and cut to ``max_length`` characters by dropping whole
    tokens from the end (the lowest priority; among equals, the last in order).

    Plain strings are one-part tokens with priority 0. Duplicates (after lowercasing and
    whitespace collapsing) keep their highest priority. No token at all, or none fitting the
    budget, gives ``text=None`` (the field is cleared).
    """
    # This loop runs for every token of every record of a plan: memo lookups through C-level
    # map(), exact type checks first, the checked slow path only on a miss.
    recall = (_MEMO_CI if case_insensitive else _MEMO_CS).get
    ci = case_insensitive
    best: dict[str, int] = {}  # encoded parts, joined by PART_MARK -> highest priority
    for token in tokens:
        if type(token) is str:
            word = recall(token)
            parts: tuple[str | None, ...] = (
                word if word is not None else encode_part(token, case_insensitive),
            )
            priority = 0
        elif isinstance(token, Token):
            raw = token.parts
            if type(raw) is tuple and raw:
                try:
                    parts = tuple(map(recall, raw))
                except TypeError:  # an unhashable part: the slow path says what is wrong
                    parts = _encode_parts(raw, case_insensitive)
                else:
                    if None in parts:  # encode (and check) only the parts the memo missed
                        parts = tuple(
                            [
                                word if word is not None else encode_part(part_text(p), ci)
                                for word, p in zip(parts, raw, strict=True)
                            ]
                        )
            else:
                parts = _encode_parts(raw, case_insensitive)
            priority = token.priority
        elif isinstance(token, str):
            parts = (encode_part(token, case_insensitive),)
            priority = 0
        else:
            raise InvalidValue(
                f"a token must be a Token or a string, got {type(token).__name__} "
                f"{show_value(token)}; check the template that builds this field's tokens"
            )
        key = PART_MARK.join(parts)  # type: ignore[arg-type]  # no None is left in parts here
        seen = best.get(key)
        if seen is None or priority > seen:
            best[key] = priority
    return TokenList(*token_texts(best, max_length))


def token_texts(best: dict[str, int], max_length: int | None) -> tuple[str | None, int, bool]:
    """The (text, total, truncated) of ``best`` (each token's key: its encoded parts joined by
    :data:`PART_MARK`, which sorts as the parts do, → its highest priority, as
    :func:`format_tokens` and the mapping's fused token fields collect it): ordered, joined and
    cut to ``max_length``."""
    count = len(best)
    if count < 2:
        if not count:
            return None, 0, False
        # One token (the common case of a user with one account): nothing to order.
        text = (DELIMITER + next(iter(best)) + DELIMITER).replace(PART_MARK, SEPARATOR)
        if max_length is not None and len(text) > max_length:
            return None, 1, True
        return text, 1, False
    # Two C-level sorts instead of (-priority, parts) tuples built and compared in Python: by
    # key, then by priority, highest first (a sort keeps equals in order, reversed or not).
    ordered = sorted(best)
    ordered.sort(key=best.__getitem__, reverse=True)
    text = DELIMITER + DELIMITER.join(ordered) + DELIMITER
    if max_length is None or len(text) <= max_length:
        return text.replace(PART_MARK, SEPARATOR), count, False
    used = 1  # the leading delimiter
    kept = 0
    for key in ordered:
        used += len(key) + 1
        if used > max_length:
            break
        kept += 1
    if kept == 0:
        return None, count, True
    text = DELIMITER + DELIMITER.join(ordered[:kept]) + DELIMITER
    return text.replace(PART_MARK, SEPARATOR), count, True


def contains_query(
    token: Token | str,
    rule: MatchRule,
    *,
    prefix: bool = False,
    case_insensitive: bool = True,
) -> str:
    """Exactly what a marketer types in a *contains* filter to find the records holding ``token``.

    ``rule="substring"`` (Salesforce reports/list views, HubSpot list filters if they match
    substrings): ``;34xcus;``. ``rule="word"`` (HubSpot search ``CONTAINS_TOKEN``): ``34xcus``.
    With ``prefix=True`` the token's parts are the *leading* parts, and the query finds every
    token that starts with them and has more parts (``Token(("34",))`` → ``;34x``: account 34 at
    any stage). A prefix cannot be one word, so ``prefix=True`` with ``rule="word"`` raises
    ``ValueError``: filter a single-part field (e.g. ``syncer_account_ids``) instead.
    """
    word = encode_token(token, case_insensitive)
    if rule == "substring":
        return DELIMITER + word + (SEPARATOR if prefix else DELIMITER)
    if rule == "word":
        if prefix:
            raise ValueError(
                "a prefix query is not one word, so word matching cannot express it; filter a "
                "single-part token field (e.g. syncer_account_ids) with the whole value instead"
            )
        return word
    raise ValueError(f"unknown match rule {rule!r}; use 'substring' or 'word'")


def decode_token(word: str) -> tuple[str, ...]:
    """The parts of one encoded token (the inverse of :func:`encode_token` after
    normalisation). Raises ``ValueError`` on text the encoder never produces."""
    units = _UNITS(word) if _WORD(word) else []
    if "".join(units) != word or not word:
        raise ValueError(f"not a token word: {word!r}")
    parts: list[str] = []
    for chunk in _split_parts(units):
        if chunk == [EMPTY_PART]:
            parts.append("")
            continue
        if not chunk or EMPTY_PART in chunk:
            raise ValueError(f"an empty part must be written {EMPTY_PART!r}, alone: {word!r}")
        text = []
        for unit in chunk:
            if len(unit) == 1:
                text.append(unit)
            elif unit[1].isdigit() and int(unit[1:-1]) <= 0x10FFFF:
                text.append(chr(int(unit[1:-1])))
            elif unit[1] in _UNESCAPES:
                text.append(_UNESCAPES[unit[1]])
            else:
                raise ValueError(f"unknown escape {unit!r} in {word!r}")
        parts.append("".join(text))
    return tuple(parts)


# One unit of the code: a numeric escape, a letter escape, or one plain character (or separator).
_UNITS = re.compile(r"z[1-9][0-9]*z|z[a-z]|[^z]").findall


def _split_parts(units: list[str]) -> list[list[str]]:
    chunks: list[list[str]] = [[]]
    for unit in units:
        if unit == SEPARATOR:
            chunks.append([])
        else:
            chunks[-1].append(unit)
    return chunks


def parse_tokens(text: str | None) -> list[tuple[str, ...]]:
    """The tokens of a formatted field, in field order, decoded into parts."""
    if not text:
        return []
    if not (text.startswith(DELIMITER) and text.endswith(DELIMITER)) or len(text) < 3:
        raise ValueError(f"not a token list: {text!r}")
    return [decode_token(word) for word in text[1:-1].split(DELIMITER)]


def readable_tokens(text: object) -> list[str] | None:
    """A token list's tokens for a person to read, parts joined by ``:``
    (``;zxyzzxpro;acmexcus;`` → ``["xyz:pro", "acme:cus"]``); ``None`` when ``text`` is not a
    token list (any other field value), so a caller shows it as it is."""
    if not isinstance(text, str) or len(text) < 3:
        return None
    try:
        return [":".join(parts) for parts in parse_tokens(text)]
    except ValueError:
        return None


def show_value(value: object, limit: int = 80) -> str:
    """A short ``repr`` of a value for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
