"""Loading a mapping file: its shape, the connector's objects and fields, every value checked.

Every problem of the file is reported at once, each with its file, line and field, before
anything is read or written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from jinja2.sandbox import SandboxedEnvironment

from syncer.connectors.base import ObjectSpec
from syncer.errors import ConfigError, Problem, RecordRejected
from syncer.fields import FieldSpec, format_field, validate_spec
from syncer.mapping.check import ValueProblem, check_value
from syncer.mapping.compile import Evaluator
from syncer.mapping.context import (
    ACCOUNT_NAMES,
    USER_NAMES,
    edge_contexts,
    sample_context,
)
from syncer.mapping.filters import make_environment
from syncer.mapping.objects import AssociationMapping, FieldMapping, MappingFile, ObjectMapping
from syncer.mapping.schema import FieldDoc, MappingDoc, ObjectDoc
from syncer.mapping.writers import field_writer
from syncer.model import StageLadder
from syncer.yamlsrc import YamlDoc, load_yaml, validate


def load_mapping(path: Path, objects: Mapping[str, ObjectSpec], ladder: StageLadder) -> MappingFile:
    """Load and check a mapping file against the connector's ``objects``; every problem at once
    (file, line, field, what is wrong)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            Problem(
                f"mapping file {path} does not exist",
                hint="fix `mapping:` of this destination in syncer.yaml (relative paths are "
                "relative to syncer.yaml); the defaults are in mappings/",
            )
        )
    doc = load_yaml(path)
    parsed = validate(MappingDoc, doc)
    env = make_environment(ladder)
    problems: list[Problem] = []
    built: list[ObjectMapping] = []
    for name, obj in parsed.objects.items():
        spec = objects.get(name)
        if spec is None:
            problems.append(
                Problem(
                    f"unknown object {name!r}",
                    file=str(path),
                    line=doc.line_of(("objects", name)),
                    hint=f"The connector writes: {', '.join(sorted(objects))}",
                )
            )
            continue
        checker = _Checker(name, obj, doc=doc, env=env, ladder=ladder)
        built_obj = checker.build(spec)
        problems.extend(checker.problems)
        if built_obj is not None:
            built.append(built_obj)
    problems.extend(_association_problems(built, objects, doc))
    if problems:
        raise ConfigError(problems, summary=f"mapping {path}")
    return MappingFile(path, tuple(_write_order(built, objects)))


def _association_problems(
    built: list[ObjectMapping], objects: Mapping[str, ObjectSpec], doc: YamlDoc
) -> list[Problem]:
    problems = []
    names = {o.name for o in built}
    for o in built:
        for a in o.associations:
            if a.to_object in names:
                continue
            unknown = a.to_object not in objects
            problems.append(
                Problem(
                    f"association to {'unknown ' if unknown else ''}object {a.to_object!r}"
                    + ("" if unknown else ": that object must be mapped too"),
                    file=str(doc.file),
                    line=doc.line_of(("objects", o.name, "associations")),
                    field=f"{o.name}.associations",
                    hint=f"The connector writes: {', '.join(sorted(objects))}" if unknown else None,
                )
            )
    return problems


def _write_order(
    built: list[ObjectMapping], specs: Mapping[str, ObjectSpec]
) -> list[ObjectMapping]:
    """Objects after those their ObjectSpec says come first (companies before contacts)."""
    done: list[ObjectMapping] = []
    pending = list(built)
    while pending:
        names = {o.name for o in done}
        ready = [
            o
            for o in pending
            if all(a in names or a not in {p.name for p in pending} for a in specs[o.name].after)
        ]
        if not ready:  # a cycle in the connector's declarations: keep the file's order
            ready = pending[:1]
        done.extend(ready)
        pending = [o for o in pending if o not in ready]
    return done


class _Checker:
    """Builds one object's mapping, collecting its problems (one per mistake)."""

    def __init__(
        self,
        name: str,
        obj: ObjectDoc,
        *,
        doc: YamlDoc,
        env: SandboxedEnvironment,
        ladder: StageLadder,
    ) -> None:
        self.name = name
        self.obj = obj
        self.doc = doc
        self.env = env
        self.file = str(doc.file)
        self.allowed = USER_NAMES if obj.source == "users" else ACCOUNT_NAMES
        self.sample = sample_context(obj.source, ladder)
        self.edges = edge_contexts(obj.source, ladder)
        self.ladder = ladder
        self.problems: list[Problem] = []

    def build(self, spec: ObjectSpec) -> ObjectMapping | None:
        name, obj = self.name, self.obj
        if obj.key != spec.key_field:
            self._problem(
                f"key {obj.key!r} is not the connector's unique key field {spec.key_field!r}",
                self.doc.line_of(("objects", name, "key")),
                f"{name}.key",
                f"Use key: {spec.key_field}",
            )
        fields = [
            f
            for fname, fdoc in obj.fields.items()
            if (f := self._field(fname, fdoc, spec)) is not None
        ]
        hints: list[tuple[str, Evaluator]] = []
        for hname, text in obj.hints.items():
            loc = ("objects", name, "hints", hname)
            evaluate = self._value(text, loc, f"{name}.hints.{hname}")
            if evaluate is not None:
                hints.append((hname, evaluate))
        if self.problems:
            return None
        return ObjectMapping(
            name,
            obj.source,
            spec.key_field,
            tuple(fields),
            dict(obj.hints),
            tuple(AssociationMapping(a) for a in obj.associations),
            Path(self.doc.file),
            self.ladder,
            tuple(hints),
        )

    def _field(self, fname: str, fd: FieldDoc, spec: ObjectSpec) -> FieldMapping | None:
        loc = ("objects", self.name, "fields", fname)
        line = self.doc.line_of(loc) or 0
        where = f"{self.name}.{fname}"
        base = spec.fields.get(fname) or spec.default_field or FieldSpec(fname)
        limits = [x for x in (fd.max_length, base.max_length) if x is not None]
        fspec = replace(
            base,
            name=fname,
            suffix=spec.custom_suffix,
            type=fd.type,
            options=tuple(fd.options) or base.options,
            max_length=min(limits) if limits else None,
        )
        declared = validate_spec(fspec)
        for p in declared:
            self.problems.append(replace(p, file=self.file, line=line, field=where))
        value_loc = (*loc, "value") if (*loc, "value") in self.doc.lines else loc
        evaluate = self._value(fd.value, value_loc, where)
        if evaluate is None or declared:
            return None  # a field declared wrong has no type to check the value against
        try:
            format_field(fspec, evaluate(self.sample), key="sample")
        except RecordRejected as exc:
            message = f"the value does not fit type {fd.type.value} on a sample record"
            self._problem(f"{message}: {exc.reason}", line, where)
            return None
        write = field_writer(fspec, fd.value, evaluate, self.env)
        return FieldMapping(fspec, fd.value, line, evaluate, write)

    def _value(self, text: str, loc: tuple[str | int, ...], where: str) -> Evaluator | None:
        try:
            return check_value(
                text, self.env, allowed=self.allowed, sample=self.sample, edges=self.edges
            )
        except ValueProblem as exc:
            line = (self.doc.text_line_of(loc) or 0) + exc.line - 1
            self._problem(f"{text!r}: {exc.message}", line, where, exc.hint)
            return None

    def _problem(self, message: str, line: int | None, where: str, hint: str | None = None) -> None:
        self.problems.append(Problem(message, self.file, line, where, hint=hint))
