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
from typing import Any

from jinja2.sandbox import SandboxedEnvironment

from syncer.fields import FieldSpec, FieldType, companion_names, format_field, scalar_formatter
from syncer.mapping.compile import Evaluator, filter_call
from syncer.mapping.filters import Collector, MappingEnvironment
from syncer.tokens import BLANK_RUN, token_texts

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
    name = spec.name
    formatter = scalar_formatter(spec)
    if spec.type is not FieldType.STRING or spec.max_length is not None:
        return lambda ctx, payload: payload.__setitem__(name, formatter(evaluate(ctx)))
    blank_run = BLANK_RUN.sub

    def write_string(ctx: Mapping[str, Any], payload: Payload) -> None:
        value = evaluate(ctx)
        if type(value) is str:  # the formatter's common case, without its frame
            payload[name] = blank_run(" ", value).strip() or None
        else:
            payload[name] = formatter(value)

    return write_string


def _token_writer(spec: FieldSpec, inner: Evaluator, collect: Collector) -> Writer:
    name = spec.name
    limit = spec.max_length
    if not spec.companions:
        return lambda ctx, payload: payload.__setitem__(
            name, token_texts(collect(inner(ctx)), limit)[0]
        )
    count_name, truncated_name = companion_names(name, spec.suffix)

    def write_tokens(ctx: Mapping[str, Any], payload: Payload) -> None:
        text, total, truncated = token_texts(collect(inner(ctx)), limit)
        payload[name] = text
        payload[count_name] = str(total)
        payload[truncated_name] = "true" if truncated else "false"

    return write_tokens


def _fused(
    text: str, env: SandboxedEnvironment, case_insensitive: bool
) -> tuple[Evaluator, Collector] | None:
    """The evaluator of ``X`` and the fused filter, for a value ``X | tokens(...)`` or
    ``X | emails``; None for any other value (its writer formats what it evaluates to)."""
    if not isinstance(env, MappingEnvironment):
        return None
    try:
        name, inner, args = filter_call(text, env)
    except ValueError:
        return None
    source = env.token_sources.get(name)
    collect = None if source is None else source(args, case_insensitive)
    return None if collect is None else (inner, collect)
