"""The HTTP plumbing of the Pipedrive connector: one request, its rate-limit headers reported,
its failures mapped to syncer's errors through the shared status table.

It stands in for syncer's HTTP base for destinations (``syncer.connectors.http``) until that
lands; the connector reaches it through its one ``_call`` helper only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import urllib3

from syncer.connectors.base import RateLimitInfo
from syncer.connectors.http_status import as_retriable, raise_for_status, rate_limit_info
from syncer_pipedrive.config import OVERRIDES, PipedriveConfig

__all__ = ["Transport"]


class Transport:
    """Requests to one Pipedrive company, authenticated by the config's one credential.
    Thread-safe (urllib3's pool)."""

    def __init__(self, config: PipedriveConfig, report: Callable[[RateLimitInfo], None]) -> None:
        self._base = config.base_url.rstrip("/")
        self._pool = urllib3.PoolManager(maxsize=8, retries=False, timeout=config.timeout)
        self._report = report
        if config.api_token is not None:
            self._auth = {"x-api-token": config.api_token.get_secret_value()}
        else:
            assert config.access_token is not None  # the config model requires one of them
            self._auth = {"Authorization": f"Bearer {config.access_token.get_secret_value()}"}

    def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """The parsed answer (``{"success", "data", "additional_data"}``); syncer's error for a
        failure: RetriableError (429 — honouring Retry-After, else x-ratelimit-reset —, 5xx,
        network), BatchRejected (4xx, with its status), FatalError (401, 402, 403)."""
        what = f"pipedrive {method} {path}"
        url = self._base + path + (f"?{urlencode(params)}" if params else "")
        headers = {**self._auth, "Accept": "application/json", "Content-Type": "application/json"}
        try:
            data = None if body is None else json.dumps(body)
            answer = self._pool.request(method, url, headers=headers, body=data)
        except Exception as exc:
            retriable = as_retriable(exc, what=what)
            if retriable is None:
                raise
            raise retriable from exc
        got = {k.lower(): v for k, v in answer.headers.items()}
        if (info := rate_limit_info(got)) is not None:
            self._report(info)
        if answer.status == 429 and "retry-after" not in got and "x-ratelimit-reset" in got:
            got["retry-after"] = got["x-ratelimit-reset"]  # seconds until the window resets
        raise_for_status(answer.status, got, answer.data, what=what, overrides=OVERRIDES)
        return json.loads(answer.data) if answer.data else {}

    def close(self) -> None:
        """Close the pooled connections."""
        self._pool.clear()
