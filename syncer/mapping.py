"""Mappings: which destination fields hold what, as Jinja2 expressions over the resolved views.

A mapping file (``mappings/hubspot.yaml``) names, per destination object, the source view it is
made from (``users`` or ``accounts``), the destination field holding the product id (``key``),
and the fields::

    objects:
      contacts:
        source: users
        key: syncer_user_id
        hints: {email: user.email, primary_account_key: primary_account_id}
        associations: [companies]
        fields:
          email: {type: email, value: user.email}
          syncer_accounts: {type: tokens, value: "memberships | tokens('account_id', 'stage')"}
          syncer_stage: stage                       # short form: a string field

A ``value`` is a Jinja2 *expression* (``user.email``, ``members | emails``); a text with ``{{``
is a Jinja2 *template* rendered to a string. Templates are untrusted input: they run in a
``SandboxedEnvironment`` with ``StrictUndefined``, are compiled once when the mapping loads and
are checked then against sample views, so a typo is a :class:`ConfigError` naming file, line,
field and the unknown name — before anything is read or written.

Speed: simple expressions (names, attribute paths, constant subscripts, the filters below with
constant arguments) are compiled from Jinja's syntax tree into plain Python closures; only the
rest goes through Jinja. Both give the same values (the tests compare them).

The context variables and filters are listed in ``docs/mappings.md``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import Any, Literal

from jinja2 import StrictUndefined, TemplateError, UndefinedError, nodes
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field

from syncer.connectors.base import ObjectSpec
from syncer.errors import ConfigError, Problem, RecordRejected
from syncer.fields import (
    FieldSpec,
    FieldType,
    companion_names,
    format_field,
    normalize_email,
    validate_spec,
)
from syncer.model import (
    Account,
    ResolvedAccount,
    ResolvedMember,
    ResolvedMembership,
    ResolvedUser,
    StageLadder,
    UnknownStage,
    User,
)
from syncer.tokens import InvalidValue, Token
from syncer.yamlsrc import YamlDoc, load_yaml, validate

__all__ = [
    "AssociationMapping",
    "FieldMapping",
    "Formatted",
    "MappingFile",
    "ObjectMapping",
    "context_for",
    "load_mapping",
]

Source = Literal["users", "accounts"]
View = ResolvedUser | ResolvedAccount
Evaluator = Callable[[Mapping[str, Any]], Any]

USER_NAMES = (
    "user",
    "memberships",
    "all_memberships",
    "stage",
    "churned",
    "primary",
    "primary_account_id",
    "attributes",
    "rule",
)
ACCOUNT_NAMES = (
    "account",
    "members",
    "stage",
    "rollups",
    "ancestors",
    "children",
    "parent_account_id",
    "attributes",
    "member_stages",
)


# --- the file's shape ---------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldDoc(_Strict):
    """One field: its type and the expression (or template) that fills it."""

    type: FieldType = FieldType.STRING
    value: str = Field(min_length=1)
    options: list[str] = Field(default_factory=list)  # allowed values of an enum field
    max_length: int | None = Field(default=None, ge=1)  # tighter than the connector's limit


class ObjectDoc(_Strict):
    """One destination object."""

    source: Source
    key: str = Field(min_length=1)
    fields: dict[str, FieldDoc | str]
    hints: dict[str, str] = Field(default_factory=dict)
    associations: list[str] = Field(default_factory=list)


class MappingDoc(_Strict):
    """A mapping file."""

    objects: dict[str, ObjectDoc]


# --- what the engine uses -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldMapping:
    """A destination field, its limits merged from the connector, and where it was defined."""

    spec: FieldSpec
    template: str
    line: int
    evaluate: Evaluator = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class AssociationMapping:
    """Associate each record with the records of ``to_object`` (a user's active accounts; the
    primary one labelled primary)."""

    to_object: str


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
        if isinstance(view, ResolvedAccount) and view.problem is not None:
            refused = RecordRejected(key, view.problem, field="parent_account_id")
            return Formatted(key, {self.key_field: key}, {}, refused)
        ctx = context_for(view, self.ladder)
        payload: dict[str, str | None] = {self.key_field: key}
        hints: dict[str, Any] = {}
        try:
            for f in self.fields:
                payload.update(format_field(f.spec, _evaluate(f, ctx, key), key=key))
            for name, evaluate in self._hints:
                hints[name] = evaluate(ctx)
        except RecordRejected as exc:
            return Formatted(key, payload, hints, exc)
        payload[self.key_field] = key  # the product id always wins
        return Formatted(key, payload, hints)


@dataclass(frozen=True, slots=True)
class MappingFile:
    """A loaded, checked mapping file; ``objects`` in write order."""

    path: Path
    objects: tuple[ObjectMapping, ...]

    def object(self, name: str) -> ObjectMapping:
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


# --- the context ----------------------------------------------------------------------------


class Attributes(dict[str, Any]):
    """An attributes mapping where a missing key is ``None`` (not every account has every
    attribute), so ``account.attributes.renewal_date`` never fails on a blank."""

    def __missing__(self, key: str) -> None:
        return None


def context_for(view: View, ladder: StageLadder) -> dict[str, Any]:
    """The names an expression sees for ``view`` (listed in ``docs/mappings.md``)."""
    if isinstance(view, ResolvedUser):
        active = [m for m in view.memberships if not m.churned]
        primary = next((m for m in view.memberships if m.primary), None)
        return {
            "user": view.user,
            "memberships": active,
            "all_memberships": list(view.memberships),
            "stage": view.stage,
            "churned": view.churned,
            "primary": primary,
            "primary_account_id": view.primary_account_id,
            "attributes": Attributes(view.user.attributes),
            "rule": view.rule,
        }
    members = list(view.members)
    stages = sorted({m.stage for m in members}, key=lambda s: (-_rank(ladder, s), s))
    return {
        "account": view.account,
        "members": members,
        "stage": view.stage,
        "rollups": Attributes(view.rollups),
        "ancestors": list(view.ancestors),
        "children": list(view.children),
        "parent_account_id": view.account.parent_account_id,
        "attributes": Attributes(view.account.attributes),
        "member_stages": stages,
    }


def _rank(ladder: StageLadder, stage: str | None) -> int:
    if stage is None:
        return -1
    try:
        return ladder.rank(stage)
    except (UnknownStage, KeyError):  # a name the ladder does not know ranks lowest
        return -1


# --- filters ------------------------------------------------------------------------------------


def _get(obj: Any, name: str) -> Any:
    """Jinja's attribute lookup: an attribute, else an item."""
    try:
        return getattr(obj, name)
    except AttributeError:
        pass
    try:
        return obj[name]
    except (TypeError, LookupError):
        raise AttributeError(f"{type(obj).__name__} has no attribute {name!r}") from None


