"""Scalar field formatting: strings, emails, numbers, bools, dates, enums, and rejections."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncer.errors import RecordRejected
from syncer.fields import FieldSpec, FieldType, format_field, normalize_email, validate_spec

STRING = FieldSpec("name", FieldType.STRING, max_length=10)
EMAIL = FieldSpec("email", FieldType.EMAIL)
NUMBER = FieldSpec("value", FieldType.NUMBER)
BOOL = FieldSpec("active", FieldType.BOOL)
DATE = FieldSpec("renewal", FieldType.DATE)
DATETIME = FieldSpec("seen", FieldType.DATETIME)
ENUM = FieldSpec("stage", FieldType.ENUM, options=("MQL", "CUS"))


def fmt(spec: FieldSpec, value: object) -> str | None:
    return format_field(spec, value)[spec.name]


def rejected(spec: FieldSpec, value: object) -> RecordRejected:
    with pytest.raises(RecordRejected) as caught:
        format_field(spec, value, key="k1")
    assert (caught.value.key, caught.value.field) == ("k1", spec.name)
    return caught.value


@pytest.mark.parametrize("spec", [STRING, EMAIL, NUMBER, BOOL, DATE, DATETIME, ENUM])
@pytest.mark.parametrize("blank", [None, "", "  \t "])
def test_none_and_blank_text_mean_no_value(spec: FieldSpec, blank: str | None) -> None:
    assert format_field(spec, blank) == {spec.name: None}


# --- string ---


def test_strings_are_trimmed_and_whitespace_and_control_runs_collapse() -> None:
    assert fmt(STRING, "  Acme \t\n Inc\x00. ") == "Acme Inc ."
    assert fmt(STRING, 34) == "34"


def test_a_string_over_budget_is_rejected_not_cut() -> None:
    assert fmt(STRING, "é" * 10) == "é" * 10  # characters, not bytes
    error = rejected(STRING, "é" * 11)
    assert "11 characters, over this field's limit of 10" in error.reason
    assert "truncate" in error.reason


@pytest.mark.parametrize("value", [True, 1.5, b"x", date(2024, 1, 1)])
def test_non_text_strings_are_rejected(value: object) -> None:
    assert "must be text" in rejected(STRING, value).reason


# --- email ---


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("  Ann.Lee+crm@Acme.IO ", "ann.lee+crm@acme.io"),
        ("o'brien@mail.example.co.uk", "o'brien@mail.example.co.uk"),
        ("x@xn--bcher-kva.example", "x@xn--bcher-kva.example"),
        ("a_b-c@sub-domain.example.com", "a_b-c@sub-domain.example.com"),
    ],
)
def test_emails_are_trimmed_and_lowercased(value: str, written: str) -> None:
    assert fmt(EMAIL, value) == written


@pytest.mark.parametrize(
    "value",
    [
        "ann",
        "ann@",
        "@acme.io",
        "ann@@acme.io",
        "ann@acme",
        "ann lee@acme.io",
        "ann..lee@acme.io",
        ".ann@acme.io",
        "ann@-acme.io",
        "ann@acme.i",
        "ann@acme..io",
        "anné@acme.io",
        "a" * 65 + "@acme.io",
        "ann@" + "a" * 250 + ".io",
    ],
)
def test_invalid_emails_reject_the_record_naming_the_value(value: str) -> None:
    error = rejected(EMAIL, value)
    assert error.reason.startswith(f"invalid email {value!r}"[:40])


def test_normalize_email_is_the_same_rule_for_email_tokens() -> None:
    assert normalize_email(" Ann@Acme.io") == "ann@acme.io"
    assert normalize_email("   ") is None


# --- number ---


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (3, "3"),
        (-17, "-17"),
        (3.0, "3"),
        (-0.0, "0"),
        (2.5, "2.5"),
        (1e-7, "0.0000001"),
        (1e22, "10000000000000000000000"),
        (Decimal("1.500"), "1.5"),
        (Decimal("1E+2"), "100"),
        (Decimal("-0.000"), "0"),
        (Decimal("12345678901234567890.123456789012345"), "12345678901234567890.123456789012345"),
        (" 42 ", "42"),
        ("+42.50", "42.5"),
        ("-2e3", "-2000"),
        (".5", "0.5"),
        ("5.", "5"),
    ],
)
def test_numbers_are_written_in_plain_canonical_digits(value: object, written: str) -> None:
    assert fmt(NUMBER, value) == written


@pytest.mark.parametrize(
    "value",
    [
        "abc",
        "1,000",
        "12abc",
        "1e",
        "nan",
        "inf",
        "٣",
        "0x10",
        True,
        False,
        float("nan"),
        float("inf"),
        Decimal("NaN"),
        Decimal("-Infinity"),
        "1e99999",
        [1],
    ],
)
def test_non_numbers_are_rejected_never_coerced(value: object) -> None:
    rejected(NUMBER, value)


@settings(deadline=None, max_examples=300)
@given(
    st.one_of(
        st.integers(-(10**30), 10**30),
        st.floats(allow_nan=False, allow_infinity=False),
        st.decimals(allow_nan=False, allow_infinity=False, places=None),
    )
)
def test_number_text_is_canonical_and_keeps_the_exact_value(value: int | float | Decimal) -> None:
    text = fmt(NUMBER, value)
    assert text is not None
    assert re.fullmatch(r"0|-?(?:0|[1-9][0-9]*)(?:\.[0-9]*[1-9])?", text), text
    exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    assert Decimal(text) == exact
    # The same value written another way gives the same text (stable hashes).
    assert fmt(NUMBER, text) == text
    assert fmt(NUMBER, format(exact, "E") if exact else "0") == text


# --- bool ---


def test_bools_write_true_and_false() -> None:
    assert (fmt(BOOL, True), fmt(BOOL, False)) == ("true", "false")
    assert (fmt(BOOL, " TRUE "), fmt(BOOL, "False")) == ("true", "false")


@pytest.mark.parametrize("value", [1, 0, "yes", "1", "t", 1.0])
def test_other_values_are_not_bools(value: object) -> None:
    assert "not a bool" in rejected(BOOL, value).reason


# --- dates ---


def test_dates_from_dates_aware_datetimes_and_iso_text() -> None:
    plus2 = timezone(timedelta(hours=2))
    assert fmt(DATE, date(2024, 2, 29)) == "2024-02-29"
    assert fmt(DATE, datetime(2024, 3, 1, 1, 30, tzinfo=plus2)) == "2024-02-29"  # its UTC date
    assert fmt(DATE, "2024-02-29") == "2024-02-29"
    assert fmt(DATE, "2024-03-01T01:30:00+02:00") == "2024-02-29"


def test_datetimes_are_utc_with_milliseconds() -> None:
    plus2 = timezone(timedelta(hours=2))
    moment = datetime(2024, 3, 1, 1, 30, 5, 123456, tzinfo=plus2)
    assert fmt(DATETIME, moment) == "2024-02-29T23:30:05.123Z"
    assert fmt(DATETIME, "2024-02-29T23:30:05Z") == "2024-02-29T23:30:05.000Z"
    assert fmt(DATETIME, datetime(5, 1, 2, tzinfo=UTC)) == "0005-01-02T00:00:00.000Z"


@pytest.mark.parametrize(
    ("spec", "value", "reason"),
    [
        (DATE, "2024-02-30", "not an ISO 8601 date"),
        (DATE, "29/02/2024", "not an ISO 8601 date"),
        (DATE, datetime(2024, 1, 1), "no time zone"),
        (DATE, "2024-01-01T10:00:00", "no time zone"),
        (DATE, 20240101, "must be a date"),
        (DATETIME, date(2024, 1, 1), "a date without a time"),
        (DATETIME, "2024-01-01", "a date without a time"),
        (DATETIME, datetime(2024, 1, 1), "no time zone"),
    ],
)
def test_bad_dates_are_rejected(spec: FieldSpec, value: object, reason: str) -> None:
    assert reason in rejected(spec, value).reason


# --- enum ---


def test_enum_values_must_be_an_option() -> None:
    assert fmt(ENUM, " CUS ") == "CUS"
    error = rejected(ENUM, "cus")
    assert "'cus' is not one of the options [MQL, CUS] (did you mean 'CUS'?)" in error.reason
    assert "did you mean" not in rejected(ENUM, "PRO").reason


# --- budgets and specs ---


def test_every_scalar_type_obeys_max_length() -> None:
    spec = FieldSpec("n", FieldType.NUMBER, max_length=3)
    assert fmt(spec, 999) == "999"
    assert "over this field's limit of 3" in rejected(spec, 1000).reason


def test_validate_spec_reports_every_problem() -> None:
    assert validate_spec(ENUM) == []
    problems = validate_spec(FieldSpec("e", FieldType.ENUM, max_length=0))
    assert [p.message for p in problems] == [
        "max_length must be at least 1, got 0",
        "an enum field needs options: the values it accepts",
    ]
    assert all(p.field == "e" for p in problems)
    assert validate_spec(FieldSpec("t", FieldType.TOKENS, max_length=2))
    assert validate_spec(FieldSpec("s", options=("a",)))
