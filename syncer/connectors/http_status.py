"""One table from an HTTP answer to what the engine does about it.

The base for HTTP destinations (:class:`syncer.connectors.http.HttpConnector`) calls
:func:`raise_for_status` after every response and :func:`as_retriable` on a transport exception,
so no connector writes its own status table and every destination's failures reach the engine as
the same three errors:

======  ============  ==========  =========================================================
status  action        failure     why / what the user is told
======  ============  ==========  =========================================================
429     retry         transient   rate limited: wait Retry-After (seconds or HTTP date), else
                                  the rate-limit interval header; with the daily budget spent
                                  (``*-Daily-Remaining: 0``) → fatal, resume tomorrow
423     retry ≥ 2 s   transient   the resource is locked
477     fatal         transient   destination migration in progress: resume later (Retry-After
                                  can be hours)
408     retry         transient   request timeout
500     retry         transient   server error
502     retry         transient   bad gateway (HubSpot: processing limits)
503     retry         transient   unavailable
504     retry         transient   gateway timeout
401     fatal         config      authentication failed: check the credentials
403     fatal         config      permission denied: check the token's scopes / user permissions
400     bisect        data        one record can make a destination refuse a whole batch:
404     bisect        data        the engine splits the batch to isolate it
409     bisect        data
413     bisect        data
422     bisect        data
4xx     bisect        data        any other client error
5xx     retry         transient   any other server error
other   fatal         system      unexpected (1xx, 3xx): the connector must handle it
======  ============  ==========  =========================================================

A connector refines the table for its destination with ``overrides`` — rules tried first, which
may match a text in the body — e.g. Salesforce's 403 ``REQUEST_LIMIT_EXCEEDED`` (the org's daily
API budget, not a permission problem)::

    StatusRule(403, Action.FATAL, Failure.TRANSIENT, "the org's daily API request limit is "
               "spent; run again once it resets", body_contains="REQUEST_LIMIT_EXCEEDED")
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

from syncer.connectors.base import RateLimitInfo
from syncer.errors import BatchRejected, FatalError, RetriableError

__all__ = [
    "STATUS_TABLE",
    "Action",
    "Failure",
    "StatusRule",
    "as_retriable",
    "classify",
    "destination_message",
    "failure_text",
    "is_tls_error",
    "raise_for_status",
    "rate_limit_info",
    "retry_after_seconds",
]

Headers = Mapping[str, str] | Iterable[tuple[str, str]] | None
MESSAGE_LIMIT = 500  # characters of the destination's message kept in errors


class Action(StrEnum):
    """What the engine does about a failed request."""

    RETRY = "retry"  # RetriableError: back off, same request again
    BISECT = "bisect"  # BatchRejected: split the batch to isolate the bad records
    FATAL = "fatal"  # FatalError: stop the run


class Failure(StrEnum):
    """Whose problem it is, for the message and the run report."""

    TRANSIENT = "transient"  # wait and it goes away
    CONFIG = "config"  # the user fixes credentials or settings
    DATA = "data"  # a record's content
    SYSTEM = "system"  # the destination behaved unexpectedly


@dataclass(frozen=True, slots=True)
class StatusRule:
    """One row of the table. ``body_contains`` (case-sensitive) narrows a connector's override."""

    status: int
    action: Action
    failure: Failure
    message: str
    min_wait: float | None = None
    body_contains: str | None = None


def _rules(
    statuses: Sequence[int], action: Action, failure: Failure, message: str
) -> list[StatusRule]:
    return [StatusRule(s, action, failure, message) for s in statuses]


STATUS_TABLE: tuple[StatusRule, ...] = (
    StatusRule(429, Action.RETRY, Failure.TRANSIENT, "rate limited"),
    StatusRule(423, Action.RETRY, Failure.TRANSIENT, "resource locked", min_wait=2.0),
    StatusRule(
        477,
        Action.FATAL,
        Failure.TRANSIENT,
        "destination migration in progress; nothing more can be written now — run again later "
        "(state is saved, the run resumes where it stopped)",
    ),
    StatusRule(408, Action.RETRY, Failure.TRANSIENT, "request timeout"),
    *_rules((500, 502, 503, 504), Action.RETRY, Failure.TRANSIENT, "server error"),
    StatusRule(
        401,
        Action.FATAL,
        Failure.CONFIG,
        "authentication failed: check the access token or credentials in the destination's "
        "settings (expired, revoked, or for another account?)",
    ),
    StatusRule(
        403,
        Action.FATAL,
        Failure.CONFIG,
        "permission denied: check the token's scopes and the integration user's permissions "
        "for this object",
    ),
    *_rules((400, 404, 409, 413, 422), Action.BISECT, Failure.DATA, "refused the batch"),
)
_BY_STATUS = {rule.status: rule for rule in STATUS_TABLE}
_CLIENT_ERROR = StatusRule(0, Action.BISECT, Failure.DATA, "refused the batch")
_SERVER_ERROR = StatusRule(0, Action.RETRY, Failure.TRANSIENT, "server error")
_UNEXPECTED = StatusRule(0, Action.FATAL, Failure.SYSTEM, "unexpected status")


