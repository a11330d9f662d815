"""Field types and formatting: token lists for *contains* filters, emails, numbers, dates, budgets.

:func:`format_field` turns one rendered value into the strings a destination takes (CRM APIs take
strings; ``None`` means "no value": the connector clears the field — an empty string on HubSpot,
null on Salesforce). A value that cannot be formatted raises
:class:`syncer.errors.RecordRejected` for that record only, never the batch. The rules per type
(all documented for marketers in ``docs/filtering.md``):

=============  ====================================================================================
type           accepts → writes
=============  ====================================================================================
``string``     text or an integer → whitespace and control runs collapsed to one space, trimmed;
               longer than ``max_length`` characters → rejected (cut it in the template with
               ``truncate`` if losing the end is acceptable: syncer never cuts silently)
``tokens``     an iterable of :class:`Token` or strings → ``;a;b;`` (see :mod:`syncer.tokens`),
               plus ``<name>_count`` and ``<name>_truncated`` companions
``email``      text → trimmed, lowercased, checked against a practical address pattern
``number``     int, float, Decimal or a numeric string (``"1.50"``, ``"-2e3"``) → plain decimal
               digits: no exponent, no trailing zeros, no ``.0`` (``3.0`` → ``"3"``)
``bool``       True/False, or the text ``true``/``false`` (any case) → ``"true"``/``"false"``
``date``       date, aware datetime (its UTC date) or ISO 8601 text → ``YYYY-MM-DD``
``datetime``   aware datetime or ISO 8601 text with an offset → UTC ``YYYY-MM-DDTHH:MM:SS.mmmZ``
``enum``       text equal to one of ``options`` (exact, case included)
=============  ====================================================================================

Blank text (empty or whitespace only) is no value (``None``) for every type. Nothing else is
coerced: ``"abc"`` and ``True`` are not numbers, ``1`` is not a bool, a naive datetime has no
time zone syncer could assume.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum

from syncer.errors import Problem, RecordRejected
from syncer.tokens import BLANK_RUN, InvalidValue, Token, format_tokens
from syncer.tokens import show_value as _show

__all__ = [
    "FieldSpec",
    "FieldType",
    "Token",
    "companion_names",
    "format_field",
    "normalize_email",
    "scalar_function",
    "validate_spec",
]


class FieldType(StrEnum):
    """How a field's value is formatted (the table in this module's docstring)."""

    STRING = "string"
    TOKENS = "tokens"  # a multi-value field rendered as a delimited token list
    EMAIL = "email"
    NUMBER = "number"
    BOOL = "bool"
    DATE = "date"
    DATETIME = "datetime"
    ENUM = "enum"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """What a destination field accepts: the connector declares it, the formatter obeys it."""

    name: str
    type: FieldType = FieldType.STRING
    max_length: int | None = None  # in characters (code points), not bytes
    case_insensitive: bool = True  # the destination's *contains* ignores case: lowercase tokens
    options: Sequence[str] = ()  # allowed values of an enum field
    companions: bool = True  # fill <name>_count / <name>_truncated for token fields
    #: The destination's custom-field suffix (Salesforce ``__c``), from the connector's
    #: :class:`~syncer.connectors.base.ObjectSpec`: companion names keep it last.
    suffix: str = ""
    #: The destination refuses to empty this field (Salesforce ``Account.Name``): a ``clear``
    #: removal leaves it holding its last value instead of sending ``None``.
    required: bool = False


def companion_names(name: str, suffix: str = "") -> tuple[str, str]:
    """The names of a token field's companions: the true token count and the truncation flag.

    A name that ends with the destination's custom-field ``suffix`` keeps it last, in the
    destination's capitalised style: with ``__c``, ``Syncer_Accounts__c`` →
    ``Syncer_Accounts_Count__c``, ``Syncer_Accounts_Truncated__c``.
    """
    if suffix and name.endswith(suffix):
        stem = name[: -len(suffix)]
        return f"{stem}_Count{suffix}", f"{stem}_Truncated{suffix}"
    return f"{name}_count", f"{name}_truncated"


def validate_spec(spec: FieldSpec) -> list[Problem]:
    """What is wrong with a field spec (empty when nothing): for the mapping loader to report
    every problem at once, before anything is formatted."""
    problems = []
    if spec.max_length is not None and spec.max_length < 1:
        problems.append(Problem(f"max_length must be at least 1, got {spec.max_length}"))
    if spec.type is FieldType.TOKENS and spec.max_length is not None and spec.max_length < 3:
        problems.append(Problem("a token field needs max_length >= 3 to hold any token"))
    if spec.type is FieldType.ENUM and not spec.options:
        problems.append(Problem("an enum field needs options: the values it accepts"))
    if spec.options and spec.type is not FieldType.ENUM:
        problems.append(Problem(f"options are only for enum fields, this one is {spec.type}"))
    return [Problem(p.message, field=spec.name, hint="fix the field declaration") for p in problems]


def format_field(spec: FieldSpec, value: object, *, key: str = "") -> dict[str, str | None]:
    """The destination strings for one field: ``{spec.name: text}``, plus for a token field with
    ``spec.companions`` ``<name>_count`` (the true number of distinct tokens) and
    ``<name>_truncated`` (``"true"`` when tokens were dropped to fit ``max_length``).

    ``None`` (and blank text) gives ``None``: no value, the connector clears the field; a token
    field's companions are then ``None`` too, while an empty token list gives count ``"0"``.
    Raises :class:`~syncer.errors.RecordRejected` (with ``key``, this field's name and a reason
    naming the value) when the value cannot be formatted.
    """
    try:
        if spec.type is FieldType.TOKENS:
            return _format_token_field(spec, value)
        if value is None:
            return {spec.name: None}
        text = _SCALARS[spec.type](spec, value)
        if text is not None and spec.max_length is not None and len(text) > spec.max_length:
            raise _too_long(text, spec.max_length)
        return {spec.name: text}
    except InvalidValue as exc:
        raise RecordRejected(key, str(exc), field=spec.name) from None


def scalar_function(kind: FieldType) -> Callable[[FieldSpec, object], str | None]:
    """The formatter :func:`format_field` calls for a non-``None`` value of a scalar type
    (``max_length`` not checked): for the mapping's per-field writers, which choose it once
    per field instead of once per value. Raises ``InvalidValue`` on a value it refuses."""
    return _SCALARS[kind]  # KeyError for FieldType.TOKENS, which is not a scalar


def _too_long(text: str, limit: int) -> InvalidValue:
    return InvalidValue(
        f"{len(text)} characters, over this field's limit of {limit}: "
        f"{_show(text)}; shorten it in the source or cut it in the template "
        "(e.g. `| truncate(...)`) if losing the end is acceptable"
    )


def _format_token_field(spec: FieldSpec, value: object) -> dict[str, str | None]:
    if value is None:
        text = count = truncated = None
    else:
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
            raise InvalidValue(
                f"a token field needs a list of tokens, got {type(value).__name__} "
                f"{_show(value)}; build it with the `tokens` filter"
            )
        tokens = format_tokens(
            value, max_length=spec.max_length, case_insensitive=spec.case_insensitive
        )
        text = tokens.text
        count = str(tokens.total)
        truncated = "true" if tokens.truncated else "false"
    if not spec.companions:
        return {spec.name: text}
    count_name, truncated_name = companion_names(spec.name, spec.suffix)
    return {spec.name: text, count_name: count, truncated_name: truncated}


# --- scalar types ---------------------------------------------------------------------------


def _text(value: object, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidValue(f"{what} must be text, got {type(value).__name__} {_show(value)}")


def _format_string(spec: FieldSpec, value: object) -> str | None:
    text = BLANK_RUN.sub(" ", _text(value, "a string field's value")).strip()
    return text or None


# A practical address check (RFC 5321 dot-atom local part, LDH domain labels, a letter or
# punycode TLD): it catches what CRMs reject as INVALID_EMAIL_ADDRESS, not every RFC oddity.
_ATEXT = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_EMAIL = re.compile(
    rf"(?=[^@]{{1,64}}@){_ATEXT}(?:\.{_ATEXT})*@(?:{_LABEL}\.)+(?:[a-z]{{2,63}}|xn--[a-z0-9-]{{1,59}})"
).fullmatch


def normalize_email(value: str) -> str | None:
    """An address trimmed and lowercased (``None`` when blank); raises ``InvalidValue`` when it
    is not a valid address. The mapping's email filters use it for email tokens too."""
    email = value.strip().lower()
    if not email:
        return None
    if len(email) > 254 or not _EMAIL(email):
        raise InvalidValue(
            f"invalid email {_show(value)}; fix the address in the source or leave it empty"
        )
    return email


