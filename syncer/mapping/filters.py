"""syncer's Jinja filters and the sandboxed environment mappings run in."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from syncer.fields import normalize_email
from syncer.mapping.context import stage_rank
from syncer.model import StageLadder
from syncer.tokens import PART_MARK, InvalidValue, Token, encode_part, part_text, word_memo

#: syncer's own filters (documented in docs/mappings.md).
OUR_FILTERS = ("tokens", "emails", "at_least", "stage_rank", "isodate")


class MappingEnvironment(SandboxedEnvironment):
    """The sandbox mappings run in. ``token_sources`` holds the fused forms of the ``tokens`` and
    ``emails`` filters: a token field whose value is ``X | tokens(...)`` or ``X | emails`` (see
    :mod:`syncer.mapping.writers`) collects its encoded tokens from the records directly, the
    same values in the same order as the filter's Token objects, without building them."""

    token_sources: dict[str, TokenSource]


#: Items → each token's key (its encoded parts joined by :data:`PART_MARK`) → its highest
#: priority: what :func:`syncer.tokens.format_tokens` collects from the tokens a filter makes.
Collector = Callable[[Any], dict[str, int]]
#: A fused filter: (the filter's arguments, case-insensitive field) → its collector, or None
#: when the filter with these arguments is not fused.
TokenSource = Callable[[tuple[Any, ...], bool], Collector | None]


def make_environment(ladder: StageLadder) -> MappingEnvironment:
    """The sandboxed Jinja2 environment mappings run in, with syncer's filters."""
    env = MappingEnvironment(undefined=StrictUndefined, autoescape=False)
    env.filters.update(_filters(ladder))
    env.token_sources = _token_sources(ladder)
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


def _priorities(ladder: StageLadder) -> tuple[dict[str, int], Callable[[Any], int]]:
    """A token's priority by its stage: the table of the ladder's names, and the function."""
    # Looked up once per token on the hot path of every plan (the ladder's own lookup
    # normalises aliases through an exception on a miss).
    priority_of: dict[str, int] = {name: ladder.rank(name) + 1 for name in ladder.names}

    def priority(stage: Any) -> int:
        found = priority_of.get(stage) if type(stage) is str else None
        return found if found is not None else stage_rank(ladder, stage) + 1

    return priority_of, priority


def _token_pairs(
    items: Iterable[Any], attrs: tuple[Any, ...], priority: Callable[[Any], int]
) -> Iterator[tuple[tuple[str, ...], int]]:
    """The (parts, priority) of each token ``tokens(*attrs)`` makes of ``items``."""
    if not attrs:  # plain values (stage names, ids): one token each
        for v in items:
            yield (_part(v),), priority(v)
        return
    for a in attrs:
        if not isinstance(a, str) or a.startswith("_"):
            raise ValueError(f"tokens(): {a!r} is not an attribute a mapping may read")
    # attrgetter would follow dots: a dotted name keeps Jinja's plain lookup rules. Typed as
    # returning Any: with one name it returns the value, not a tuple (typeshed says a tuple,
    # and a compiled build would check that).
    get: Callable[[Any], Any] | None = None if any("." in a for a in attrs) else attrgetter(*attrs)
    single = len(attrs) == 1
    for item in items:
        values: Any = None
        if get is not None:
            try:
                values = (get(item),) if single else get(item)
            except AttributeError:  # a mapping, or a missing attribute: Jinja's rules say
                values = None
        if values is None:
            values = tuple(get_attribute(item, a) for a in attrs)
        yield tuple(map(_part, values)), priority(getattr(item, "stage", None))


def _addresses(items: Iterable[Any]) -> Iterator[tuple[str, Any]]:
    """The normalised address and the stage of each item ``emails`` keeps: blank, missing and
    invalid addresses are left out."""
    for item in items:
        email = getattr(item, "email", None)
        if type(email) is not str:
            continue
        try:
            address = normalize_email(email)
        except InvalidValue:
            continue
        if address is not None:
            yield address, getattr(item, "stage", None)


def _email_pairs(
    items: Iterable[Any], priority: Callable[[Any], int]
) -> Iterator[tuple[tuple[str, ...], int]]:
    """The (parts, priority) of each token ``emails`` makes of ``items``."""
    for address, stage in _addresses(items):
        yield (address,), priority(stage)


def _filters(ladder: StageLadder) -> dict[str, Callable[..., Any]]:
    _, priority = _priorities(ladder)

    def tokens(items: Iterable[Any], *attrs: str) -> list[Token]:
        """Objects → tokens of their ``attrs`` (e.g. account_id and stage), ranked by stage;
        plain values (no ``attrs``) → one token each."""
        return [Token(parts, rank) for parts, rank in _token_pairs(items, attrs, priority)]

    def emails(items: Iterable[Any]) -> list[Token]:
        """Members (or users) → tokens of their addresses (trimmed, lowercased), ranked by
        stage. Blank and invalid addresses are left out: one member's bad address must not
        refuse the whole account, and an invalid one would match no *contains* filter."""
        return [Token(parts, rank) for parts, rank in _email_pairs(items, priority)]

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


