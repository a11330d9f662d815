"""Credentials: where secrets live, reading them at run time, and spotting one written in a file.

Secrets never appear in ``syncer.yaml``: a destination's ``credentials`` name where each lives
(``env:HUBSPOT_TOKEN`` or ``prefect-secret:hubspot-token``) and are read only when a run starts
(:func:`resolve_credentials`). syncer itself never imports Prefect: the flows layer passes a
``secret_loader`` that reads Secret blocks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Protocol

from pydantic import SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from syncer.errors import ConfigError, Problem


class Destination(Protocol):
    """What :func:`resolve_credentials` reads of a destination (``syncer.config``'s
    ``DestinationConfig``): its name, its file, its credential references and their lines."""

    @property
    def name(self) -> str: ...

    @property
    def source_file(self) -> str: ...

    @property
    def credentials(self) -> Mapping[str, str]: ...

    def line_of(self, *loc: str | int) -> int | None: ...


#: Reads a Prefect Secret block by name and returns its value (the flows layer provides one).
SecretLoader = Callable[[str], str]

ENV_PREFIX = "env:"
PREFECT_PREFIX = "prefect-secret:"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Prefect block document names: lowercase letters, digits and dashes.
_BLOCK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
# Words that mark a setting as a secret; matched against the parts of a snake/kebab/camel name.
_SECRET_WORDS = frozenset(
    {"token", "password", "passwd", "secret", "key", "apikey", "credential", "credentials"}
)
# Values that are secrets whatever the key they sit under: a HubSpot private app token, a
# Salesforce session id or OAuth access token, a JWT, an HTTP bearer header.
_SECRET_VALUE = re.compile(
    r"^(?:pat-[a-z]{2}[0-9]+-[0-9a-f-]{8,}"
    r"|00D[0-9A-Za-z]{12,15}![0-9A-Za-z._]{16,}"
    r"|eyJ[0-9A-Za-z_-]{8,}\.[0-9A-Za-z_-]+\.[0-9A-Za-z_-]*"
    r"|bearer\s+\S{8,})$",
    re.IGNORECASE,
)


def credential_reference(ref: str) -> str:
    """Accept ``env:VAR`` or ``prefect-secret:block-name``; anything else is a literal secret."""
    if ref.startswith(ENV_PREFIX):
        if not _ENV_NAME.match(ref[len(ENV_PREFIX) :]):
            raise ValueError(f"{ref!r} is not a valid environment variable reference")
    elif ref.startswith(PREFECT_PREFIX):
        if not _BLOCK_NAME.match(ref[len(PREFECT_PREFIX) :]):
            raise ValueError(
                f"{ref!r} is not a valid Prefect block name (lowercase letters, digits, dashes)"
            )
    else:
        # Never echo the value: it is probably a real secret.
        raise ValueError(
            f"a literal value is not allowed here; secrets never go in the file. Put the secret "
            f"in an environment variable and write '{ENV_PREFIX}VARIABLE', or in a Prefect Secret "
            f"block and write '{PREFECT_PREFIX}block-name'"
        )
    return ref


def is_secret_value(value: object) -> bool:
    """True for a value that is a secret whatever key it sits under (a token, a session id)."""
    return isinstance(value, str) and bool(_SECRET_VALUE.match(value.strip()))


def url_has_password(url: object) -> bool:
    """True for a database URL that holds a password."""
    if not isinstance(url, str):
        return False
    try:
        return bool(make_url(url).password)
    except ArgumentError:
        return False  # the schema reports a malformed URL


def looks_secret(key: str) -> bool:
    """True for a setting named like a secret (``api_key``, ``accessToken``, ``password``)."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower().replace("-", "_").split("_")
    return any(w in _SECRET_WORDS for w in words)


def misplaced_secret(where: str, key: str, value: object) -> tuple[str, str] | None:
    """``(message, hint)`` when the setting ``key`` (at ``where``) is named like a secret or
    holds one, else None. The value is never in the message: it may be a real secret."""
    if looks_secret(key):
        return (
            f"{where} looks like a secret; settings are for non-secret options and may be printed",
            f"Move it to credentials as '{key}: {ENV_PREFIX}VARIABLE' (an environment variable) "
            f"or '{key}: {PREFECT_PREFIX}block-name' (a Prefect Secret block).",
        )
    if is_secret_value(value):
        return (
            f"{where} holds what looks like an access token or session id; secrets never go in "
            "the file",
            f"Put it in an environment variable and reference it under credentials as "
            f"'{ENV_PREFIX}VARIABLE' (or '{PREFECT_PREFIX}block-name' for a Prefect Secret block).",
        )
    return None


# --- credentials ----------------------------------------------------------------------------------


class _Unreadable(Exception):
    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def _read_secret(ref: str, env: Mapping[str, str], secret_loader: SecretLoader | None) -> str:
    """The secret ``ref`` names (``env:VAR`` or ``prefect-secret:NAME``); :class:`_Unreadable`
    says why it cannot be read."""
    if ref.startswith(ENV_PREFIX):
        var = ref[len(ENV_PREFIX) :]
        value = env.get(var)
        if not value:
            raise _Unreadable(
                f"environment variable {var} is not set", f"Export {var} before running syncer."
            )
        return value
    block = ref[len(PREFECT_PREFIX) :]
    if secret_loader is None:
        raise _Unreadable(
            f"Prefect Secret block {block!r} can only be read when syncer runs as a Prefect flow",
            "Run the Prefect flow, or use 'env:VARIABLE' for command-line runs.",
        )
    try:
        return secret_loader(block)
    except (LookupError, ValueError) as exc:  # Prefect: ValueError for a block that is missing
        raise _Unreadable(
            f"cannot read Prefect Secret block {block!r}: {exc}",
            f"Create it: prefect block create secret (name {block!r}).",
        ) from None


def resolve_credentials(
    dest: Destination,
    *,
    environ: Mapping[str, str] | None = None,
    secret_loader: SecretLoader | None = None,
) -> dict[str, SecretStr]:
    """Read every credential of ``dest`` from where it lives; report every missing one at once.

    ``env:VAR`` reads the environment (``environ``, default the process environment);
    ``prefect-secret:NAME`` calls ``secret_loader(NAME)``, which only the Prefect flows provide.
    """
    env = os.environ if environ is None else environ
    out: dict[str, SecretStr] = {}
    problems: list[Problem] = []
    for key, ref in dest.credentials.items():
        try:
            out[key] = SecretStr(_read_secret(ref, env, secret_loader))
        except _Unreadable as exc:
            problems.append(
                Problem(
                    f"destinations.{dest.name}.credentials.{key}: {exc.message}",
                    file=dest.source_file,
                    line=dest.line_of("credentials", key),
                    hint=exc.hint,
                )
            )
    if problems:
        raise ConfigError(problems, summary=f"credentials of destination {dest.name!r}")
    return out