def _format_email(spec: FieldSpec, value: object) -> str | None:
    return normalize_email(_text(value, "an email"))


_NUMERIC = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?").fullmatch
_MAX_EXPONENT = 1000  # beyond any CRM number; also keeps "1e999999" from printing a million digits


def _format_number(spec: FieldSpec, value: object) -> str | None:
    if isinstance(value, bool):
        raise InvalidValue(f"{value!r} is a bool, not a number")
    if isinstance(value, int):
        if value.bit_length() > 3000:
            raise InvalidValue(f"number out of range: {_show(value)}")
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        if "e" not in text and text[-2:] == ".0":  # the common case: integral, no exponent
            return "0" if text == "-0.0" else text[:-2]
        if not math.isfinite(value):
            raise InvalidValue(f"{value!r} is not a finite number")
        return _decimal_text(Decimal(text))
    if isinstance(value, Decimal):
        return _decimal_text(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if not _NUMERIC(text):
            raise InvalidValue(
                f"not a number: {_show(value)}; write digits with an optional sign, decimal "
                "point and exponent (no thousands separators)"
            )
        return _decimal_text(Decimal(text))
    raise InvalidValue(f"a number must be int, float, Decimal or text, got {type(value).__name__}")


def _decimal_text(value: Decimal) -> str:
    if not value.is_finite():
        raise InvalidValue(f"{value} is not a finite number")
    if value.is_zero():
        return "0"
    if abs(value.adjusted()) > _MAX_EXPONENT:
        raise InvalidValue(f"number out of range: {value}")
    text = format(value, "f")  # exact digits, never an exponent, never rounded
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _format_bool(spec: FieldSpec, value: object) -> str | None:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "false"):
            return text
        if not text:
            return None
    raise InvalidValue(f"not a bool: {_show(value)}; use true or false")


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}").fullmatch