# --- the fused filters of token fields ---------------------------------------------------------
#
# A collector gives a field's tokens as {key: highest priority}, the key being the token's encoded
# parts joined by PART_MARK: a character below every character of a word, so that keys sort as
# their parts' tuples do (a part that is a prefix of another sorts first either way), and
# replacing it by the separator gives the token as written. Each shape has one loop of its own:
# every item of every token field of every record passes through it, and a generator feeding a
# shared loop cost a frame resume and a pair per item (a third of the field's time).


def _collect(pairs: Iterator[tuple[tuple[str, ...], int]], ci: bool) -> dict[str, int]:
    """:func:`syncer.tokens.format_tokens`'s first half over a filter's (parts, priority)
    pairs: every part is already a ``str``, so the memo (or the encoder on a miss) is all."""
    recall = word_memo(ci).get
    best: dict[str, int] = {}
    for raw, rank in pairs:
        parts: tuple[str | None, ...] = tuple(map(recall, raw))
        if None in parts:
            parts = tuple([encode_part(p, ci) for p in raw])
        key = PART_MARK.join(parts)  # type: ignore[arg-type]  # no None is left in parts here
        if rank > best.get(key, -1):
            best[key] = rank
    return best


def _token_sources(ladder: StageLadder) -> dict[str, TokenSource]:
    priority_of, priority = _priorities(ladder)
    return {
        "tokens": lambda args, ci: _fused_tokens(args, ci, priority_of, priority),
        "emails": lambda args, ci: _fused_emails(args, ci, priority_of, priority),
    }


def _fused_tokens(
    args: tuple[Any, ...], ci: bool, priority_of: dict[str, int], priority: Callable[[Any], int]
) -> Collector:
    """``tokens(*args)`` fused with the formatter. The common shapes (plain values, plain
    attribute names) share one loop (:func:`_attributes`); a part the memo does not know takes
    ``_part`` and the encoder, which refuse what the filter refuses. A priority is at least 0, so -1
    stands for "not seen yet"."""
    if args and not all(type(a) is str and a and "." not in a and a[0] != "_" for a in args):
        return lambda items: _collect(_token_pairs(items, args, priority), ci)
    return _attributes(args, ci, priority_of, priority)


def _attributes(
    names: tuple[str, ...], ci: bool, priority_of: dict[str, int], priority: Callable[[Any], int]
) -> Collector:
    """``tokens(*names)``: the key joins the words with PART_MARK. One name: the word itself,
    without a tuple of one part to build, look up and join per item (the contacts' account ids
    and names). No name (``tokens``): each item is the value, and its own stage."""
    recall = word_memo(ci).get
    multi = len(names) > 1
    # attrgetter gives the value itself for one name, a tuple for several.
    get = attrgetter(*names) if names else None
    join = PART_MARK.join
    # The stage the priority comes from, when it is one of the parts: read once, not twice.
    at = names.index("stage") if "stage" in names else -1

    def attributes(items: Any) -> dict[str, int]:
        best: dict[str, int] = {}
        for item in items:
            if get is None:
                value = stage = item
            else:
                try:
                    value = get(item)
                except AttributeError:  # a mapping, or a missing attribute: Jinja's rules say
                    got = tuple(get_attribute(item, a) for a in names)
                    value = got if multi else got[0]
                    stage = getattr(item, "stage", None)
                else:
                    stage = (
                        getattr(item, "stage", None) if at < 0 else value[at] if multi else value
                    )
            if multi:
                parts: tuple[str | None, ...] = tuple(map(recall, value))  # a hit: text
                if None in parts:
                    # A miss (an id, an address): text goes to the encoder without _part's
                    # frame.
                    parts = tuple(
                        [encode_part(v if type(v) is str else _part(v), ci) for v in value]
                    )
                key = join(parts)  # type: ignore[arg-type]  # no None is left in parts here
            else:
                # A memo hit means text (its keys are str, equal only to str), which _part
                # gives as it is.
                word = recall(value)
                key = (
                    word
                    if word is not None
                    else encode_part(value if type(value) is str else _part(value), ci)
                )
            rank = priority_of.get(stage) if type(stage) is str else None
            if rank is None:
                rank = priority(stage)
            if rank > best.get(key, -1):
                best[key] = rank
        return best

    return attributes


def _fused_emails(
    args: tuple[Any, ...], ci: bool, priority_of: dict[str, int], priority: Callable[[Any], int]
) -> Collector | None:
    """``emails`` fused with the formatter: :func:`_addresses`, encoding as it goes."""
    if args:
        return None  # the filter takes none: let it say so
    recall = word_memo(ci).get

    def addresses(items: Any) -> dict[str, int]:
        best: dict[str, int] = {}
        for address, stage in _addresses(items):  # the filter's own choice of addresses
            word = recall(address)
            if word is None:
                word = encode_part(address, ci)
            rank = priority_of.get(stage) if type(stage) is str else None
            if rank is None:
                rank = priority(stage)
            if rank > best.get(word, -1):
                best[word] = rank
        return best

    return addresses