def classify(
    status: int, body: object = None, *, overrides: Sequence[StatusRule] = ()
) -> StatusRule:
    """The rule for a non-2xx ``status``: a matching override first, then the table."""
    text = _text(body) if any(r.body_contains for r in overrides) else ""
    for rule in overrides:
        if rule.status == status and (rule.body_contains is None or rule.body_contains in text):
            return rule
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if 400 <= status < 500:
        return _CLIENT_ERROR
    if 500 <= status < 600:
        return _SERVER_ERROR
    return _UNEXPECTED


def raise_for_status(
    status: int,
    headers: Headers,
    body: object,
    *,
    what: str,
    overrides: Sequence[StatusRule] = (),
) -> None:
    """Raise the syncer error for a failed response; return quietly on 2xx.

    ``what`` names the request ("hubspot POST /crm/v3/objects/contacts/batch/upsert"); the
    message adds the status, the table's explanation and the destination's own message.
    207 is a 2xx: per-record errors inside it are the connector's to map to results.
    """
    if 200 <= status < 300:
        return
    rule = classify(status, body, overrides=overrides)
    detail = destination_message(body)
    text = failure_text(status, body, rule, what=what)
    retry_after = retry_after_seconds(headers)
    if rule.action is Action.RETRY:
        limits = rate_limit_info(headers)
        daily = limits is not None and limits.daily_remaining == 0
        if status == 429 and (daily or _daily_policy(body)):
            # HubSpot's body says DAILY and OAuth apps get no daily headers: stop, never retry.
            size = f" ({limits.daily_limit} a day)" if limits and limits.daily_limit else ""
            raise FatalError(
                f"{what}: HTTP 429, the destination's daily request budget is spent{size}; "
                "run again after it resets" + (f" — {detail}" if detail else "")
            )
        if retry_after is None and status == 429 and limits is not None:
            retry_after = limits.interval_seconds
        if rule.min_wait is not None:
            retry_after = max(retry_after or 0.0, rule.min_wait)
        raise RetriableError(text, retry_after=retry_after, status=status)
    if rule.action is Action.BISECT:
        raise BatchRejected(text, status=status)
    if retry_after is not None:
        text += f" (the destination suggests waiting {_duration(retry_after)})"
    raise FatalError(text)


def failure_text(status: int, body: object, rule: StatusRule, *, what: str) -> str:
    """The message for a failed request: what, the status, the table's explanation and the
    destination's own message."""
    detail = destination_message(body)
    return f"{what}: HTTP {status}, {rule.message}" + (f" — {detail}" if detail else "")


def retry_after_seconds(headers: Headers, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), else None."""
    value = _header(headers, "retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT by definition
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def rate_limit_info(headers: Headers) -> RateLimitInfo | None:
    """What the rate-limit headers say, for ``Connector.report_rate_limit``; None if none.

    Reads the ``*-RateLimit-Max|Limit``, ``-Remaining``, ``-Interval-Milliseconds``, ``-Daily``
    and ``-Daily-Remaining`` family (HubSpot's ``X-HubSpot-RateLimit-*``, generic
    ``X-RateLimit-*``) and Salesforce's ``Sforce-Limit-Info: api-usage=N/M``.
    """
    found: dict[str, str] = {}
    for name, value in _items(headers):
        lower = name.lower()
        if "ratelimit-" in lower:
            found[lower.split("ratelimit-", 1)[1]] = value
        elif lower == "sforce-limit-info":
            found["sforce"] = value
    if not found:
        return None
    limit = _int(found.get("max") or found.get("limit"))
    interval_ms = _int(found.get("interval-milliseconds"))
    daily_limit = _int(found.get("daily"))
    daily_remaining = _int(found.get("daily-remaining"))
    if "sforce" in found and "api-usage=" in found["sforce"]:
        used_total = found["sforce"].split("api-usage=", 1)[1].split(",")[0].split("/")
        used, total = (_int(p) for p in (*used_total, "", "")[:2])
        if used is not None and total is not None:
            daily_limit, daily_remaining = total, max(total - used, 0)
    return RateLimitInfo(
        limit=limit,
        remaining=_int(found.get("remaining")),
        interval_seconds=interval_ms / 1000 if interval_ms else None,
        daily_limit=daily_limit,
        daily_remaining=daily_remaining,
    )


def _daily_policy(body: object) -> bool:
    """Whether a 429's body names the daily budget (HubSpot: ``"policyName": "DAILY"``)."""
    return re.search(r'"policyName"\s*:\s*"DAILY"', _text(body)) is not None


