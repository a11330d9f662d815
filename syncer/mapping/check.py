"""Checking one mapping value at load, and saying what is wrong with it in plain words.

A value is checked in this order, and only the first failing step is reported (one problem per
real mistake, never a second one caused by the first): brackets and quotes balance; Jinja can
read it; every filter exists; every name is one the view has; it evaluates on a sample view;
no attribute is misspelt in a branch the sample does not take (the edge views).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from jinja2 import TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from syncer import model
from syncer.mapping.compile import Evaluator, compile_value, is_template, parse_value
from syncer.mapping.filters import OUR_FILTERS

_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = {v: k for k, v in _OPEN.items()}


class ValueProblem(Exception):
    """What is wrong with one value, in words for the user, with a hint when there is one."""

    def __init__(self, message: str, hint: str | None = None, *, line: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.line = line  # the line inside the value (templates may span lines)


def check_value(
    text: str,
    env: SandboxedEnvironment,
    *,
    allowed: Collection[str],
    sample: Mapping[str, Any],
    edges: Sequence[tuple[str, Mapping[str, Any]]],
) -> Evaluator:
    """The compiled ``text``, once it passed every check; else :class:`ValueProblem`."""
    unbalanced = balance_problem(text)
    if unbalanced is not None:
        raise ValueProblem(unbalanced[0], line=unbalanced[1])
    try:
        tree = parse_value(text, env)
    except TemplateSyntaxError as exc:
        raise ValueProblem(syntax_words(exc, text), line=exc.lineno or 1) from None
    filters = f"syncer's filters: {', '.join(OUR_FILTERS)}; Jinja's own are in docs/mappings.md"
    for node in tree.find_all(nodes.Filter):
        if node.name not in env.filters:
            raise ValueProblem(
                f"unknown filter {node.name!r}", _suggest(node.name, env.filters, filters)
            )
    for test in tree.find_all(nodes.Test):
        if test.name not in env.tests:
            tests = f"tests: {', '.join(sorted(env.tests))}"
            raise ValueProblem(f"unknown test {test.name!r}", _suggest(test.name, env.tests, tests))
    unknown = sorted(meta.find_undeclared_variables(tree) - set(allowed))
    if unknown:
        raise ValueProblem(
            f"unknown name {', '.join(map(repr, unknown))}",
            _suggest_name(unknown[0], sample, allowed),
        )
    evaluate = compile_value(text, env)
    try:
        evaluate(sample)
    except Exception as exc:  # an unknown attribute, a filter misuse, ...
        raise ValueProblem(*_runtime_words(exc, "on a sample record")) from None
    # The full sample takes one side of every branch; the edge views (churned, no primary, no
    # members) take the other. There only a misspelt attribute is a load error: a lookup on a
    # missing value (`primary.x` without a guard) depends on the data and rejects that record.
    for edge, ctx in edges:
        try:
            evaluate(ctx)
        except Exception as exc:
            if _misspelt(exc) is not None:
                raise ValueProblem(*_runtime_words(exc, f"on a {edge}")) from None
    return evaluate


# --- brackets, quotes, delimiters ---------------------------------------------------------------


def balance_problem(text: str) -> tuple[str, int] | None:
    """What is unbalanced in ``text`` (brackets, quotes, ``{{ }}``/``{% %}``) and the line of
    ``text`` it is on, or None.

    Jinja reports these late and in its own terms (``unexpected '}'``); this names the bracket
    and its column as the user wrote them.
    """
    found = _unbalanced(text)
    if found is None:
        return None
    message, positions = found
    for i, pos in enumerate(positions):
        message = message.replace(f"@{i}", _column(text, pos))
    return message, text.count("\n", 0, positions[0]) + 1


def _column(text: str, pos: int) -> str:
    return f"column {pos - (text.rfind(chr(10), 0, pos) + 1) + 1}"


def _unbalanced(text: str) -> tuple[str, list[int]] | None:
    """A message with ``@0``, ``@1`` standing for the columns of the positions that follow."""
    if not is_template(text):
        return _balance_expression(text, 0, len(text), "the expression")
    i = 0
    while True:
        start = text.find("{", i)
        while start != -1 and text[start + 1 : start + 2] not in ("{", "%"):
            start = text.find("{", start + 1)
        if start == -1:
            return None
        opener = text[start : start + 2]
        closer = "}}" if opener == "{{" else "%}"
        end = _find_closer(text, start + 2, closer)
        if end == -1:
            single = text.find("}", start + 2) if opener == "{{" else -1
            if single != -1:
                message = "the '{{' at @0 is closed by a single '}' at @1: write '}}'"
                return message, [start, single]
            return f"the {opener!r} at @0 is never closed with {closer!r}", [start]
        problem = _balance_expression(text, start + 2, end, f"the {opener} ... {closer} block")
        if problem is not None:
            return problem
        i = end + 2


def _find_closer(text: str, start: int, closer: str) -> int:
    """Where ``closer`` ends the block opened before ``start``, skipping quoted text."""
    quote = None
    i = start
    while i < len(text):
        c = text[i]
        if quote is not None:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif text.startswith(closer, i):
            return i
        i += 1
    return -1


def _balance_expression(text: str, start: int, end: int, what: str) -> tuple[str, list[int]] | None:
    stack: list[tuple[str, int]] = []
    i = start
    while i < end:
        c = text[i]
        if c in "'\"":
            close = i + 1
            while close < end and text[close] != c:
                close += 2 if text[close] == "\\" else 1
            if close >= end:
                return f"the quote {c} at @0 is never closed: {what} is unbalanced", [i]
            i = close
        elif c in _OPEN:
            stack.append((c, i))
        elif c in _CLOSE:
            if not stack:
                return f"{c!r} at @0 closes nothing: {what} is unbalanced", [i]
            opener, at = stack.pop()
            if _OPEN[opener] != c:
                return f"{opener!r} at @0 is closed by {c!r} at @1: {what} is unbalanced", [at, i]
        i += 1
    if stack:
        opener, at = stack[-1]
        return f"{opener!r} at @0 is never closed (add {_OPEN[opener]!r}): {what} is unbalanced", [
            at
        ]
    return None


# --- Jinja's messages in plain words ------------------------------------------------------------

_BLOCK = re.compile(r"innermost block that needs to be closed is '(\w+)'")
_CHAR = re.compile(r"unexpected char (.+) at (\d+)")


def syntax_words(exc: TemplateSyntaxError, text: str) -> str:
    """A Jinja syntax error said for a mapping author."""
    message = exc.message or str(exc)
    block = _BLOCK.search(message)
    if block is not None:
        name = block.group(1)
        return f"the '{{% {name} %}}' block is never closed: add '{{% end{name} %}}'"
    char = _CHAR.search(message)
    if char is not None:
        return f"the character {char.group(1)} at column {int(char.group(2)) + 1} is not allowed"
    if "end of template" in message.lower() or "end of print statement" in message:
        last = text.rstrip()[-1:] if not is_template(text) else ""
        after = f" after {last!r}" if last else ""
        return f"it ends too early: something is missing{after}"
    if message == "chunk after expression":
        return (
            "two expressions side by side: join them with an operator or a filter ('|'), "
            "or write a template with {{ }}"
        )
    if message.startswith("expected token 'name'"):
        return "a name must follow '|' or '.' here"
    return f"Jinja cannot read it: {message}"


def _misspelt(exc: BaseException) -> tuple[str, str] | None:
    """``(type name, attribute)`` when ``exc`` says an existing object lacks an attribute
    (not a lookup on nothing: ``primary.x`` where primary is empty depends on the data)."""
    if not isinstance(exc, AttributeError | UndefinedError):
        return None
    text = str(exc)
    found = re.search(r"^'?(?:[\w.]+\.)?(\w+)(?: object)?'? has no attribute '(\w+)'", text)
    if found is None or found.group(1) in ("None", "NoneType"):
        return None
    return found.group(1), found.group(2)


def _runtime_words(exc: BaseException, where: str) -> tuple[str, str | None]:
    """A failure on a sample view: a misspelt attribute with what the record has, else the
    error's own words."""
    missing = _misspelt(exc)
    if missing is not None:
        type_name, attr = missing
        record = getattr(model, type_name, None)
        if dataclasses.is_dataclass(record):
            names = [f.name for f in dataclasses.fields(record) if not f.name.startswith("_")]
            return (
                f"{type_name} has no attribute {attr!r}",
                _suggest(attr, names, f"{type_name} has: {', '.join(names)}"),
            )
        return f"{type_name} has no attribute {attr!r}", None
    return f"fails {where}: {exc}", None


def _suggest(name: str, known: Collection[str], listed: str) -> str:
    """ "Did you mean ...?" when a known name is close, then ``listed`` (what there is)."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"Did you mean {close[0]!r}? ({listed})" if close else listed[0].upper() + listed[1:]


def _suggest_name(name: str, sample: Mapping[str, Any], allowed: Collection[str]) -> str:
    """A close name of the view, or a record's attribute (``lastname`` → ``user.last_name``)."""
    listed = f"this view has: {', '.join(sorted(allowed))}"
    paths = {
        f"{var}.{f.name}": f.name
        for var in sorted(allowed)
        if dataclasses.is_dataclass(value := sample.get(var)) and not isinstance(value, type)
        for f in dataclasses.fields(value)
        if not f.name.startswith("_")
    }
    squashed = name.replace("_", "").lower()
    for path, attr in paths.items():
        if attr.replace("_", "").lower() == squashed:
            return f"Did you mean {path!r}? ({listed})"
    return _suggest(name, allowed, listed)
