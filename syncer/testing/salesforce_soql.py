"""The SOQL subset the Salesforce emulator answers.

    SELECT COUNT() | field, ... FROM Object
      [WHERE cond [AND cond ...]]  cond: field (= | != | <> | LIKE) value | field [NOT] IN (v, ...)
      [ORDER BY field [ASC | DESC]] [LIMIT n]

Values are 'quoted strings' (backslash escapes), numbers, true, false or null. As in Salesforce,
``=`` and LIKE compare text case-insensitively and LIKE knows ``%`` and ``_``. Anything else
(OR, parentheses, relationship paths, functions) answers MALFORMED_QUERY, so a test never
mistakes an unsupported query for an empty result.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from syncer.testing.salesforce_schema import ObjectDef, SalesforceApiError

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>!=|<>|=|\(|\)|,)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)
_UNSUPPORTED_FIELD = (
    "If you are attempting to use a custom field, be sure to append the '__c' after the custom "
    "field name. Please reference your WSDL or the describe call for the appropriate names."
)


@dataclass(frozen=True)
class Condition:
    """``field op value(s)``; ``op`` is one of = != LIKE IN NOTIN."""

    field: str
    op: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Query:
    """A parsed query; ``fields`` is ``None`` for ``SELECT COUNT()``."""

    object: str
    fields: tuple[str, ...] | None
    where: tuple[Condition, ...]
    order_by: tuple[str, bool] | None  # (field, descending)
    limit: int | None


def _malformed(message: str) -> SalesforceApiError:
    return SalesforceApiError(400, "MALFORMED_QUERY", message)


class _Tokens:
    def __init__(self, soql: str) -> None:
        self.items: list[tuple[str, str]] = []
        pos, soql = 0, soql.strip()
        while pos < len(soql):
            match = _TOKEN.match(soql, pos)
            if match is None or match.end() == pos:
                raise _malformed(f"unexpected token: '{soql[pos:].split()[0]}'")
            kind = match.lastgroup or ""
            self.items.append((kind, match.group(kind)))
            pos = match.end()
        self.pos = 0

    def peek(self) -> str | None:
        return self.items[self.pos][1] if self.pos < len(self.items) else None

    def keyword(self, *words: str) -> bool:
        """Consume the next tokens if they are these keywords (case-insensitive)."""
        ahead = [t[1].upper() for t in self.items[self.pos : self.pos + len(words)]]
        if ahead == [w.upper() for w in words]:
            self.pos += len(words)
            return True
        return False

    def take(self, kind: str | None = None, text: str | None = None) -> str:
        token = self.items[self.pos] if self.pos < len(self.items) else None
        if token is None:
            raise _malformed("unexpected end of query")
        if (kind and token[0] != kind) or (text and token[1].upper() != text.upper()):
            raise _malformed(f"unexpected token: '{token[1]}'")
        self.pos += 1
        return token[1]

    def value(self) -> Any:
        kind, text = self.items[self.pos] if self.pos < len(self.items) else ("", "")
        self.pos += 1
        if kind == "str":
            return re.sub(r"\\(.)", r"\1", text[1:-1])
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "word" and text.lower() in ("null", "true", "false"):
            return {"null": None, "true": True, "false": False}[text.lower()]
        raise _malformed(f"unexpected token: '{text}'" if text else "unexpected end of query")


def parse(soql: str) -> Query:
    """Parse the supported subset or raise MALFORMED_QUERY."""
    tokens = _Tokens(soql)
    tokens.take("word", "SELECT")
    fields: tuple[str, ...] | None = None
    if not tokens.keyword("COUNT", "(", ")"):
        names = [tokens.take("word")]
        while tokens.peek() == ",":
            tokens.take()
            names.append(tokens.take("word"))
        fields = tuple(names)
    tokens.take("word", "FROM")
    obj = tokens.take("word")
    where: list[Condition] = []
    if tokens.keyword("WHERE"):
        where.append(_condition(tokens))
        while tokens.keyword("AND"):
            where.append(_condition(tokens))
    order_by = None
    if tokens.keyword("ORDER", "BY"):
        name = tokens.take("word")
        descending = tokens.keyword("DESC")
        if not descending:
            tokens.keyword("ASC")
        order_by = (name, descending)
    limit = None
    if tokens.keyword("LIMIT"):
        limit = int(tokens.take("num"))
    if tokens.peek() is not None:
        raise _malformed(f"unexpected token: '{tokens.peek()}'")
    return Query(obj, fields, tuple(where), order_by, limit)


def _condition(tokens: _Tokens) -> Condition:
    name = tokens.take("word")
    if tokens.keyword("NOT", "IN") or tokens.keyword("IN"):
        op = "NOTIN" if tokens.items[tokens.pos - 2][1].upper() == "NOT" else "IN"
        tokens.take("op", "(")
        values = [tokens.value()]
        while tokens.peek() == ",":
            tokens.take()
            values.append(tokens.value())
        tokens.take("op", ")")
        return Condition(name, op, tuple(values))
    if tokens.keyword("LIKE"):
        return Condition(name, "LIKE", (tokens.value(),))
    op = tokens.take("op")
    if op not in ("=", "!=", "<>"):
        raise _malformed(f"unexpected token: '{op}'")
    return Condition(name, "!=" if op == "<>" else "=", (tokens.value(),))


def _fold(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _like(pattern: str) -> re.Pattern[str]:
    parts = (".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _check_field(obj: ObjectDef, name: str, *, filtering: bool = False) -> str:
    fdef = obj.get_field(name)
    if fdef is None:
        raise SalesforceApiError(
            400, "INVALID_FIELD", f"No such column '{name}' on entity '{obj.name}'. "
            + _UNSUPPORTED_FIELD
        )  # fmt: skip
    if filtering and not fdef.filterable:
        raise SalesforceApiError(
            400, "INVALID_FIELD", f"field '{fdef.name}' can not be filtered in a query call"
        )
    return fdef.name


def execute(
    query: Query, obj: ObjectDef, records: Iterable[dict[str, Any]]
) -> tuple[list[str], list[dict[str, Any]]]:
    """The selected field names and the records matching ``query``, in order, limited."""
    selected = [_check_field(obj, f) for f in query.fields or ("Id",)]
    checks = []
    for cond in query.where:
        name = _check_field(obj, cond.field, filtering=True)
        wanted = [_fold(v) for v in cond.values]
        pattern = _like(str(cond.values[0])) if cond.op == "LIKE" else None
        checks.append((name, cond.op, wanted, pattern))

    def keep(rec: dict[str, Any]) -> bool:
        for name, op, wanted, pattern in checks:
            have = _fold(rec.get(name))
            if op == "LIKE":
                ok = have is not None and pattern is not None and bool(pattern.fullmatch(str(have)))
            elif op in ("=", "IN"):
                ok = have in wanted
            else:
                ok = have not in wanted
            if not ok:
                return False
        return True

    rows = [rec for rec in records if keep(rec)]
    if query.order_by is not None:
        name, descending = _check_field(obj, query.order_by[0]), query.order_by[1]
        # Salesforce sorts nulls first ascending and last descending.
        rows.sort(key=lambda r: (r.get(name) is not None, _fold(r.get(name)) or ""))
        if descending:
            rows.reverse()
    if query.limit is not None:
        rows = rows[: query.limit]
    return selected, rows
