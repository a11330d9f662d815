"""YAML with line numbers, and pydantic validation that reports every error at its line.

Configuration errors must say *where*: ``syncer.yaml:14: destinations.hubspot.settings:
unknown key 'hots'``. PyYAML's constructed values forget their position, so :func:`load_yaml`
walks the composed node tree itself and records the line of every key and item by its path;
:func:`validate` runs a pydantic model over the data and maps each error's ``loc`` back to the
nearest recorded line. Everything wrong is reported at once, in one :class:`ConfigError`.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from syncer.errors import ConfigError, Problem

Loc = tuple[str | int, ...]
ModelT = TypeVar("ModelT", bound=BaseModel)

# The C loader composes nodes with marks too, and is several times faster on big files.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class YamlDoc:
    """A parsed YAML file: plain Python data plus the line of every node, by path."""

    data: Any
    file: str
    lines: Mapping[Loc, int] = field(default_factory=dict)
    # Block scalars (``|``, ``>``) start on the line after their indicator; templates need that
    # to point at the right line inside the text.
    block_scalars: frozenset[Loc] = frozenset()

    def line_of(self, loc: Iterable[str | int]) -> int | None:
        """The line of ``loc``, or of its nearest recorded ancestor (a missing key's parent)."""
        path = tuple(loc)
        while path:
            line = self.lines.get(path)
            if line is not None:
                return line
            path = path[:-1]
        return self.lines.get(())

    def text_line_of(self, loc: Loc) -> int | None:
        """The line where the *text* of the scalar at ``loc`` begins."""
        line = self.line_of(loc)
        if line is not None and loc in self.block_scalars:
            return line + 1
        return line


def load_yaml(path: str | Path) -> YamlDoc:
    """Parse ``path`` into a :class:`YamlDoc`. Syntax errors and duplicate keys are ConfigErrors
    with the line."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(Problem(f"file not found: {file}", file=file)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(Problem(f"cannot read {file}: {exc}", file=file)) from None
    return parse_yaml(text, file)


def parse_yaml(text: str, file: str) -> YamlDoc:
    """Parse YAML ``text`` that came from ``file`` (used in messages)."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(
            Problem(
                f"invalid YAML: {_yaml_words(exc)}",
                file=file,
                line=line,
                hint="Fix the syntax there (indentation, quotes, brackets).",
            )
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(Problem(f"invalid YAML: {exc}", file=file)) from None
    finally:
        loader.dispose()
    if root is None:
        return YamlDoc(data=None, file=file)
    builder = _Builder(loader, file)
    data = builder.build(root, ())
    if builder.problems:
        raise ConfigError(builder.problems)
    return YamlDoc(
        data=data, file=file, lines=builder.lines, block_scalars=frozenset(builder.blocks)
    )


def _yaml_words(exc: yaml.MarkedYAMLError) -> str:
    """PyYAML's complaint, said with the line where the unfinished construct began."""
    problem = exc.problem or str(exc)
    context = exc.context or ""
    began = exc.context_mark.line + 1 if exc.context_mark is not None else None
    if began is None:
        return problem
    if "flow mapping" in context or "flow sequence" in context:
        brackets = "{}" if "mapping" in context else "[]"
        return (
            f"the {brackets[0]!r} on line {began} is not closed with {brackets[1]!r} "
            f"(or a ',' is missing between its items)"
        )
    if "block mapping" in context and "expected key" in problem:
        return "the indentation does not line up with the keys above it"
    if "quoted scalar" in context:
        return f"the quote opened on line {began} is never closed"
    return f"{problem} ({context} that starts on line {began})"


class _Builder:
    """Turns composed nodes into dicts, lists and scalars, recording lines by path."""

    def __init__(self, loader: yaml.SafeLoader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.lines: dict[Loc, int] = {}
        self.blocks: set[Loc] = set()
        self.problems: list[Problem] = []

    def build(self, node: yaml.Node, path: Loc) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)  # resolves `<<` merge keys
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node, deep=True)
                if not isinstance(key, (str, int, float, bool)) or key is None:
                    self.problems.append(
                        Problem(
                            f"keys must be plain text, got {key!r}",
                            file=self.file,
                            line=key_node.start_mark.line + 1,
                        )
                    )
                    continue
                # A float key (``1.5: x``) is located by its text: a Loc holds str and int only.
                part: str | int = key if isinstance(key, str | int) else str(key)
                if key in out:
                    self.problems.append(
                        Problem(
                            f"duplicate key {key!r} (first at line {self.lines[(*path, part)]})",
                            file=self.file,
                            line=key_node.start_mark.line + 1,
                            hint="Remove one of them.",
                        )
                    )
                    continue
                self.lines[(*path, part)] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, (*path, part))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
            self.blocks.add(path)
        return self.loader.construct_object(node, deep=True)


# --- pydantic errors, located ---------------------------------------------------------------------


