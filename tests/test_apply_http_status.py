"""The one HTTP status table: every destination's failures become the same three errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests.exceptions
import urllib3.exceptions

from syncer.connectors.base import RateLimitInfo
from syncer.connectors.http_status import (
    STATUS_TABLE,
    Action,
    Failure,
    StatusRule,
    as_retriable,
    classify,
    destination_message,
    raise_for_status,
    rate_limit_info,
    retry_after_seconds,
)
from syncer.errors import BatchRejected, FatalError, RetriableError

WHAT = "hubspot POST /crm/v3/objects/contacts/batch/upsert"
HUBSPOT_429 = {
    "status": "error",
    "message": "You have reached your secondly limit.",
    "errorType": "RATE_LIMIT",
    "policyName": "SECONDLY",
}


@pytest.mark.parametrize("status", [200, 201, 204, 207])
def test_a_2xx_raises_nothing(status: int) -> None:
    raise_for_status(status, {}, b"", what=WHAT)


def test_429_honours_retry_after_seconds() -> None:
    with pytest.raises(RetriableError) as exc:
        raise_for_status(429, {"Retry-After": "3"}, json.dumps(HUBSPOT_429), what=WHAT)
    assert exc.value.retry_after == 3.0
    assert exc.value.status == 429
    assert str(exc.value).startswith(f"{WHAT}: HTTP 429, rate limited")
    assert "RATE_LIMIT: You have reached your secondly limit." in str(exc.value)


def test_429_honours_retry_after_as_an_http_date() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    header = {"retry-after": format_datetime(now + timedelta(seconds=90), usegmt=True)}
    assert retry_after_seconds(header, now=now) == 90.0


def test_429_without_retry_after_waits_the_rate_limit_interval() -> None:
    headers = {
        "X-HubSpot-RateLimit-Max": "100",
        "X-HubSpot-RateLimit-Remaining": "0",
        "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
    }
    with pytest.raises(RetriableError) as exc:
        raise_for_status(429, headers, HUBSPOT_429, what=WHAT)
    assert exc.value.retry_after == 10.0


def test_429_with_the_daily_budget_spent_stops_the_run() -> None:
    headers = {"X-HubSpot-RateLimit-Daily": "250000", "X-HubSpot-RateLimit-Daily-Remaining": "0"}
    with pytest.raises(FatalError, match="daily request budget is spent"):
        raise_for_status(429, headers, {**HUBSPOT_429, "policyName": "DAILY"}, what=WHAT)


def test_423_waits_at_least_two_seconds() -> None:
    with pytest.raises(RetriableError) as exc:
        raise_for_status(423, {"Retry-After": "1"}, None, what=WHAT)
    assert exc.value.retry_after == 2.0


def test_477_migration_stops_the_run_and_says_to_resume_later() -> None:
    with pytest.raises(FatalError) as exc:
        raise_for_status(477, {"Retry-After": "7200"}, {"message": "Portal moving"}, what=WHAT)
    text = str(exc.value)
    assert "migration in progress" in text
    assert "run again later" in text
    assert "2.0 h" in text
    assert "Portal moving" in text


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504, 599])
def test_timeouts_and_server_errors_are_retried(status: int) -> None:
    with pytest.raises(RetriableError) as exc:
        raise_for_status(status, {}, "<html>Bad gateway</html>", what=WHAT)
    assert exc.value.status == status
    assert exc.value.retry_after is None


@pytest.mark.parametrize(
    ("status", "hint"), [(401, "check the access token"), (403, "check the token's scopes")]
)
def test_auth_failures_stop_the_run_and_say_what_to_check(status: int, hint: str) -> None:
    body = {
        "status": "error",
        "message": "Authentication credentials not found.",
        "category": "INVALID_AUTHENTICATION",
    }
    with pytest.raises(FatalError) as exc:
        raise_for_status(status, {}, body, what=WHAT)
    assert hint in str(exc.value)
    assert "INVALID_AUTHENTICATION: Authentication credentials not found." in str(exc.value)


@pytest.mark.parametrize("status", [400, 404, 409, 413, 422, 418])
def test_client_errors_on_a_batch_are_bisected(status: int) -> None:
    body = {
        "status": "error",
        "message": "Property values were not valid",
        "category": "VALIDATION_ERROR",
    }
    with pytest.raises(BatchRejected) as exc:
        raise_for_status(status, {}, json.dumps(body).encode(), what=WHAT)
    assert exc.value.status == status
    assert "VALIDATION_ERROR: Property values were not valid" in str(exc.value)


def test_an_unexpected_status_is_fatal() -> None:
    with pytest.raises(FatalError, match="HTTP 302, unexpected status"):
        raise_for_status(302, {"Location": "/login"}, "", what=WHAT)


def test_a_connector_override_maps_salesforce_request_limit_exceeded() -> None:
    rule = StatusRule(
        403,
        Action.FATAL,
        Failure.TRANSIENT,
        "the org's daily API request limit is spent; run again once it resets",
        body_contains="REQUEST_LIMIT_EXCEEDED",
    )
    body = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    with pytest.raises(FatalError, match="daily API request limit is spent") as exc:
        raise_for_status(403, {}, body, what="salesforce PATCH", overrides=[rule])
    assert "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded." in str(exc.value)
    # Any other 403 still means permissions.
    other = [{"message": "no access", "errorCode": "INSUFFICIENT_ACCESS"}]
    assert classify(403, other, overrides=[rule]).failure is Failure.CONFIG


def test_the_table_has_one_rule_per_status() -> None:
    statuses = [rule.status for rule in STATUS_TABLE]
    assert len(statuses) == len(set(statuses))


def test_destination_messages_are_extracted_and_shortened() -> None:
    assert destination_message(None) == ""
    assert destination_message("  plain\n text ") == "plain text"
    oauth = {"error": "invalid_grant", "error_description": "expired"}
    assert destination_message(oauth) == "expired"
    nested = {"message": "2 errors", "errors": [{"message": "bad email"}, {"message": "too long"}]}
    assert destination_message(nested) == "2 errors; bad email; too long"
    assert len(destination_message("x" * 5000)) == 500


def test_hubspot_rate_limit_headers_are_read() -> None:
    headers = [
        ("X-HubSpot-RateLimit-Max", "190"),
        ("X-HubSpot-RateLimit-Remaining", "12"),
        ("X-HubSpot-RateLimit-Interval-Milliseconds", "10000"),
        ("X-HubSpot-RateLimit-Daily", "625000"),
        ("X-HubSpot-RateLimit-Daily-Remaining", "600000"),
    ]
    assert rate_limit_info(headers) == RateLimitInfo(190, 12, 10.0, 625000, 600000)


def test_salesforce_limit_info_is_read_as_a_daily_budget() -> None:
    info = rate_limit_info({"Sforce-Limit-Info": "api-usage=18/15000"})
    assert info == RateLimitInfo(daily_limit=15000, daily_remaining=14982)


def test_no_rate_limit_headers_means_none() -> None:
    assert rate_limit_info({"Content-Type": "application/json"}) is None
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds(None) is None


@pytest.mark.parametrize(
    "exc",
    [
        urllib3.exceptions.NewConnectionError(None, "connection refused"),
        urllib3.exceptions.ReadTimeoutError(None, "/x", "read timed out"),
        urllib3.exceptions.ProtocolError("connection aborted"),
        urllib3.exceptions.MaxRetryError(
            None, "/x", urllib3.exceptions.NewConnectionError(None, "refused")
        ),
        requests.exceptions.ConnectionError("refused"),
        requests.exceptions.ReadTimeout("slow"),
        TimeoutError("timed out"),
        ConnectionResetError("reset by peer"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_connection_errors_and_timeouts_are_retriable(exc: BaseException) -> None:
    retriable = as_retriable(exc, what=WHAT)
    assert isinstance(retriable, RetriableError)
    assert str(retriable).startswith(WHAT)
    assert "connection failed" in str(retriable) or "timed out" in str(retriable)


@pytest.mark.parametrize(
    "exc",
    [
        urllib3.exceptions.SSLError("certificate verify failed"),
        urllib3.exceptions.MaxRetryError(None, "/x", urllib3.exceptions.SSLError("bad cert")),
        requests.exceptions.SSLError("certificate verify failed"),
        ValueError("a bug"),
        KeyError("a bug"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_certificate_errors_and_bugs_are_not_retriable(exc: BaseException) -> None:
    assert as_retriable(exc) is None
