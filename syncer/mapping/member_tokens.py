"""An account object's member token fields, one member at a time.

A token field over an account's members (``members | tokens('email', 'stage')``,
``members | emails``) is fused (:mod:`syncer.mapping.writers`): its collector folds every
member's tokens into one ``key → highest priority`` dict, which :func:`token_setter` turns into
the field's text and companions. Folding is a maximum per key, so the fields of an account can
be made again from each member's own tokens, kept aside, and the tokens of the members that
changed: :class:`MemberTokenFields` encodes a member's tokens for all such fields as one text
and renders the fields from the texts of every member (the order, the budget and the truncation
come out as they do from the whole member list, since every member's tokens are there).

It applies only to an object every field of which that reads its members' user columns (the
email, the names) is such a field, and that has no hints: then a change to those columns alone
leaves every other field of the record as it was (:func:`MemberTokenFields.of`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from operator import itemgetter, methodcaller
from typing import Any, cast

from syncer.fields import FieldSpec, FieldType
from syncer.mapping.compile import parse_value
from syncer.mapping.filters import Collector, make_environment
from syncer.mapping.objects import ObjectMapping
from syncer.mapping.reads import expression_reads
from syncer.mapping.writers import Payload, TokenSetter, _fused, token_setter
from syncer.tokens import PART_MARK

__all__ = ["ENCODING", "MemberTokenFields"]

#: The version of the text :meth:`MemberTokenFields.encode` writes: rows of another are not read
#: (it is part of the stamp they are kept with, :mod:`syncer.engine.member_tokens`).
ENCODING = "2"

# Separators of the encoded text: between fields, between a field's tokens, between a token's
# key and its priority; and what stands for the NUL between a key's parts (PART_MARK), which
# PostgreSQL's text refuses. A key holding one of them (an id with a control character) is not
# kept: its member's tokens cannot be encoded and its account is rebuilt every time instead.
_FIELD, _TOKEN, _RANK, _PART = "\x1f", "\x1d", "\x1e", "\x1c"
# A priority is kept as one character: chr(_RANK_BASE + priority), below the surrogates.
_RANK_BASE = 0x30
_MAX_RANK = 0xD800 - _RANK_BASE
_LAST = itemgetter(-1)
_SPLIT_RANK = methodcaller("split", _RANK)


@dataclass(frozen=True, slots=True)
class MemberTokenFields:
    """The fused member token fields of one account object, in mapping order."""

    names: tuple[str, ...]
    collectors: tuple[Collector, ...]
    setters: tuple[TokenSetter, ...]

    @classmethod
    def of(cls, obj: ObjectMapping) -> MemberTokenFields | None:
        """The object's member token fields, or ``None`` when it has none, or when another of
        its fields (or a hint) reads the members' user columns: such a record cannot be made
        from kept member tokens and the rest of its last payload."""
        if obj.source != "accounts" or obj.hints:
            return None
        env = make_environment(obj.ladder)
        specs: list[FieldSpec] = []
        collectors: list[Collector] = []
        for f in obj.fields:
            fused = (
                _fused(f.template, env, f.spec.case_insensitive)
                if f.spec.type is FieldType.TOKENS
                else None
            )
            if fused is not None and fused[2] == ("members", None):
                specs.append(f.spec)
                collectors.append(fused[1])
            elif expression_reads(parse_value(f.template, env)):
                return None
        if not specs:
            return None
        return cls(tuple(s.name for s in specs), tuple(collectors), tuple(map(token_setter, specs)))

    def encode(self, member: Any) -> str | None:
        """One member's tokens for every field as one text, or ``None`` when they cannot be
        kept (a collector refused the member, a key holds a separator, a priority is out of
        the range one character holds)."""
        parts: list[str] = []
        for collect in self.collectors:
            try:
                best = collect((member,))
            except Exception:  # the mapping's reference path decides what the record gets
                return None
            if best:
                # Runs for every member of every account a run rebuilds: one scan of the keys
                # for the separators, not one per key and separator.
                keys = "".join(best)
                if _FIELD in keys or _TOKEN in keys or _RANK in keys or _PART in keys:
                    return None
                if min(best.values()) < 0 or max(best.values()) >= _MAX_RANK:
                    return None
            parts.append(
                _TOKEN.join([key + _RANK + chr(_RANK_BASE + rank) for key, rank in best.items()])
            )
        return _FIELD.join(parts).replace(PART_MARK, _PART)

    def encode_all(self, members: Sequence[Any]) -> dict[str, str] | None:
        """Every member's text by user id, or ``None`` if one cannot be kept."""
        out: dict[str, str] = {}
        for m in members:
            text = self.encode(m)
            if text is None:
                return None
            out[m.user_id] = text
        return out

    def render(self, texts: Collection[str], payload: Payload) -> None:
        """Write the fields (and companions) of an account whose members' texts are ``texts``
        into ``payload``, as the mapping's format writes them. :class:`ValueError` for texts
        that are not of this object's fields.

        Runs for every member of every account a plan makes this way (800,000 at 1M users for
        an email change of 1% of them): every step is one call over all of an account's
        members. A priority is one character, ordered as the numbers are; the entries sorted
        by it, a dict keeps each key's last, highest one; :func:`token_texts` only orders and
        counts the priorities, so it takes the characters as they are."""
        width = len(self.setters)
        segments = _FIELD.join(texts).replace(_PART, PART_MARK).split(_FIELD) if texts else []
        if len(segments) != width * len(texts):
            raise ValueError(f"member tokens of another shape than {width} fields")
        for i, put in enumerate(self.setters):
            entries = list(filter(None, _TOKEN.join(segments[i::width]).split(_TOKEN)))
            entries.sort(key=_LAST)
            best = dict(map(_SPLIT_RANK, entries))
            put(cast("dict[str, int]", best), payload)