def _filters(ladder: StageLadder) -> dict[str, Callable[..., Any]]:
    # Token priorities by stage name, looked up once per token on the hot path of every plan
    # (the ladder's own lookup normalises aliases through an exception on a miss).
    priority_of: dict[str, int] = {name: ladder.rank(name) + 1 for name in ladder.names}

    def priority(stage: Any) -> int:
        found = priority_of.get(stage) if type(stage) is str else None
        return found if found is not None else _rank(ladder, stage) + 1

    def tokens(items: Iterable[Any], *attrs: str) -> list[Token]:
        """Objects → tokens of their ``attrs`` (e.g. account_id and stage), ranked by stage;
        plain values (no ``attrs``) → one token each."""
        if not attrs:  # plain values (stage names, ids): one token each
            return [Token((_part(v),), priority(v)) for v in items]
        for a in attrs:
            if not isinstance(a, str) or a.startswith("_"):
                raise ValueError(f"tokens(): {a!r} is not an attribute a mapping may read")
        # attrgetter would follow dots: a dotted name keeps Jinja's plain lookup rules.
        get = None if any("." in a for a in attrs) else attrgetter(*attrs)
        single = len(attrs) == 1
        out = []
        for item in items:
            values = None
            if get is not None:
                try:
                    values = (get(item),) if single else get(item)
                except AttributeError:  # a mapping, or a missing attribute: Jinja's rules say
                    values = None
            if values is None:
                values = tuple(_get(item, a) for a in attrs)
            out.append(Token(tuple(map(_part, values)), priority(getattr(item, "stage", None))))
        return out

    def emails(items: Iterable[Any]) -> list[Token]:
        """Members (or users) → tokens of their addresses (trimmed, lowercased), ranked by
        stage. Blank and invalid addresses are left out: one member's bad address must not
        refuse the whole account, and an invalid one would match no *contains* filter."""
        out = []
        for item in items:
            email = getattr(item, "email", None)
            if type(email) is not str:
                continue
            try:
                address = normalize_email(email)
            except InvalidValue:
                continue
            if address is not None:
                out.append(Token((address,), priority(getattr(item, "stage", None))))
        return out

    def at_least(stage: str | None, floor: str) -> bool:
        """True when ``stage`` is ``floor`` or better on the ladder."""
        return _rank(ladder, stage) >= ladder.rank(floor)

    def stage_rank(stage: str | None) -> int:
        """The stage's position on the ladder (lowest 0; churned and unknown -1)."""
        return _rank(ladder, stage)

    def isodate(value: datetime | None) -> str | None:
        return None if value is None else value.astimezone(UTC).date().isoformat()

    return {
        "tokens": tokens,
        "emails": emails,
        "at_least": at_least,
        "stage_rank": stage_rank,
        "isodate": isodate,
    }


