"""The sync configuration, ``syncer.yaml``: store, state, stage ladder, policies, destinations.

Everything wrong with the file is reported at once, each problem with its file and line, before
anything is read or written. Secrets never appear in the file (:mod:`syncer.credentials`): a
destination's ``credentials`` name where each lives; a literal anywhere else is an error (never
echoed): a credential that is not a reference, a setting named like a secret or holding what
looks like a token, a database URL with a password.

Relative paths in the file (mapping files, SQLite databases) are relative to the file itself, so
a config works the same from any working directory (a Prefect worker's included).
"""

from __future__ import annotations

import os
import re
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from syncer.connectors.base import RemovalMode
from syncer.credentials import (
    SecretLoader,
    credential_reference,
    misplaced_secret,
    resolve_credentials,
    url_has_password,
)
from syncer.db import DEFAULT_STORE_URL, STATE_URL_ENV, STORE_URL_ENV
from syncer.errors import ConfigError, Problem
from syncer.model import (
    DEFAULT_ALIASES,
    DEFAULT_CHURNED,
    DEFAULT_ROLLUPS,
    DEFAULT_STAGES,
    StageLadder,
)
from syncer.yamlsrc import Loc, YamlDoc, load_yaml, located_problems

__all__ = [
    "DestinationConfig",
    "PoliciesConfig",
    "ScheduleConfig",
    "SecretLoader",
    "StagesConfig",
    "SyncConfig",
    "build_connector_config",
    "load_config",
    "resolve_credentials",
]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_CONNECTOR = re.compile(r"^[a-z][a-z0-9_.-]*$")
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,?#LW-]+$")


def _database_url(url: str | None) -> str | None:
    if url is not None:
        try:
            make_url(url)
        except ArgumentError:
            raise ValueError(
                f"{url!r} is not a database URL; use e.g. sqlite:///syncer.db or "
                "postgresql+psycopg://user@host:5432/db"
            ) from None
    return url


class _Strict(BaseModel):
    """Unknown keys are errors: a typo must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StagesConfig(_Strict):
    """The lifecycle ladder, lowest stage first."""

    names: tuple[str, ...] = DEFAULT_STAGES
    churned: str = DEFAULT_CHURNED
    #: Other spellings of stage names. Unset: the default aliases that point at a stage of this
    #: ladder and spell none of its names (a custom ladder inherits no ``customer: CUS`` sans CUS).
    aliases: dict[str, str] | None = None

    @model_validator(mode="after")
    def _valid_ladder(self) -> StagesConfig:
        self.ladder()  # StageLadder's own checks (unique names, aliases that resolve)
        return self

    def effective_aliases(self) -> dict[str, str]:
        """The aliases in force: the configured ones, or the defaults that fit this ladder."""
        if self.aliases is not None:
            return dict(self.aliases)
        taken = {n.lower() for n in (*self.names, self.churned)}
        return {a: s for a, s in DEFAULT_ALIASES.items() if s in self.names and a not in taken}

    def ladder(self) -> StageLadder:
        """The :class:`StageLadder` this section describes."""
        return StageLadder(names=self.names, churned=self.churned, aliases=self.effective_aliases())


Aggregate = Literal["sum", "min", "max", "count"]


class PoliciesConfig(_Strict):
    """Resolution policies: the primary account, hierarchy roll-ups, the retry budget."""

    primary: Literal["sticky", "first", "last", "highest_stage"] = "sticky"
    #: Numeric account attribute → how it rolls up to every ancestor (default: DEFAULT_ROLLUPS).
    rollups: dict[str, Aggregate] = Field(default_factory=lambda: cast(Any, dict(DEFAULT_ROLLUPS)))
    max_attempts: int = Field(default=5, ge=1)  # refused this often: set aside (dead letters)


class ScheduleConfig(_Strict):
    """When the Prefect deployment of this destination runs (standard 5-field cron)."""

    cron: str
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        parts = value.split()
        if len(parts) != 5 or not all(_CRON_FIELD.match(p) for p in parts):
            raise ValueError(
                f"{value!r} is not a 5-field cron expression (minute hour day month weekday), "
                "e.g. '*/15 * * * *'"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as 'UTC' or 'Europe/Paris'"
            ) from None
        return value


CredentialRef = Annotated[str, AfterValidator(credential_reference)]


class DestinationConfig(_Strict):
    """One destination: its connector, mapping, credentials references and settings."""

    connector: str
    #: The mapping file; relative paths are relative to the config file.
    mapping: Path
    #: Connector field → where the secret lives: ``env:VAR`` or ``prefect-secret:block-name``.
    credentials: dict[str, CredentialRef] = Field(default_factory=dict)
    #: Connector-specific options that are not secret (host, api_version, bulk_threshold, ...).
    settings: dict[str, Any] = Field(default_factory=dict)
    #: What happens to a destination record whose source record disappeared.
    removal: RemovalMode = "none"
    #: Batches in flight at once; unset: the connector's own choice (its capabilities).
    concurrency: int | None = Field(default=None, ge=1, le=32)
    schedule: ScheduleConfig | None = None

    _name: str = PrivateAttr(default="")
    _file: str = PrivateAttr(default="")

    @field_validator("connector")
    @classmethod
    def _connector_name(cls, value: str) -> str:
        if not _CONNECTOR.match(value):
            raise ValueError(
                f"{value!r} is not a connector name: lowercase letters, digits, '_', '.' and '-', "
                "starting with a letter (`syncer connectors` lists them)"
            )
        return value

    _lines: Mapping[Loc, int] = PrivateAttr(default_factory=dict)

    @property
    def name(self) -> str:
        """The destination's name in ``syncer.yaml`` (its key under ``destinations``)."""
        return self._name

    @property
    def source_file(self) -> str:
        """The config file this destination was read from."""
        return self._file

    def line_of(self, *loc: str | int) -> int | None:
        """The config file line of a key under this destination (for error messages)."""
        path = loc
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path[:-1]
        return self._lines.get(())


