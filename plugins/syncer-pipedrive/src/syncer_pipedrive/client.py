"""The HTTP client under the Pipedrive connector: urllib3 requests to one Pipedrive company,
authenticated by the config's one credential, answered as syncer's HTTP base expects
(:class:`syncer.connectors.http.HttpAnswer`). Thread-safe: urllib3's pool is."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import urllib3

from syncer.connectors.http import HttpAnswer
from syncer_pipedrive.config import PipedriveConfig

__all__ = ["Client"]


class Client:
    """Makes the ``send`` functions :meth:`HttpConnector._call` runs."""

    def __init__(self, config: PipedriveConfig) -> None:
        self._base = config.base_url.rstrip("/")
        self._pool = urllib3.PoolManager(maxsize=8, retries=False, timeout=config.timeout)
        if config.api_token is not None:
            self._auth = {"x-api-token": config.api_token.get_secret_value()}
        else:
            assert config.access_token is not None  # the config model requires one of the two
            self._auth = {"Authorization": f"Bearer {config.access_token.get_secret_value()}"}

    def sender(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Callable[[], HttpAnswer]:
        """One request, sent when called. A 429 without ``Retry-After`` gets one from
        ``x-ratelimit-reset`` (seconds until Pipedrive's burst window resets), so the engine
        waits that long."""
        url = self._base + path + (f"?{urlencode(params)}" if params else "")
        headers = {**self._auth, "Accept": "application/json", "Content-Type": "application/json"}

        def send() -> HttpAnswer:
            data = None if body is None else json.dumps(body)
            got = self._pool.request(method, url, headers=headers, body=data)
            answer = {k.lower(): v for k, v in got.headers.items()}
            if got.status == 429 and "x-ratelimit-reset" in answer:
                answer.setdefault("retry-after", answer["x-ratelimit-reset"])
            return HttpAnswer(got.status, answer, got.data)

        return send

    def close(self) -> None:
        """Close the pooled connections."""
        self._pool.clear()