def _part(value: Any) -> str:
    if type(value) is str:
        return value
    if value is None:
        return ""
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"a token part must be text or a whole number, got {type(value).__name__}")


def make_environment(ladder: StageLadder) -> SandboxedEnvironment:
    """The sandboxed Jinja2 environment mappings run in, with syncer's filters."""
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    env.filters.update(_filters(ladder))
    return env


# --- compiling ----------------------------------------------------------------------------------

_TEMPLATE = re.compile(r"\{\{|\{%")
# Jinja filters that are plain functions of their input and constant arguments.
_PURE_BUILTINS = frozenset(
    {"length", "count", "lower", "upper", "trim", "join", "default", "d", "first", "last",
     "string", "int", "float", "round", "abs", "sort", "unique", "list", "min", "max", "sum"}
)  # fmt: skip


def compile_value(text: str, env: SandboxedEnvironment) -> Evaluator:
    """A callable evaluating ``text`` (an expression, or a template if it holds ``{{``)
    against a context dict. Raises Jinja's TemplateSyntaxError / TemplateAssertionError."""
    if _TEMPLATE.search(text):
        return env.from_string(text).render
    expr = env.parse("{{ (" + text + ") }}")
    output = expr.body[0]
    assert isinstance(output, nodes.Output)
    node = output.nodes[0]
    fast = _fast(node, env)
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
        return lambda ctx: _get(base(ctx), attr)
    if isinstance(node, nodes.Getitem):
        container = _fast(node.node, env)
        if container is None or not isinstance(node.arg, nodes.Const):
            return None
        item = node.arg.value
        if isinstance(item, str) and item.startswith("_"):
            return None
        if isinstance(item, str):
            return lambda ctx: _get(container(ctx), item)
        return lambda ctx: container(ctx)[item]
    if isinstance(node, nodes.CondExpr) and node.expr2 is not None:
        test, yes, no = (_fast(n, env) for n in (node.test, node.expr1, node.expr2))
        if test is None or yes is None or no is None:
            return None
        return lambda ctx: yes(ctx) if test(ctx) else no(ctx)
    if isinstance(node, nodes.Filter):
        if node.node is None or node.kwargs or node.dyn_args or node.dyn_kwargs:
            return None
        if not all(isinstance(a, nodes.Const) for a in node.args):
            return None
        ours = node.name in ("tokens", "emails", "at_least", "stage_rank", "isodate")
        if not ours and node.name not in _PURE_BUILTINS:
            return None
        func = env.filters[node.name]
        inner = _fast(node.node, env)
        if inner is None:
            return None
        args = tuple(a.value for a in node.args)  # type: ignore[attr-defined]
        if getattr(func, "jinja_pass_arg", None) is not None:
            return None  # needs Jinja's environment or context: let Jinja run it
        return lambda ctx: func(inner(ctx), *args)
    return None


