"""syncer's Jinja filters and the sandboxed environment mappings run in."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from syncer.fields import normalize_email
from syncer.mapping.context import stage_rank
from syncer.model import StageLadder
from syncer.tokens import InvalidValue, Token, part_text

#: syncer's own filters (documented in docs/mappings.md).
OUR_FILTERS = ("tokens", "emails", "at_least", "stage_rank", "isodate")


def make_environment(ladder: StageLadder) -> SandboxedEnvironment:
    """The sandboxed Jinja2 environment mappings run in, with syncer's filters."""
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    env.filters.update(_filters(ladder))
    return env


def get_attribute(obj: Any, name: str) -> Any:
    """Jinja's ``obj.name``: an attribute, else an item."""
    try:
        return getattr(obj, name)
    except AttributeError:
        pass
    try:
        return obj[name]
    except (TypeError, LookupError):
        raise AttributeError(f"{type(obj).__name__} has no attribute {name!r}") from None


def get_item(obj: Any, name: str) -> Any:
    """Jinja's ``obj['name']``: an item, else an attribute (the other order than
    :func:`get_attribute`: ``attributes['items']`` is the attribute called items)."""
    try:
        return obj[name]
    except (TypeError, LookupError):
        pass
    try:
        return getattr(obj, name)
    except AttributeError:
        raise AttributeError(f"{type(obj).__name__} has no attribute {name!r}") from None


def _part(value: Any) -> str:
    """A token part; an empty value is an empty part (``ze``), the rest as :func:`part_text`."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    return part_text(value)


def _filters(ladder: StageLadder) -> dict[str, Callable[..., Any]]:
    # Token priorities by stage name, looked up once per token on the hot path of every plan
    # (the ladder's own lookup normalises aliases through an exception on a miss).
    priority_of: dict[str, int] = {name: ladder.rank(name) + 1 for name in ladder.names}

    def priority(stage: Any) -> int:
        found = priority_of.get(stage) if type(stage) is str else None
        return found if found is not None else stage_rank(ladder, stage) + 1

    def tokens(items: Iterable[Any], *attrs: str) -> list[Token]:
        """Objects → tokens of their ``attrs`` (e.g. account_id and stage), ranked by stage;
        plain values (no ``attrs``) → one token each."""
        if not attrs:  # plain values (stage names, ids): one token each
            return [Token((_part(v),), priority(v)) for v in items]
        for a in attrs:
            if not isinstance(a, str) or a.startswith("_"):
                raise ValueError(f"tokens(): {a!r} is not an attribute a mapping may read")
        # attrgetter would follow dots: a dotted name keeps Jinja's plain lookup rules. Typed
        # as returning Any: with one name it returns the value, not a tuple (typeshed says a
        # tuple, and a compiled build would check that).
        get: Callable[[Any], Any] | None = (
            None if any("." in a for a in attrs) else attrgetter(*attrs)
        )
        single = len(attrs) == 1
        out = []
        for item in items:
            values: Any = None
            if get is not None:
                try:
                    values = (get(item),) if single else get(item)
                except AttributeError:  # a mapping, or a missing attribute: Jinja's rules say
                    values = None
            if values is None:
                values = tuple(get_attribute(item, a) for a in attrs)
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
        return stage_rank(ladder, stage) >= ladder.rank(floor)

    def rank(stage: str | None) -> int:
        """The stage's position on the ladder (lowest 0; churned and unknown -1)."""
        return stage_rank(ladder, stage)

    def isodate(value: datetime | None) -> str | None:
        return None if value is None else value.astimezone(UTC).date().isoformat()

    return {
        "tokens": tokens,
        "emails": emails,
        "at_least": at_least,
        "stage_rank": rank,
        "isodate": isodate,
    }