class SyncConfig(_Strict):
    """A validated ``syncer.yaml``; build it with :func:`load_config`."""

    #: Canonical store URL; ``SYNCER_STORE_URL`` overrides it.
    store: Annotated[str | None, AfterValidator(_database_url)] = None
    #: Sync state database URL (default: the store); ``SYNCER_STATE_URL`` overrides it.
    state: Annotated[str | None, AfterValidator(_database_url)] = None
    stages: StagesConfig = Field(default_factory=StagesConfig)
    policies: PoliciesConfig = Field(default_factory=PoliciesConfig)
    destinations: dict[str, DestinationConfig] = Field(default_factory=dict)

    _file: Path | None = PrivateAttr(default=None)

    @field_validator("destinations")
    @classmethod
    def _names(cls, value: dict[str, DestinationConfig]) -> dict[str, DestinationConfig]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(
                    f"destination name {name!r} must start with a letter and hold only letters, "
                    "digits, '_' and '-'"
                )
        return value

    @property
    def source_file(self) -> Path | None:
        """The file this configuration was loaded from."""
        return self._file

    @property
    def ladder(self) -> StageLadder:
        """The configured stage ladder."""
        return self.stages.ladder()

    def destination(self, name: str) -> DestinationConfig:
        """The destination called ``name``; a ConfigError listing the known ones otherwise."""
        try:
            return self.destinations[name]
        except KeyError:
            known = ", ".join(sorted(self.destinations)) or "none"
            raise ConfigError(
                Problem(
                    f"no destination {name!r} in the configuration (configured: {known})",
                    file=str(self._file) if self._file else None,
                )
            ) from None


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> SyncConfig:
    """Load and validate ``syncer.yaml``; every problem is reported in one ConfigError.

    ``SYNCER_STORE_URL`` / ``SYNCER_STATE_URL`` in ``environ`` (default: the process environment)
    override the file's ``store`` / ``state``. The state database defaults to the store. A relative
    SQLite path in the file is relative to the file; mapping paths too.
    """
    env = os.environ if environ is None else environ
    path = Path(path)
    doc = load_yaml(path)
    if doc.data is not None and not isinstance(doc.data, dict):
        raise ConfigError(
            Problem("the file must be a mapping of keys (store, destinations, ...)", file=doc.file)
        )
    base = path.resolve().parent
    # The checks on the raw data run even when the schema fails, so one pass shows everything.
    problems = _raw_problems(doc, base)
    config: SyncConfig | None = None
    try:
        config = SyncConfig.model_validate(doc.data or {})
    except ValidationError as exc:
        problems.extend(located_problems(exc, SyncConfig, doc))
    if problems or config is None:
        problems.sort(key=lambda p: p.line or 0)
        raise ConfigError(problems, summary=f"{doc.file} has errors")

    store = env.get(STORE_URL_ENV) or _anchor_sqlite(config.store or DEFAULT_STORE_URL, base)
    state = env.get(STATE_URL_ENV) or (
        _anchor_sqlite(config.state, base) if config.state else store
    )
    destinations: dict[str, DestinationConfig] = {}
    for name, dest in config.destinations.items():
        resolved = dest.model_copy(update={"mapping": base / dest.mapping})
        resolved._name = name
        resolved._file = doc.file
        prefix = ("destinations", name)
        resolved._lines = {
            loc[len(prefix) :]: line for loc, line in doc.lines.items() if loc[:2] == prefix
        }
        destinations[name] = resolved
    result = config.model_copy(
        update={"store": store, "state": state, "destinations": destinations}
    )
    result._file = path
    return result


