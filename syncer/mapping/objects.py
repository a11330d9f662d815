"""What the engine uses: a loaded mapping's objects, and formatting one view for a destination."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import TemplateError

from syncer.errors import RecordRejected
from syncer.fields import FieldSpec, FieldType, companion_names, format_field
from syncer.mapping.compile import Evaluator
from syncer.mapping.context import Source, View, context_for
from syncer.mapping.writers import Writer
from syncer.model import ResolvedUser, StageLadder, fast_init


@dataclass(frozen=True, slots=True)
class FieldMapping:
    """A destination field, its limits merged from the connector, and where it was defined."""

    spec: FieldSpec
    template: str
    line: int
    evaluate: Evaluator = field(repr=False, compare=False)
    #: Evaluates and formats this field into a payload (:mod:`syncer.mapping.writers`).
    write: Writer = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class AssociationMapping:
    """Associate each record with the records of ``to_object`` (a user's active accounts; the
    primary one labelled primary)."""

    to_object: str


@fast_init  # one per record of a plan
@dataclass(frozen=True, slots=True)
class Formatted:
    """One view formatted for the destination: the full payload (token companions included),
    per-record hints for the connector, or the reason the record cannot be sent."""

    key: str
    payload: dict[str, str | None]
    hints: dict[str, Any]
    rejected: RecordRejected | None = None


@dataclass(frozen=True, slots=True)
class ObjectMapping:
    """How one destination object is made from one source view."""

    name: str
    source: Source
    key_field: str
    fields: tuple[FieldMapping, ...]
    hints: Mapping[str, str]
    associations: tuple[AssociationMapping, ...]
    file: Path
    ladder: StageLadder = field(repr=False)
    _hints: tuple[tuple[str, Evaluator], ...] = field(repr=False, compare=False, default=())
    #: The fields' writers, in order: read once here, not from each field for every record.
    _writers: tuple[Writer, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "_writers", tuple(f.write for f in self.fields))

    @property
    def hint_evaluators(self) -> tuple[tuple[str, Evaluator], ...]:
        """Each hint's name and compiled expression, in the order of ``hints``."""
        return self._hints

    def key(self, view: View) -> str:
        """The product id of ``view``: the user's or the account's id."""
        if isinstance(view, ResolvedUser):
            return view.user.user_id
        return view.account.account_id

    def destination_fields(self) -> list[FieldSpec]:
        """Every field a payload may hold — token companions included — for ``ensure``."""
        out: list[FieldSpec] = []
        for f in self.fields:
            out.append(f.spec)
            if f.spec.type is FieldType.TOKENS and f.spec.companions:
                count, truncated = companion_names(f.spec.name, f.spec.suffix)
                out.append(FieldSpec(count, FieldType.NUMBER))
                out.append(FieldSpec(truncated, FieldType.BOOL))
        return out

    def format(self, view: View) -> Formatted:
        """Evaluate every field and hint for ``view`` and format the values for the
        destination. A value the formatter refuses rejects this record only."""
        key = self.key(view)
        if view.problem is not None:  # bad data in the store: nothing of it is sent
            refused = RecordRejected(key, view.problem.reason, field=view.problem.field)
            return Formatted(key, {self.key_field: key}, {}, refused)
        ctx = context_for(view, self.ladder)
        payload: dict[str, str | None] = {self.key_field: key}
        try:  # one try for every field, not a frame each: the writers only know how to succeed
            for write in self._writers:
                write(ctx, payload)
        except Exception:  # the reference path says why, or raises the same
            return self._format_checked(key, ctx)
        hints: dict[str, Any] = {}
        for name, evaluate in self._hints:
            hints[name] = evaluate(ctx)
        payload[self.key_field] = key  # the product id always wins
        return Formatted(key, payload, hints)

    def _format_checked(self, key: str, ctx: Mapping[str, Any]) -> Formatted:
        """The reference path, field by field: what ``format`` gives when a writer fails (a
        record with a value the formatter refuses, mostly), rejection messages included."""
        payload: dict[str, str | None] = {self.key_field: key}
        hints: dict[str, Any] = {}
        try:
            for f in self.fields:
                payload.update(format_field(f.spec, _evaluate(f, ctx, key), key=key))
            for name, evaluate in self._hints:
                hints[name] = evaluate(ctx)
        except RecordRejected as exc:
            return Formatted(key, payload, hints, exc)
        payload[self.key_field] = key
        return Formatted(key, payload, hints)


@dataclass(frozen=True, slots=True)
class MappingFile:
    """A loaded, checked mapping file; ``objects`` in write order."""

    path: Path
    objects: tuple[ObjectMapping, ...]

    def object(self, name: str) -> ObjectMapping:
        """The mapping of the destination object ``name`` (``KeyError`` if it is not mapped)."""
        for obj in self.objects:
            if obj.name == name:
                return obj
        raise KeyError(name)


def _evaluate(f: FieldMapping, ctx: Mapping[str, Any], key: str) -> Any:
    try:
        return f.evaluate(ctx)
    except (TemplateError, LookupError, AttributeError, TypeError, ValueError) as exc:
        # Data the sample views did not foresee (a list where text was expected, say):
        # this record is refused with the reason, the run goes on.
        raise RecordRejected(
            key, f"{f.spec.name}: cannot evaluate {f.template!r}: {exc}", field=f.spec.name
        ) from None
