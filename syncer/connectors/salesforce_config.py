"""Salesforce's settings, and signing in: a given session (instance URL + session id), a
username/password (+ security token) SOAP login, or a JWT bearer token (connected app). Whatever
goes wrong signing in is a syncer error that names the host and what to check — never the
client's traceback:

* credentials refused → :class:`~syncer.errors.ConfigError` with the settings to check;
* the host unreachable, a timeout, a 5xx → :class:`~syncer.errors.RetriableError`;
* an untrusted TLS certificate, an unreadable or invalid JWT key file → ``ConfigError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
import requests
from pydantic import Field, SecretStr, model_validator
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceAuthenticationFailed

from syncer.connectors.http import HttpConfig
from syncer.connectors.http_status import as_retriable, is_tls_error
from syncer.errors import ConfigError, RetriableError

__all__ = ["SalesforceConfig", "login", "login_host", "relogin"]

_CHECK = {
    "password": "username, password and security_token (Salesforce mails a new security token "
    "when the password changes; none is needed from a trusted IP range)",
    "jwt": "username, consumer_key, that jwt_key_file matches the certificate uploaded to the "
    "connected app, and that the user is pre-authorized for the app",
}


class SalesforceConfig(HttpConfig):
    """How to reach the org: a session (instance URL + session id), a username/password/security
    token login, or a JWT bearer (consumer key + private key file); bulk and budget settings."""

    instance_url: str | None = None
    session_id: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    security_token: SecretStr | None = None
    domain: str = "login"  # "test" for sandboxes
    consumer_key: str | None = None
    jwt_key_file: Path | None = None
    api_version: str = "59.0"
    bulk_threshold: int = Field(default=2000, ge=1)
    bulk_batch: int = Field(default=10_000, ge=1)
    bulk_poll_seconds: float = Field(default=2.0, gt=0)
    #: CSV bytes per Bulk API 2.0 upload; a chunk over it is split into several jobs.
    bulk_max_bytes: int = Field(default=100_000_000, ge=1_000, le=150_000_000)
    #: How long one attempt polls a running bulk job; past it the attempt is retried and polls
    #: the same job again (never submits it twice).
    bulk_wait_seconds: float = Field(default=600.0, gt=0)
    daily_limit_share: float = Field(default=0.9, gt=0, le=1)  # the org's other integrations
    #: TLS verification: True, False, or a CA bundle path (the emulator's self-signed cert).
    verify: bool | str = True
    allow_create_fields: bool = False
    timeout: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _one_login(self) -> SalesforceConfig:
        ways = {
            "session": self.session_id is not None and self.instance_url is not None,
            "password": self.username is not None and self.password is not None,
            "jwt": self.username is not None
            and self.consumer_key is not None
            and self.jwt_key_file is not None,
        }
        if not any(ways.values()):
            raise ValueError(
                "give instance_url + session_id, or username + password (+ security_token), or "
                "username + consumer_key + jwt_key_file (JWT bearer)"
            )
        return self


def login_host(config: SalesforceConfig) -> str:
    """Where ``config`` signs in: the instance for a given session, else the login domain."""
    if config.session_id is not None and config.instance_url is not None:
        return config.instance_url
    return f"https://{config.domain}.salesforce.com"


def login(config: SalesforceConfig) -> Salesforce:
    """A signed-in client on a session of its own (TLS verification as ``config.verify`` says)."""
    session = requests.Session()
    session.verify = config.verify
    if isinstance(config.verify, str):
        session.trust_env = False  # else REQUESTS_CA_BUNDLE overrides verify
    common: dict[str, Any] = {"version": config.api_version, "session": session}
    if config.session_id is not None and config.instance_url is not None:
        # No request is made: a refused session shows at the first call (check() in preflight).
        return Salesforce(
            instance_url=config.instance_url,
            session_id=config.session_id.get_secret_value(),
            **common,
        )
    how = "jwt" if config.consumer_key is not None and config.jwt_key_file is not None else ""
    where = f"salesforce login at {login_host(config)}"
    try:
        if how == "jwt":
            return Salesforce(
                username=config.username,
                consumer_key=config.consumer_key,
                privatekey_file=str(config.jwt_key_file),
                domain=config.domain,
                **common,
            )
        return Salesforce(
            username=config.username,
            password=config.password.get_secret_value() if config.password else None,
            security_token=(
                config.security_token.get_secret_value() if config.security_token else ""
            ),
            domain=config.domain,
            **common,
        )
    except SalesforceAuthenticationFailed as exc:
        if isinstance(exc.code, int) and exc.code >= 500:
            raise RetriableError(
                f"{where}: HTTP {exc.code}, Salesforce is not answering logins now; try again "
                "later", status=exc.code
            ) from exc  # fmt: skip
        raise ConfigError(
            f"{where} refused: {exc.code}: {exc.auth_message.strip() or 'no reason given'}. "
            f"Check {_CHECK[how or 'password']}, and domain ({config.domain!r}: 'login' for "
            "production, 'test' for a sandbox, or the org's My Domain)"
        ) from exc
    except OSError as exc:
        if how == "jwt" and exc.filename is not None:
            raise ConfigError(
                f"salesforce: jwt_key_file {config.jwt_key_file} cannot be read "
                f"({exc.strerror or exc}); give the path of the connected app's private key"
            ) from exc
        retriable = as_retriable(exc, what=where)
        if retriable is not None:
            raise RetriableError(
                f"{retriable}. Check the network (proxy, firewall) and domain "
                f"({config.domain!r}: 'login', 'test', or the org's My Domain)"
            ) from exc
        if is_tls_error(exc):
            raise ConfigError(
                f"{where}: the TLS connection failed ({exc}); check domain and, behind a "
                "proxy that re-signs TLS, the CA bundle in verify"
            ) from exc
        raise
    except (ValueError, jwt.PyJWTError) as exc:  # not a private key PyJWT can sign with
        if how != "jwt":
            raise
        raise ConfigError(
            f"salesforce: jwt_key_file {config.jwt_key_file} is not a usable RSA private key "
            f"({exc}); give the PEM private key of the connected app's certificate"
        ) from exc


def relogin(config: SalesforceConfig) -> Salesforce:
    """Sign in again after a 401 INVALID_SESSION_ID (the session timed out or was revoked):
    possible with a username/password or JWT login, not with a bare session id."""
    if config.session_id is not None and config.instance_url is not None:
        raise ConfigError(
            "salesforce: the session was refused (HTTP 401 INVALID_SESSION_ID: expired or "
            "revoked) and a session_id alone cannot sign in again; give a fresh session_id, or "
            "configure username + password (+ security_token) or a JWT bearer login "
            "(consumer_key + jwt_key_file) so that syncer signs in again by itself"
        )
    return login(config)