# --- loading ------------------------------------------------------------------------------------


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
                    hint=f"the connector writes: {', '.join(sorted(objects))}",
                )
            )
            continue
        built_obj = _object(
            name, obj, spec=spec, doc=doc, env=env, ladder=ladder, problems=problems
        )
        if built_obj is not None:
            built.append(built_obj)
    names = {o.name for o in built}
    for o in built:
        for a in o.associations:
            if a.to_object not in objects:
                problems.append(
                    Problem(
                        f"{o.name}: association to unknown object {a.to_object!r}",
                        file=str(path),
                        line=doc.line_of(("objects", o.name, "associations")),
                    )
                )
            elif a.to_object not in names:
                problems.append(
                    Problem(
                        f"{o.name}: associations to {a.to_object!r} need that object mapped too",
                        file=str(path),
                        line=doc.line_of(("objects", o.name, "associations")),
                    )
                )
    if problems:
        raise ConfigError(problems, summary=f"mapping {path}")
    return MappingFile(path, tuple(_write_order(built, objects)))


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


def _object(
    name: str,
    obj: ObjectDoc,
    *,
    spec: ObjectSpec,
    doc: YamlDoc,
    env: SandboxedEnvironment,
    ladder: StageLadder,
    problems: list[Problem],
) -> ObjectMapping | None:
    file = str(doc.file)
    before = len(problems)
    if obj.key != spec.key_field:
        problems.append(
            Problem(
                f"{name}: key {obj.key!r} is not the connector's unique key field "
                f"{spec.key_field!r}",
                file=file,
                line=doc.line_of(("objects", name, "key")),
                hint=f"use key: {spec.key_field}",
            )
        )
    allowed = set(USER_NAMES if obj.source == "users" else ACCOUNT_NAMES)
    sample = _sample_context(obj.source, ladder)
    edges = _edge_contexts(obj.source, ladder)
    fields: list[FieldMapping] = []
    for fname, fdoc in obj.fields.items():
        fd = FieldDoc(value=fdoc) if isinstance(fdoc, str) else fdoc
        line = doc.line_of(("objects", name, "fields", fname)) or 0
        where = f"{name}.{fname}"
        base = spec.fields.get(fname) or spec.default_field or FieldSpec(fname)
        fspec = replace(
            base,
            name=fname,
            suffix=spec.custom_suffix,
            type=fd.type,
            options=tuple(fd.options) or base.options,
            max_length=min(x for x in (fd.max_length, base.max_length) if x is not None)
            if (fd.max_length or base.max_length)
            else None,
        )
        for p in validate_spec(fspec):
            problems.append(replace(p, file=file, line=line, message=f"{where}: {p.message}"))
        evaluate = _compile_checked(
            fd.value,
            env=env,
            allowed=allowed,
            sample=sample,
            edges=edges,
            file=file,
            line=line,
            where=where,
            problems=problems,
        )
        if evaluate is None:
            continue
        try:
            format_field(fspec, evaluate(sample), key="sample")
        except RecordRejected as exc:
            problems.append(
                Problem(
                    f"{where}: on sample data the value does not fit type {fd.type.value}: "
                    f"{exc.reason}",
                    file=file,
                    line=line,
                )
            )
        except Exception as exc:  # the expression itself failed on sample data
            problems.append(Problem(f"{where}: {exc}", file=file, line=line))
            continue
        fields.append(FieldMapping(fspec, fd.value, line, evaluate))
    hints: list[tuple[str, Evaluator]] = []
    for hname, text in obj.hints.items():
        line = doc.line_of(("objects", name, "hints", hname)) or 0
        evaluate = _compile_checked(
            text,
            env=env,
            allowed=allowed,
            sample=sample,
            edges=edges,
            file=file,
            line=line,
            where=f"{name}.hints.{hname}",
            problems=problems,
        )
        if evaluate is not None:
            hints.append((hname, evaluate))
    if len(problems) > before:
        return None
    return ObjectMapping(
        name,
        obj.source,
        spec.key_field,
        tuple(fields),
        dict(obj.hints),
        tuple(AssociationMapping(a) for a in obj.associations),
        doc.file if isinstance(doc.file, Path) else Path(doc.file),
        ladder,
        tuple(hints),
    )


def _compile_checked(
    text: str,
    *,
    env: SandboxedEnvironment,
    allowed: set[str],
    sample: Mapping[str, Any],
    edges: Sequence[Mapping[str, Any]],
    file: str,
    line: int,
    where: str,
    problems: list[Problem],
) -> Evaluator | None:
    from jinja2 import meta

    try:
        source = text if _TEMPLATE.search(text) else "{{ (" + text + ") }}"
        unknown = sorted(meta.find_undeclared_variables(env.parse(source)) - allowed)
        evaluate = compile_value(text, env)
    except TemplateError as exc:
        problems.append(Problem(f"{where}: {exc.message or exc}", file=file, line=line))
        return None
    if unknown:
        problems.append(
            Problem(
                f"{where}: unknown name {', '.join(map(repr, unknown))} in {text!r}",
                file=file,
                line=line,
                hint=f"this view has: {', '.join(sorted(allowed))}",
            )
        )
        return None
    try:
        evaluate(sample)
    except Exception as exc:  # an unknown attribute, a filter misuse, ...
        problems.append(
            Problem(f"{where}: {text!r} fails on sample data: {exc}", file=file, line=line)
        )
        return None
    # The full sample takes one side of every branch; the edge views (churned, no primary, no
    # members) take the other. There only a misspelt attribute is a load error: a lookup on a
    # missing value (`primary.x` without a guard) depends on the data and rejects that record.
    for edge in edges:
        try:
            evaluate(edge)
        except Exception as exc:
            if _misspelt_attribute(exc):
                problems.append(
                    Problem(
                        f"{where}: {text!r} fails on a {edge['_edge']} view: {exc}",
                        file=file,
                        line=line,
                        hint="check the attribute's spelling against docs/mappings.md",
                    )
                )
                return None
    return evaluate


def _misspelt_attribute(exc: BaseException) -> bool:
    """True when ``exc`` says an existing object lacks an attribute (not a lookup on None)."""
    if not isinstance(exc, AttributeError | UndefinedError):
        return False
    text = str(exc)
    return "has no attribute" in text and not text.startswith(("'None' ", "NoneType "))


def _sample_context(source: Source, ladder: StageLadder) -> dict[str, Any]:
    """A view with every field filled, to catch typos at load time."""
    at = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    top = ladder.names[-1]
    if source == "users":
        m = ResolvedMembership(
            "acct-1", "Sample Co", "parent-1", "admin", top, top, False, at, True
        )
        user = User("user-1", "sample@example.com", "Sam", "Ple", top, {"plan": "pro"}, at, at)
        return context_for(ResolvedUser(user, (m,), top, "acct-1", False, "sample"), ladder)
    member = ResolvedMember("user-1", "sample@example.com", "Sam", "Ple", "admin", top, top, at)
    account = Account(
        "acct-1",
        "Sample Co",
        "sample.example",
        "parent-1",
        top,
        {"status": "active", "contract_value": 1000, "renewal_date": "2025-01-01", "licenses": 5},
        at,
        at,
    )
    view = ResolvedAccount(account, (member,), top, {"licenses": 5.0}, ("parent-1",), (), "sample")
    return context_for(view, ladder)


def _edge_contexts(source: Source, ladder: StageLadder) -> list[dict[str, Any]]:
    """Views that take the other side of the usual branches: a churned user with no primary
    account (one churned membership), an account with no members, parent or attributes.
    ``_edge`` names the view in error messages; no expression can read it (names are checked)."""
    at = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    gone = ladder.churned
    if source == "users":
        m = ResolvedMembership("acct-2", "Gone Co", None, None, gone, None, True, at, False)
        user = User("user-2", None, None, None, None, {}, None, None)
        view: View = ResolvedUser(user, (m,), gone, None, True, "sample")
        return [{**context_for(view, ladder), "_edge": "churned user without a primary account"}]
    account = Account("acct-2")
    view = ResolvedAccount(account, (), gone, {}, (), (), "sample")
    return [{**context_for(view, ladder), "_edge": "memberless account"}]
