"""The base for HTTP destinations: every request a connector makes goes through one helper.

:meth:`HttpConnector._call` owns what every HTTP destination needs, so that no connector carries
its own copy:

* **the status → action table** (:mod:`syncer.connectors.http_status`), refined by the
  connector's ``status_overrides``: retry (``RetriableError`` with the answer's Retry-After),
  bisect (``BatchRejected``) or stop (``FatalError``);
* **transport failures** — connection refused, DNS, timeouts, a dropped connection — become a
  ``RetriableError`` naming the request; a TLS certificate the client does not trust becomes a
  ``ConfigError`` (waiting does not fix it);
* **rate-limit headers** of every answer go to the engine's limiter
  (:meth:`Connector.report_rate_limit`);
* **the daily request budget**: once an answer says that ``daily_limit_share`` of the day's
  budget is used, the next request is refused with a ``FatalError`` before it is sent (syncer
  must not starve the destination's other integrations); a 429 with the budget spent is fatal,
  never retried;
* **one re-authentication on 401**, for a connector that can get a new session
  (:meth:`HttpConnector._reauthenticate`; the default cannot).

A connector adapts its client with a ``send`` function that makes one request and returns an
:class:`HttpAnswer` whatever the status (its client's exceptions for error statuses turned back
into answers); it parses the body and maps per-record results, nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, final

from pydantic import Field

from syncer.connectors.base import Connector, ConnectorConfig
from syncer.connectors.http_status import (
    Failure,
    StatusRule,
    as_retriable,
    classify,
    failure_text,
    is_tls_error,
    raise_for_status,
    rate_limit_info,
)
from syncer.errors import ConfigError, FatalError, SyncerError

__all__ = ["HttpAnswer", "HttpConfig", "HttpConnector"]


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """One HTTP response, whatever the client that received it."""

    status: int
    headers: Mapping[str, str] | Iterable[tuple[str, str]]
    body: bytes | str | None

    @property
    def text(self) -> str:
        if isinstance(self.body, bytes):
            return self.body.decode("utf-8", "replace")
        return self.body or ""

    def json(self) -> Any:
        """The body parsed as JSON; None for an empty body."""
        return json.loads(self.body) if self.body else None


class HttpConfig(ConnectorConfig):
    """Settings every HTTP destination has (a connector's config model extends it)."""

    timeout: float = Field(default=30.0, gt=0)
    #: The share of the destination's daily request budget syncer may use; the run stops
    #: before the next request once the destination reports that much used.
    daily_limit_share: float = Field(default=1.0, gt=0, le=1)


HttpConfigT = TypeVar("HttpConfigT", bound=HttpConfig)


class HttpConnector(Connector[HttpConfigT]):
    """Base class of connectors that speak HTTP. See the module docstring.

    Author hooks: ``status_overrides`` (rules tried before the shared table) and
    :meth:`_reauthenticate`. :meth:`_call` and :meth:`_check_call` are ``@final``.
    """

    #: Rules tried before the shared status table (e.g. Salesforce's 403 REQUEST_LIMIT_EXCEEDED).
    status_overrides: ClassVar[Sequence[StatusRule]] = ()

    def __init__(self, config: HttpConfigT) -> None:
        super().__init__(config)
        self._budget_spent: str | None = None

    @final
    def _call(
        self, what: str, send: Callable[[], HttpAnswer], *, ok: Collection[int] = ()
    ) -> HttpAnswer:
        """Send one request: budget checked first, limits reported, failures mapped to syncer's
        errors. ``what`` names the request in messages; statuses in ``ok`` are returned to the
        caller instead of raised (e.g. a 409 that means "already there")."""
        label = f"{self.name} {what}"
        if self._budget_spent is not None:
            raise FatalError(self._budget_spent)
        answer = self._attempt(label, send)
        if answer.status == 401 and 401 not in ok and self._reauthenticate():
            answer = self._attempt(label, send)
        if answer.status not in ok:
            self._raise_for_status(label, answer)
        return answer

    @final
    def _check_call(self, what: str, send: Callable[[], HttpAnswer]) -> HttpAnswer:
        """:meth:`_call` for ``check()``: credentials the destination refuses (the table's
        config failures, 401 and 403) raise ``ConfigError`` — nothing was written yet."""
        answer = self._call(what, send, ok=(401, 403))
        if answer.status in (401, 403):
            rule = classify(answer.status, answer.body, overrides=self.status_overrides)
            label = f"{self.name} {what}"
            if rule.failure is Failure.CONFIG:
                raise ConfigError(failure_text(answer.status, answer.body, rule, what=label))
            self._raise_for_status(label, answer)
        return answer

    def _reauthenticate(self) -> bool:
        """Get a new session after a 401; True if the request should be sent once more.
        Author hook: the default cannot, and the 401 stops the run."""
        return False

    def _raise_for_status(self, label: str, answer: HttpAnswer) -> None:
        raise_for_status(
            answer.status, answer.headers, answer.body, what=label, overrides=self.status_overrides
        )

    def _attempt(self, label: str, send: Callable[[], HttpAnswer]) -> HttpAnswer:
        try:
            answer = send()
        except SyncerError:
            raise
        except Exception as exc:
            retriable = as_retriable(exc, what=label)
            if retriable is not None:
                raise retriable from exc
            if is_tls_error(exc):
                raise ConfigError(
                    f"{label}: the TLS connection failed ({type(exc).__name__}: {exc}); check "
                    "the destination's host setting and, for a private CA, the certificate "
                    "bundle it is verified against"
                ) from exc
            raise
        self._observe(answer)
        return answer

    def _observe(self, answer: HttpAnswer) -> None:
        info = rate_limit_info(answer.headers)
        if info is None:
            return
        self.report_rate_limit(info)
        total, left = info.daily_limit, info.daily_remaining
        share = self.config.daily_limit_share
        if total and left is not None and total - left >= share * total:
            self._budget_spent = (
                f"{self.name}: {total - left:,} of the destination's {total:,} daily API "
                f"requests are used, at or over the {share:.0%} share syncer may use "
                "(daily_limit_share); the run stops here and the next run resumes where it stopped"
            )
