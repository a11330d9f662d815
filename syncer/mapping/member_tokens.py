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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from syncer.fields import FieldSpec, FieldType
from syncer.mapping.compile import parse_value
from syncer.mapping.filters import Collector, make_environment
from syncer.mapping.objects import ObjectMapping
from syncer.mapping.reads import expression_reads
from syncer.mapping.writers import Payload, TokenSetter, _fused, token_setter
from syncer.tokens import PART_MARK

__all__ = ["MemberTokenFields"]

# Separators of the encoded text: between fields, between a field's tokens, between a token's
# key and its priority; and what stands for the NUL between a key's parts (PART_MARK), which
# PostgreSQL's text refuses. A key holding one of them (an id with a control character) is not
# kept: its member's tokens cannot be encoded and its account is rebuilt every time instead.
_FIELD, _TOKEN, _RANK, _PART = "\x1f", "\x1d", "\x1e", "\x1c"
_SEPARATORS = (_FIELD, _TOKEN, _RANK, _PART)


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
        kept (a collector refused the member, or a key holds a separator)."""
        parts: list[str] = []
        for collect in self.collectors:
            try:
                best = collect((member,))
            except Exception:  # the mapping's reference path decides what the record gets
                return None
            for key in best:
                if any(sep in key for sep in _SEPARATORS):
                    return None
            parts.append(_TOKEN.join([f"{k}{_RANK}{p}" for k, p in best.items()]))
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

    def render(self, texts: Iterable[str], payload: Payload) -> None:
        """Write the fields (and companions) of an account whose members' texts are ``texts``
        into ``payload``, as the mapping's format writes them."""
        bests: list[dict[str, int]] = [{} for _ in self.collectors]
        width = len(bests)
        for text in texts:
            parts = text.replace(_PART, PART_MARK).split(_FIELD)
            if len(parts) != width:
                raise ValueError(f"member tokens of {len(parts)} fields, not {width}")
            for best, part in zip(bests, parts, strict=True):
                if not part:
                    continue
                for entry in part.split(_TOKEN):
                    key, _, rank = entry.rpartition(_RANK)
                    value = int(rank)
                    if value > best.get(key, -1):
                        best[key] = value
        for put, best in zip(self.setters, bests, strict=True):
            put(best, payload)