def _raw_problems(doc: YamlDoc, base: Path) -> list[Problem]:
    """What the schema cannot see: secrets under settings, mapping files that do not exist."""
    problems: list[Problem] = []
    data = doc.data if isinstance(doc.data, dict) else {}
    for key, env_var in (("store", STORE_URL_ENV), ("state", STATE_URL_ENV)):
        if url_has_password(data.get(key)):
            problems.append(
                Problem(
                    f"{key}: the database URL holds a password; secrets never go in the file",
                    file=doc.file,
                    line=doc.line_of((key,)),
                    hint=(
                        f"Drop the password from the URL and give it to the driver (PGPASSWORD "
                        f"or ~/.pgpass for PostgreSQL), or set the whole URL in {env_var}."
                    ),
                )
            )
    destinations = data.get("destinations")
    if not isinstance(destinations, dict):
        return problems
    for name, dest in destinations.items():
        if not isinstance(dest, dict):
            continue
        settings = dest.get("settings")
        for key, value in settings.items() if isinstance(settings, dict) else ():
            if not isinstance(key, str):
                continue
            found = misplaced_secret(f"destinations.{name}.settings.{key}", key, value)
            if found is None:
                continue
            message, hint = found
            problems.append(
                Problem(
                    message,
                    file=doc.file,
                    line=doc.line_of(("destinations", name, "settings", key)),
                    hint=hint,
                )
            )
        mapping = dest.get("mapping")
        if isinstance(mapping, str) and mapping and not (base / mapping).is_file():
            problems.append(
                Problem(
                    f"destinations.{name}.mapping: file not found: {base / mapping}",
                    file=doc.file,
                    line=doc.line_of(("destinations", name, "mapping")),
                    hint="Mapping paths are relative to the config file.",
                )
            )
    return problems


def _anchor_sqlite(url: str, base: Path) -> str:
    """Anchor a relative SQLite path at the config file's directory."""
    parsed = make_url(url)
    database = parsed.database
    if (
        parsed.get_backend_name() == "sqlite"
        and database
        and database != ":memory:"
        and not database.startswith("file:")
        and not Path(database).is_absolute()
    ):
        return parsed.set(database=str(base / database)).render_as_string(hide_password=False)
    return url


def build_connector_config(
    dest: DestinationConfig, model: type[BaseModel], credentials: Mapping[str, SecretStr]
) -> BaseModel:
    """Validate ``dest``'s settings plus resolved ``credentials`` with the connector's config
    model, reporting every error at its line in the config file."""
    data: dict[str, Any] = {**dest.settings, **credentials}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        doc = YamlDoc(data=data, file=dest.source_file, lines=_connector_lines(dest))
        raise ConfigError(
            located_problems(exc, model, doc, prefix=()),
            summary=f"destination {dest.name!r} (connector {dest.connector!r})",
        ) from None


def _connector_lines(dest: DestinationConfig) -> dict[Loc, int]:
    """Lines of the flat connector config: a setting at its settings line, a credential at its
    credentials line, anything missing at the destination's line."""
    lines: dict[Loc, int] = {}
    top = dest.line_of()
    if top is not None:
        lines[()] = top
    for section in ("settings", "credentials"):
        for loc, line in dest._lines.items():
            if loc[:1] == (section,) and len(loc) >= 2:
                lines[loc[1:]] = line
    return lines