def validate(model: type[ModelT], doc: YamlDoc, *, context: dict[str, Any] | None = None) -> ModelT:
    """Validate ``doc.data`` with ``model``; raise one ConfigError with every error located."""
    try:
        return model.model_validate(doc.data if doc.data is not None else {}, context=context)
    except ValidationError as exc:
        raise ConfigError(located_problems(exc, model, doc), summary=_summary(doc.file)) from None


def _summary(file: str) -> str:
    return f"{file} has errors"


def located_problems(
    exc: ValidationError, model: type[BaseModel], doc: YamlDoc, prefix: Loc = ()
) -> list[Problem]:
    """One Problem per mistake in ``exc``, in plain words, with the line of its ``loc`` (under
    ``prefix``). A misspelt key is one mistake: its "missing required key" twin is dropped."""
    errors = exc.errors(include_url=False)
    problems = []
    misspelt: set[Loc] = set()  # (parent..., known key) that an unknown key stands for
    for err in errors:
        if err["type"] == "extra_forbidden":
            loc = tuple(err["loc"])
            known = _known_keys(model, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            if close:
                misspelt.add((*_keys(loc[:-1]), close[0]))
    for err in errors:
        loc = tuple(err["loc"])
        path = (*prefix, *_keys(loc))
        where = ".".join(str(p) for p in path)
        if err["type"] == "extra_forbidden":
            known = _known_keys(model, loc[:-1])
            unknown = str(loc[-1])
            close = difflib.get_close_matches(unknown, known, n=1)
            hint = f"Did you mean {close[0]!r}?" if close else None
            if known:
                hint = (hint + " " if hint else "") + f"Known keys: {', '.join(known)}."
            parent = ".".join(str(p) for p in path[:-1]) or "top level"
            problems.append(
                Problem(
                    f"{parent}: unknown key {unknown!r}",
                    file=doc.file,
                    line=doc.line_of(path),
                    hint=hint,
                )
            )
            continue
        if err["type"] == "missing":
            if _keys(loc) in misspelt:
                continue
            msg = f"missing required key {str(loc[-1])!r}"
            where = ".".join(str(p) for p in path[:-1]) or "top level"
        else:
            msg = plain_words(err)
        problems.append(
            Problem(f"{where}: {msg}" if where else msg, file=doc.file, line=doc.line_of(path))
        )
    return problems


def _keys(loc: Loc) -> Loc:
    return tuple(p for p in loc if not _is_pydantic_tag(p))


# pydantic error types → what the value must be, in the file's terms.
_MUST_BE = {
    "string_type": "must be text",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "dict_type": "must be a mapping (key: value lines)",
    "model_type": "must be a mapping (key: value lines)",
    "model_attributes_type": "must be a mapping (key: value lines)",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "path_type": "must be a file path",
}


_KIND_OF = {
    "str": "text",
    "int": "a number",
    "float": "a number",
    "bool": "true/false",
    "list": "a list",
    "dict": "a mapping",
}


def plain_words(err: Any) -> str:
    """A pydantic error as a sentence about the file: what the value must be (and the wrong
    value itself only where it is a choice among words, never a possible secret)."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    given = err.get("input")
    shown = repr(given) if isinstance(given, str | int | float | bool) else None
    if kind in _MUST_BE:
        got = _KIND_OF.get(type(given).__name__, type(given).__name__)
        return _MUST_BE[kind] + (f", not {got}" if given is not None else "")
    if kind in ("literal_error", "enum"):
        expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"{shown} is not one of: {expected}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}"
    if kind == "greater_than":
        return f"must be more than {ctx.get('gt')}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}"
    if kind == "less_than":
        return f"must be less than {ctx.get('lt')}"
    if kind == "string_too_short":
        least = ctx.get("min_length", 1)
        return "must not be empty" if least == 1 else f"must be at least {least} characters"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind in ("too_short", "too_long"):
        return err["msg"].replace("List should have", "must have").replace("Input", "it")
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        return "is not in the accepted form"
    return str(err["msg"]).replace("Input should be", "must be")


def _is_pydantic_tag(part: str | int) -> bool:
    # Unions and function validators add loc entries such as 'function-after[...]' or
    # 'literal[...]'; they are not keys of the file.
    return isinstance(part, str) and "[" in part and part.endswith("]")


def _known_keys(model: type[BaseModel], loc: Loc) -> list[str]:
    """The keys the model accepts at ``loc`` (for "did you mean" hints)."""
    current: Any = model
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [
            info.alias or name
            for name, info in current.model_fields.items()
            if not name.startswith("_")
        ]
    return []


def _step(tp: Any, part: str | int) -> Any:
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        info = tp.model_fields.get(str(part))
        if info is None:
            for name, candidate in tp.model_fields.items():
                if candidate.alias == part:
                    info = tp.model_fields[name]
        return info.annotation if info is not None else None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (dict, Mapping) and len(args) == 2:
        return args[1]
    if origin in (list, tuple) and args:
        return args[0]
    return None


def _unwrap(tp: Any) -> Any:
    """Strip Optional and Annotated so the model inside is visible."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp
