"""Per-field writers: each field's evaluation and formatting bound once, when the mapping loads.

:meth:`ObjectMapping.format <syncer.mapping.objects.ObjectMapping.format>` runs a writer per
field for every record of a plan. A writer evaluates its field on a view's context and writes
the formatted text (and a token field's companions) into the payload, with the field type's
formatter chosen at load instead of per record. A token field whose value is
``X | tokens(...)`` or ``X | emails`` is *fused*: it collects the encoded tokens from the records
directly (:attr:`MappingEnvironment.token_sources
<syncer.mapping.filters.MappingEnvironment.token_sources>`) instead of building Token objects
for :func:`syncer.tokens.format_tokens` to take apart again.

A writer only knows how to succeed: any exception means the record needs the reference path
(:func:`syncer.fields.format_field` per field, with the messages of a rejection), which
``format`` then runs from the start. Evaluation is a pure function of the view, so the reference
path meets the same values and fails, or not, exactly as it would have alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from operator import itemgetter
from typing import Any

from jinja2.sandbox import SandboxedEnvironment

from syncer.fields import FieldSpec, FieldType, companion_names, format_field, scalar_function
from syncer.mapping.compile import Evaluator, Path, filter_call, name_path
from syncer.mapping.context import Attributes
from syncer.mapping.filters import Collector, MappingEnvironment
from syncer.tokens import BLANK_RUN, InvalidValue, token_texts

Payload = dict[str, str | None]
Writer = Callable[[Mapping[str, Any], Payload], None]


def field_writer(
    spec: FieldSpec, text: str, evaluate: Evaluator, env: SandboxedEnvironment
) -> Writer:
    """The writer of the field ``spec`` whose value is ``text`` (compiled to ``evaluate``)."""
    if spec.type is FieldType.TOKENS:
        fused = _fused(text, env, spec.case_insensitive)
        if fused is None:
            return lambda ctx, payload: payload.update(format_field(spec, evaluate(ctx)))
        return _token_writer(spec, *fused)
    return _scalar_writer(spec, evaluate, name_path(text, env))


def _scalar_writer(spec: FieldSpec, evaluate: Evaluator, path: Path | None) -> Writer:
    name = spec.name
    limit = spec.max_length
    scalar = scalar_function(spec.type)
    read = _reader(evaluate, path)

    if spec.type is FieldType.STRING:
        blank_run = BLANK_RUN.sub

        def write_string(ctx: Mapping[str, Any], payload: Payload) -> None:
            value = read(ctx)
            if type(value) is str:  # the formatter's common case, without its frame
                # In printable text the only blank is " " (every other whitespace or control
                # character is not printable: tests/test_mapping_writers.py checks them all),
                # so with no double space the collapsing regex would change nothing.
                if value.isprintable() and "  " not in value:
                    text = value.strip() or None
                else:
                    text = blank_run(" ", value).strip() or None
            else:
                text = None if value is None else scalar(spec, value)
            if text is not None and limit is not None and len(text) > limit:
                raise InvalidValue("over max_length")  # the reference path says it in full
            payload[name] = text

        return write_string

    def write_scalar(ctx: Mapping[str, Any], payload: Payload) -> None:
        value = read(ctx)
        text = None if value is None else scalar(spec, value)
        if text is not None and limit is not None and len(text) > limit:
            raise InvalidValue("over max_length")  # the reference path says it in full
        payload[name] = text

    return write_scalar


def _reader(evaluate: Evaluator, path: Path | None) -> Evaluator:
    """How a scalar field reads its value. A value `name` or `name.attr` (most fields) is read
    here, not through the evaluator's frame; anything unusual takes the evaluator, which knows
    Jinja's rules. An attributes mapping (`attributes.status`) is read as an item at once:
    Jinja's rules look for an attribute first, which such a mapping has only for dict's own
    names, and the failed lookups cost two exceptions a field."""
    if path is None:
        return evaluate
    source, attr = path
    if attr is None:
        return itemgetter(source)
    item = not hasattr(Attributes, attr)

    def read(ctx: Mapping[str, Any]) -> Any:
        obj = ctx[source]
        if item and type(obj) is Attributes:
            return obj[attr]
        try:
            return getattr(obj, attr)
        except AttributeError:  # an item, or the evaluator's error
            return evaluate(ctx)

    return read


def _token_writer(
    spec: FieldSpec, inner: Evaluator, collect: Collector, path: Path | None
) -> Writer:
    put = token_setter(spec)
    # `members | ...`: the items read here, not through the evaluator's frame.
    source = path[0] if path is not None and path[1] is None else None
    if source is not None:
        return lambda ctx, payload: put(collect(ctx[source]), payload)
    return lambda ctx, payload: put(collect(inner(ctx)), payload)


TokenSetter = Callable[[dict[str, int], Payload], None]


def token_setter(spec: FieldSpec) -> TokenSetter:
    """What writes a token field (and its companions, if it has them) into a payload from its
    collected tokens (each key → its highest priority): the fused writer's last step, and how
    :mod:`syncer.mapping.member_tokens` renders an account's fields from kept member tokens."""
    name = spec.name
    limit = spec.max_length
    if not spec.companions:

        def put_text(best: dict[str, int], payload: Payload) -> None:
            payload[name] = token_texts(best, limit)[0]

        return put_text
    count_name, truncated_name = companion_names(name, spec.suffix)

    def put_all(best: dict[str, int], payload: Payload) -> None:
        text, total, truncated = token_texts(best, limit)
        payload[name] = text
        payload[count_name] = str(total)
        payload[truncated_name] = "true" if truncated else "false"

    return put_all


def _fused(
    text: str, env: SandboxedEnvironment, case_insensitive: bool
) -> tuple[Evaluator, Collector, Path | None] | None:
    """The evaluator of ``X`` and the fused filter, for a value ``X | tokens(...)`` or
    ``X | emails``; None for any other value (its writer formats what it evaluates to)."""
    if not isinstance(env, MappingEnvironment):
        return None
    try:
        name, inner, args, path = filter_call(text, env)
    except ValueError:
        return None
    source = env.token_sources.get(name)
    collect = None if source is None else source(args, case_insensitive)
    return None if collect is None else (inner, collect, path)
