"""The base for HTTP destinations: every request through one helper, with one set of rules for
statuses, transport errors, rate-limit headers, the daily budget and re-authentication."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import ClassVar

import pytest
import requests

from syncer.connectors.base import (
    Capabilities,
    ConnectorConfig,
    ObjectSpec,
    RateLimitInfo,
    WriteRecord,
    WriteResult,
)
from syncer.connectors.http import HttpAnswer, HttpConfig, HttpConnector
from syncer.connectors.http_status import Action, Failure, StatusRule
from syncer.errors import ConfigError, FatalError, RetriableError


class _Config(HttpConfig):
    pass


class _Scripted(HttpConnector[_Config]):
    """Answers from a script, one per request; counts what was sent."""

    name: ClassVar[str] = "scripted"
    config_model: ClassVar[type[ConnectorConfig]] = _Config
    capabilities: ClassVar[Capabilities] = Capabilities(max_batch=10)
    objects: ClassVar[dict[str, ObjectSpec]] = {"things": ObjectSpec("things", "id")}
    status_overrides: ClassVar[Sequence[StatusRule]] = (
        StatusRule(403, Action.FATAL, Failure.TRANSIENT, "quota spent", body_contains="QUOTA"),
    )

    def __init__(self, *answers: HttpAnswer | Exception, share: float = 1.0) -> None:
        super().__init__(_Config(daily_limit_share=share))
        self.script = list(answers)
        self.sent = 0
        self.logins = 0
        self.can_login = False
        self.seen: list[RateLimitInfo] = []
        self.set_rate_observer(self.seen.append)

    def write(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
        self._call("POST things", self.send)
        return [WriteResult(r.key, r.key) for r in batch]

    def check(self) -> None:
        self._check_call("GET me", self.send)

    def send(self) -> HttpAnswer:
        self.sent += 1
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    def _reauthenticate(self) -> bool:
        self.logins += 1
        return self.can_login


OK = HttpAnswer(200, {}, b"{}")


def _daily(used: int, total: int = 100) -> dict[str, str]:
    return {"X-RateLimit-Daily": str(total), "X-RateLimit-Daily-Remaining": str(total - used)}


def test_a_connection_error_is_retriable_and_names_the_request() -> None:
    connector = _Scripted(requests.ConnectionError("Connection refused"))
    with pytest.raises(RetriableError, match=r"scripted POST things: connection failed"):
        connector.write("things", [])


def test_an_untrusted_certificate_is_a_config_error_not_retried() -> None:
    cause = ssl.SSLCertVerificationError("certificate verify failed")
    error = requests.exceptions.SSLError(cause)
    with pytest.raises(ConfigError, match=r"TLS connection failed.*certificate bundle"):
        _Scripted(error).write("things", [])


def test_rate_limit_headers_reach_the_engines_limiter() -> None:
    headers = {"X-RateLimit-Max": "100", "X-RateLimit-Remaining": "42"}
    connector = _Scripted(HttpAnswer(200, headers, b"{}"))
    connector.write("things", [])
    assert connector.seen == [RateLimitInfo(limit=100, remaining=42)]


def test_retry_after_is_passed_on_with_a_server_error() -> None:
    connector = _Scripted(HttpAnswer(503, {"Retry-After": "7"}, b"busy"))
    with pytest.raises(RetriableError) as caught:
        connector.write("things", [])
    assert caught.value.retry_after == 7.0


def test_the_run_stops_before_the_configured_share_of_the_daily_budget() -> None:
    connector = _Scripted(
        HttpAnswer(200, _daily(used=89), b"{}"), HttpAnswer(200, _daily(used=90), b"{}"), OK,
        share=0.9,
    )  # fmt: skip
    connector.write("things", [])
    connector.write("things", [])  # 90 of 100 used now: the share is spent
    with pytest.raises(FatalError, match="90 of the destination's 100 daily API requests"):
        connector.write("things", [])
    assert connector.sent == 2  # the third request was never sent


def test_a_429_with_the_daily_budget_spent_stops_and_is_not_retried() -> None:
    connector = _Scripted(HttpAnswer(429, _daily(used=100), b'{"message": "daily limit"}'))
    with pytest.raises(FatalError, match="daily request budget is spent"):
        connector.write("things", [])


def test_a_401_is_sent_once_more_after_a_new_login_and_only_once() -> None:
    connector = _Scripted(HttpAnswer(401, {}, b"expired"), OK)
    connector.can_login = True
    connector.write("things", [])
    assert (connector.logins, connector.sent) == (1, 2)
    again = _Scripted(HttpAnswer(401, {}, b"expired"), HttpAnswer(401, {}, b"expired"))
    again.can_login = True
    with pytest.raises(FatalError, match="authentication failed"):
        again.write("things", [])
    assert (again.logins, again.sent) == (1, 2)


def test_a_401_without_a_way_to_log_in_again_stops_the_run() -> None:
    connector = _Scripted(HttpAnswer(401, {}, b"expired"))
    with pytest.raises(FatalError, match="authentication failed: check the access token"):
        connector.write("things", [])
    assert connector.sent == 1


@pytest.mark.parametrize("status", [401, 403])
def test_check_turns_refused_credentials_into_a_config_error(status: int) -> None:
    connector = _Scripted(HttpAnswer(status, {}, b'{"message": "nope"}'))
    with pytest.raises(ConfigError, match=rf"scripted GET me: HTTP {status}, .*check.* nope"):
        connector.check()


def test_check_keeps_an_overridden_403_fatal_not_a_config_error() -> None:
    connector = _Scripted(HttpAnswer(403, {}, b'{"errorCode": "QUOTA", "message": "spent"}'))
    with pytest.raises(FatalError, match="quota spent"):
        connector.check()


def test_check_passes_on_a_2xx() -> None:
    connector = _Scripted(OK)
    connector.check()
    assert connector.sent == 1