def _aware(value: object, what: str) -> datetime | date | None:
    """A date, or an aware datetime, from a date/datetime/ISO 8601 text; None when blank."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            if _ISO_DATE(text):
                return date.fromisoformat(text)
            value = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidValue(f"not an ISO 8601 {what}: {_show(value)}") from None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidValue(
                f"{_show(value)} has no time zone and syncer will not guess one; give an offset "
                "(Z for UTC)"
            )
        return value.astimezone(UTC)
    if isinstance(value, date):
        return value
    raise InvalidValue(f"a {what} must be a date, datetime or ISO 8601 text, got {_show(value)}")


def _format_date(spec: FieldSpec, value: object) -> str | None:
    day = _aware(value, "date")
    if isinstance(day, datetime):
        day = day.date()
    return None if day is None else day.isoformat()


def _format_datetime(spec: FieldSpec, value: object) -> str | None:
    moment = _aware(value, "datetime")
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        raise InvalidValue(
            f"{moment.isoformat()} is a date without a time; declare the field as a date, or "
            "give a datetime with an offset"
        )
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d}Z"
    )


def _format_enum(spec: FieldSpec, value: object) -> str | None:
    text = _text(value, "an enum value").strip()
    if not text:
        return None
    if text in spec.options:
        return text
    near = [o for o in spec.options if o.lower() == text.lower()]
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    shown = ", ".join(spec.options[:20]) + (", ..." if len(spec.options) > 20 else "")
    raise InvalidValue(f"{_show(text)} is not one of the options [{shown}]{hint}")


_SCALARS: dict[FieldType, Callable[[FieldSpec, object], str | None]] = {
    FieldType.STRING: _format_string,
    FieldType.EMAIL: _format_email,
    FieldType.NUMBER: _format_number,
    FieldType.BOOL: _format_bool,
    FieldType.DATE: _format_date,
    FieldType.DATETIME: _format_datetime,
    FieldType.ENUM: _format_enum,
}