def destination_message(body: object) -> str:
    """The destination's own explanation from an error body (JSON or text), shortened."""
    text = _text(body).strip()
    if not text:
        return ""
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        return _shorten(" ".join(text.split()))
    return _shorten(_message_of(parsed) or " ".join(text.split()))


def as_retriable(exc: BaseException, *, what: str = "request") -> RetriableError | None:
    """A RetriableError for a connection error or timeout (builtin, urllib3, requests); None for
    anything else, which the caller re-raises. TLS certificate errors are not retried: waiting
    does not fix them."""
    if isinstance(exc, RetriableError):
        return exc
    try:
        import urllib3.exceptions as u3

        if isinstance(exc, u3.MaxRetryError) and exc.reason is not None:
            return as_retriable(exc.reason, what=what)
        if isinstance(exc, u3.SSLError):
            return None
        if isinstance(exc, (u3.TimeoutError, u3.ProtocolError, u3.ProxyError)):
            return _transport(exc, what)
    except ImportError:  # pragma: no cover - urllib3 comes with the HTTP clients
        pass
    try:
        import requests.exceptions as rq

        if isinstance(exc, rq.SSLError):
            return None
        if isinstance(exc, (rq.ConnectionError, rq.Timeout, rq.ChunkedEncodingError)):
            return _transport(exc, what)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return _transport(exc, what)
    return None


def is_tls_error(exc: BaseException) -> bool:
    """True for a TLS failure (an untrusted certificate, a refused handshake), however the
    client wrapped it: not retried, the user fixes the host or the certificate bundle."""
    import ssl

    seen: BaseException | None = exc
    for _ in range(8):  # requests and the HubSpot client wrap urllib3's, which wraps ssl's
        if seen is None:
            break
        if isinstance(seen, ssl.SSLError) or type(seen).__name__ == "SSLError":
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# --- helpers ------------------------------------------------------------------------------------


def _transport(exc: BaseException, what: str) -> RetriableError:
    kind = (
        "timed out"
        if isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower()
        else "connection failed"
    )
    return RetriableError(f"{what}: {kind} ({type(exc).__name__}: {exc})")


def _items(headers: Headers) -> Iterable[tuple[str, str]]:
    if headers is None:
        return ()
    if isinstance(headers, Mapping):
        return headers.items()
    return headers


def _header(headers: Headers, name: str) -> str | None:
    for key, value in _items(headers):
        if key.lower() == name:
            return str(value)
    return None


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _text(body: object) -> str:
    if body is None:
        return ""
    if isinstance(body, bytes | bytearray):
        return body.decode("utf-8", "replace")
    if isinstance(body, str):
        return body
    try:
        return json.dumps(body, default=str)
    except (TypeError, ValueError):
        return str(body)


def _message_of(parsed: Any) -> str:
    """HubSpot ``{"message", "errors": [...]}``, Salesforce ``[{"errorCode", "message"}]``,
    OAuth ``{"error", "error_description"}``."""
    if isinstance(parsed, list):
        return "; ".join(m for m in (_message_of(p) for p in parsed[:5]) if m)
    if not isinstance(parsed, dict):
        return str(parsed) if parsed is not None else ""
    message = parsed.get("message") or parsed.get("error_description") or parsed.get("error")
    code = parsed.get("errorCode") or parsed.get("category") or parsed.get("errorType")
    parts = [f"{code}: {message}" if code and message else str(message or code or "")]
    errors = parsed.get("errors")
    if isinstance(errors, list):
        parts.extend(m for m in (_message_of(e) for e in errors[:5]) if m and m not in parts)
    return "; ".join(p for p in parts if p)


def _shorten(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
