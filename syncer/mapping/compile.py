"""Compiling a mapping value into a callable over a view's context.

A value is a Jinja2 *expression* (``user.email``), or a *template* when it holds ``{{`` or
``{%`` (rendered to a string). Both run in the sandboxed environment of
:func:`~syncer.mapping.filters.make_environment`, with one exception made for speed: simple
expressions — names, attribute paths, constant subscripts, ``x if c else y``, and pure filters
with constant arguments — become plain Python closures built from Jinja's own syntax tree. They
read only what the sandbox lets Jinja read (no name starting with ``_``; the context holds
records, lists, dicts, text, numbers and datetimes, none of which has an attribute the sandbox
hides otherwise) and call the same filter functions, so they give Jinja's values: the property
test in ``tests/test_mapping_equivalence.py`` checks that on every shipped mapping.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.parser import Parser
from jinja2.sandbox import SandboxedEnvironment

from syncer.mapping.filters import OUR_FILTERS, get_attribute, get_item

Evaluator = Callable[[Mapping[str, Any]], Any]

_TEMPLATE = re.compile(r"\{\{|\{%")
# Jinja filters that are plain functions of their input and constant arguments.
_PURE_BUILTINS = frozenset(
    {"length", "count", "lower", "upper", "trim", "join", "default", "d", "first", "last",
     "string", "int", "float", "round", "abs", "sort", "unique", "list", "min", "max", "sum"}
)  # fmt: skip


def is_template(text: str) -> bool:
    """True when ``text`` is a template (holds ``{{`` or ``{%``), not an expression."""
    return _TEMPLATE.search(text) is not None


def parse_value(text: str, env: SandboxedEnvironment) -> nodes.Template:
    """The syntax tree of ``text``; an expression comes back as a template printing it.

    Raises Jinja's ``TemplateSyntaxError`` (columns count in ``text`` itself: an expression is
    parsed as written, not wrapped in delimiters the user never typed).
    """
    if is_template(text):
        return env.parse(text)
    parser = Parser(env, text, state="variable")
    expr = parser.parse_expression()
    if not parser.stream.eos:
        raise TemplateSyntaxError("chunk after expression", parser.stream.current.lineno)
    tree = nodes.Template([nodes.Output([expr], lineno=1)], lineno=1)
    tree.set_environment(env)
    return tree


def compile_value(text: str, env: SandboxedEnvironment) -> Evaluator:
    """A callable evaluating ``text`` (an expression, or a template) against a context dict.
    Raises Jinja's TemplateSyntaxError / TemplateAssertionError."""
    if is_template(text):
        return env.from_string(text).render
    output = parse_value(text, env).body[0]
    assert isinstance(output, nodes.Output)
    fast = _fast(output.nodes[0], env)
    if fast is not None:
        return fast
    compiled = env.compile_expression(text, undefined_to_none=False)
    return lambda ctx: compiled(**ctx)


def _fast(node: nodes.Node, env: SandboxedEnvironment) -> Evaluator | None:
    """A plain-Python evaluator for simple expressions, or None (Jinja then evaluates)."""
    if isinstance(node, nodes.Name):
        name = node.name

        def lookup(ctx: Mapping[str, Any]) -> Any:
            try:
                return ctx[name]
            except KeyError:
                raise NameError(f"{name!r} is undefined") from None

        return lookup
    if isinstance(node, nodes.Const):
        value = node.value
        return lambda _ctx: value
    if isinstance(node, nodes.Getattr):
        base = _fast(node.node, env)
        if base is None or node.attr.startswith("_"):
            return None
        attr = node.attr
        if isinstance(node.node, nodes.Name):  # `user.email`: one frame, not three
            name = node.node.name

            def name_attribute(ctx: Mapping[str, Any]) -> Any:
                try:
                    obj = ctx[name]
                except KeyError:
                    raise NameError(f"{name!r} is undefined") from None
                try:
                    return getattr(obj, attr)
                except AttributeError:
                    return get_attribute(obj, attr)  # an item, or get_attribute's error

            return name_attribute
        return lambda ctx: get_attribute(base(ctx), attr)
    if isinstance(node, nodes.Getitem):
        container = _fast(node.node, env)
        if container is None or not isinstance(node.arg, nodes.Const):
            return None
        item = node.arg.value
        if isinstance(item, str):
            if item.startswith("_"):
                return None
            return lambda ctx: get_item(container(ctx), item)
        return lambda ctx: container(ctx)[item]
    if isinstance(node, nodes.CondExpr) and node.expr2 is not None:
        test, yes, no = (_fast(n, env) for n in (node.test, node.expr1, node.expr2))
        if test is None or yes is None or no is None:
            return None
        return lambda ctx: yes(ctx) if test(ctx) else no(ctx)
    if isinstance(node, nodes.Filter):
        return _fast_filter(node, env)
    return None


def _filtered(node: nodes.Filter) -> nodes.Expr | None:
    """The input ``node`` filters, when its arguments are positional constants only; else None
    (Jinja then evaluates it)."""
    if node.kwargs or node.dyn_args or node.dyn_kwargs:
        return None
    return node.node if all(isinstance(a, nodes.Const) for a in node.args) else None


def _fast_filter(node: nodes.Filter, env: SandboxedEnvironment) -> Evaluator | None:
    source = _filtered(node)
    if source is None:
        return None
    if node.name not in OUR_FILTERS and node.name not in _PURE_BUILTINS:
        return None
    func = env.filters[node.name]
    if getattr(func, "jinja_pass_arg", None) is not None:
        return None  # needs Jinja's environment or context: let Jinja run it
    inner = _fast(source, env)
    if inner is None:
        return None
    args = tuple(a.value for a in node.args)  # type: ignore[attr-defined]
    return lambda ctx: func(inner(ctx), *args)


#: An expression ``name`` or ``name.attr`` as (name, attr or None), for a writer to read itself.
Path = tuple[str, str | None]


def name_path(text: str, env: SandboxedEnvironment) -> Path | None:
    """``text`` as a :data:`Path` when it is a plain name or one attribute of a name (its
    evaluator is then ``ctx[name]``, or ``getattr`` of it with Jinja's item fallback); else
    None."""
    if is_template(text):
        return None
    try:
        node = parse_value(text, env).body[0]
    except TemplateSyntaxError:
        return None
    return _path(node.nodes[0]) if isinstance(node, nodes.Output) else None


def _path(node: nodes.Node) -> Path | None:
    if isinstance(node, nodes.Name):
        return node.name, None
    if (
        isinstance(node, nodes.Getattr)
        and isinstance(node.node, nodes.Name)
        and not node.attr.startswith("_")
    ):
        return node.node.name, node.attr
    return None


def filter_call(
    text: str, env: SandboxedEnvironment
) -> tuple[str, Evaluator, tuple[Any, ...], Path | None]:
    """For an expression ``X | name(constants)`` whose input ``X`` takes the fast path: the
    filter's name, ``X``'s evaluator, the arguments and ``X`` as a :data:`Path` (None when it
    is not one); ``ValueError`` for anything else."""
    node = None if is_template(text) else parse_value(text, env).body[0]
    expr = node.nodes[0] if isinstance(node, nodes.Output) else None
    if not isinstance(expr, nodes.Filter) or (source := _filtered(expr)) is None:
        raise ValueError(f"{text!r} is not a filter of a simple expression with constant args")
    inner = _fast(source, env)
    if inner is None:
        raise ValueError(f"the input of {text!r} does not take the fast path")
    args = tuple(a.value for a in expr.args)  # type: ignore[attr-defined]
    return expr.name, inner, args, _path(source)
