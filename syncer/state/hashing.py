"""Canonical payload hashing: the plan compares this hash with the one stored in sync state.

A payload hashes the same whatever its key order, however its numbers are written and whichever
Unicode normal form its text is in, so a record whose data did not change is never sent again.
The rules, which the tests pin down:

* **Keys** are NFC-normalised and sorted by code point. Two keys that are equal after
  normalisation are an error (the payload would be ambiguous).
* **Strings** are NFC-normalised: ``"é"`` composed and decomposed hash the same.
* **Numbers** (``int``, ``float``, ``Decimal``) are canonical by value: ``1 == 1.0 ==
  Decimal("1.00")``, ``100 == 1e2``, ``0.1 == Decimal("0.1")`` (a float counts as the shortest
  decimal that round-trips, i.e. its ``repr``). A number is *not* equal to its string: ``1`` and
  ``"1"`` hash differently. Payloads reach the hash as formatted strings, so a change of type is a
  change of what the formatter produces, and resending once is the safe side of that doubt.
* **Booleans** are their own values, not ``1``/``0``.
* **None vs missing**: ``{"a": None}`` (the field is managed and empty: the destination is told to
  clear it) differs from ``{}`` (the field is not managed at all). ``None`` also differs from
  ``""``; which one a cleared field gets is the formatter's decision.
* **Nested** mappings and lists/tuples are hashed recursively by the same rules; list order
  matters (token order is already canonical when it reaches here).

The digest is BLAKE2b-128 of a canonical text, as 32 hexadecimal characters. The text has two
forms, and which one a payload takes depends only on its (normalised) content:

* the **fast form**, for the common payload of text and ``None`` under ASCII keys: sorted keys,
  then the values in key order, all joined by ``U+001F``, ``None`` written as ``U+001D``. It is
  used only when no key or value contains either separator, so it is unambiguous; it always
  contains a raw ``U+001F`` (or is empty), which JSON text never does;
* the **general form**, for everything else: compact JSON with sorted keys and canonical numbers.

The fast form exists because the hash runs once per record per plan (a million records is a
million hashes): it costs about a third of the general form.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import lru_cache
from hashlib import blake2b
from operator import itemgetter
from typing import Any

__all__ = ["canonical_text", "payload_hash"]

_SEP = "\x1f"  # between keys and values in the fast form
_NONE = "\x1d"  # None in the fast form
# The C string escaper json.dumps uses with ensure_ascii=False.
_escape: Any = getattr(json.encoder, "c_encode_basestring", None) or json.encoder.encode_basestring


def payload_hash(payload: Mapping[str, object]) -> str:
    """The canonical hash of ``payload`` (see the module docstring for what counts as equal)."""
    text = canonical_text(payload)
    return blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def canonical_text(payload: Mapping[str, object]) -> str:
    """The canonical text ``payload_hash`` digests (exposed for tests and debugging)."""
    if not payload:
        return ""  # the fast form of no fields
    try:
        form = _fast_form(tuple(payload))
    except TypeError:  # a key that cannot be hashed: not a payload the fast form takes
        form = None
    if form is None:
        return _encode_mapping(payload)
    head, values_of, count = form
    values: Any = values_of(payload)
    nones = values.count(None)
    if nones:
        values = [_NONE if v is None else v for v in values]
    try:
        body = _SEP.join(values)
    except TypeError:  # a value that is not text or None
        return _encode_mapping(payload)
    if body.count(_SEP) != count - 1 or body.count(_NONE) != nones:
        return _encode_mapping(payload)  # a separator inside a value
    if not body.isascii():
        # The control-character separators are NFC-stable boundaries (no composition or
        # reordering crosses them), so normalising the values normalises each one, and the
        # (ASCII) keys before them are as they were.
        body = unicodedata.normalize("NFC", body)
    return head + body


_Form = tuple[str, Callable[[Mapping[str, object]], Any], int]


@lru_cache(maxsize=256)
def _fast_form(keys: tuple[object, ...]) -> _Form | None:
    """For a payload with these keys (in its own order): the fast form's keys part (sorted,
    each followed by the separator), a getter of the values in that order, and the number of
    keys; ``None`` when the payload takes the general form whatever its values (a key that
    is not ASCII text or holds a separator).

    Cached by key tuple: a mapping formats every record of an object with the same fields in
    the same order, so a plan sorts and checks its keys once, not once per record (the hash
    runs once per record of every plan). The text is the same as sorting every time.
    """
    if not all(isinstance(k, str) for k in keys):
        return None
    ordered: list[str] = sorted(keys)  # type: ignore[arg-type]
    head = _SEP.join(ordered) + _SEP
    if head.count(_SEP) != len(ordered) or _NONE in head or not head.isascii():
        # A separator in a key, or a key that normalisation could reorder: the general form
        # (which the fast form gave these payloads too, whatever their values).
        return None
    if len(ordered) == 1:  # itemgetter of one key gives the value, not a 1-tuple
        (key,) = ordered
        return head, lambda payload: (payload[key],), 1
    return head, itemgetter(*ordered), len(ordered)


def _nfc(text: str) -> str:
    # isascii() is a flag check: most text skips normalisation entirely.
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def _encode_mapping(mapping: Mapping[Any, object]) -> str:
    items: dict[str, object] = {}
    originals: dict[str, object] = {}
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise TypeError(f"payload keys must be strings, got {type(key).__name__} {key!r}")
        norm = _nfc(key)
        if norm in items:
            raise ValueError(
                f"payload keys {originals[norm]!r} and {key!r} are the same field after Unicode "
                "normalisation (NFC); rename one of them in the mapping"
            )
        items[norm] = value
        originals[norm] = key
    parts = [_escape(key) + ":" + _encode(items[key]) for key in sorted(items)]
    return "{" + ",".join(parts) + "}"


def _encode(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return str(_escape(_nfc(value)))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Decimal)):
        return _number(value)
    if isinstance(value, Mapping):
        return _encode_mapping(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    raise TypeError(
        f"cannot hash a {type(value).__name__} ({value!r}) in a payload; format it as text first"
    )


def _number(value: int | float | Decimal) -> str:
    """Canonical text of a number's value: integer digits, or ``<digits>e<exponent>``."""
    if isinstance(value, int):
        digits, exponent, negative = str(abs(value)), 0, value < 0
    else:
        dec = Decimal(repr(value)) if isinstance(value, float) else value
        if not dec.is_finite():
            # NaN and the infinities: one spelling each, unquoted so no string shares it.
            return "NaN" if dec.is_nan() else ("-Infinity" if dec.is_signed() else "Infinity")
        sign, digit_tuple, exp = dec.as_tuple()
        digits, exponent, negative = "".join(map(str, digit_tuple)), int(exp), bool(sign)
    stripped = digits.lstrip("0")
    if not stripped:
        return "0"  # 0, -0.0 and Decimal("0.000") are all zero
    trimmed = stripped.rstrip("0")
    exponent += len(stripped) - len(trimmed)
    sign_text = "-" if negative else ""
    # Integers with a small exponent are written out (100, not 1e2) so the common case reads
    # naturally; either way one value has exactly one spelling.
    if 0 <= exponent <= 20:
        return sign_text + trimmed + "0" * exponent
    return f"{sign_text}{trimmed}e{exponent}"
