"""The connector contract: what a destination plugin implements, and what the engine owns.

A connector is one class. It declares, as data, the objects and fields it supports and its
capabilities (batch size, rate limit, associations, removal modes); it implements ``write`` (and
``ensure`` for its custom fields, ``associate`` if it supports associations, ``archive`` if it
supports removal by archiving). **The engine owns everything else**: batching (never two records
with one key in a batch), retries with backoff, client-side rate limiting, bisecting a batch the
destination refused as a whole, sync state and reporting.

Delivery guarantee, for connector authors: **at least once, with idempotent upserts**. State
advances only after ``write`` returned an acknowledgement for a record; if the process dies
between the destination's acknowledgement and the state commit, the same records are written
again on the next run, so ``write`` must upsert on the destination's unique key, never blindly
create.

What ``write`` reports, and what the engine does with it:

* a :class:`WriteResult` per input record, matched by ``key`` (any order): ``remote_id`` on
  success, ``rejected`` with the destination's reason for a record it refused (the engine
  records it in ``sync_errors`` and goes on);
* raise :class:`syncer.errors.RetriableError` for a transient failure of the whole call (429, 5xx,
  timeouts, connection errors; set ``retry_after`` from the response) — the engine backs off and
  retries the same batch;
* raise :class:`syncer.errors.BatchRejected` when the destination refused the whole batch with a
  4xx that one bad record can cause — the engine bisects to isolate it;
* raise :class:`syncer.errors.FatalError` (auth, daily quota, maintenance) or
  :class:`syncer.errors.ConfigError` to stop the run. Anything else is a bug: fatal, not retried.

Who may override what: methods marked ``@abstractmethod`` are the author's; ``@final`` ones belong
to the engine contract and must not be overridden.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, TypeVar, final, get_args

from pydantic import BaseModel, ConfigDict

from syncer.fields import FieldSpec

# --- declarations (data the engine and the tests read) -------------------------------------------

#: What a destination does with a record that left the source: nothing, clear syncer's fields,
#: or archive (soft-delete) it. The one definition: config validation, the plan and the
#: capabilities below read it; a connector declares the modes it supports in
#: ``Capabilities.removal_modes``.
RemovalMode = Literal["none", "clear", "archive"]
REMOVAL_MODES: frozenset[str] = frozenset(get_args(RemovalMode))


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``requests`` calls per ``per_seconds``, per destination (a client-side budget)."""

    requests: int
    per_seconds: float


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a connector can do, as data: the engine never asks for a connector's name."""

    max_batch: int
    rate_limit: RateLimit | None = None
    associations: bool = False
    # Association changes per ``associate`` call (HubSpot v4 batch create/archive take more).
    association_batch: int = 100
    removal_modes: frozenset[str] = frozenset({"none", "clear"})
    # Writes of more changed records than this in one run may take a bulk path (Salesforce).
    bulk_threshold: int | None = None
    # Batches the engine may have in flight at once (each still passes the rate limiter): with
    # real API latencies one request at a time stays far below a destination's rate limit.
    # The connector's ``write`` must then be safe to call from several threads.
    concurrency: int = 1
    # Records per bulk job (write_bulk); a connector may take it from its config.
    bulk_batch: int = 10_000
    # The hints ``write`` reads of a record the destination already holds (its remote id
    # known); None: any of them. A user record an incremental run makes from its row and its
    # last payload (only its email or names changed) carries only the hints that read the row,
    # so a mapping whose other hints the connector reads on such a write is rebuilt instead.
    update_hints: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class ObjectSpec:
    """A destination object (HubSpot ``contacts``, Salesforce ``Contact``) and its fields.

    ``key_field`` is the destination's unique field holding the product id (the upsert key);
    ``fields`` are the fields the connector knows limits for (a mapping may add custom ones,
    which get the connector's ``default_field`` limits).
    """

    name: str
    key_field: str
    fields: Mapping[str, FieldSpec] = field(default_factory=dict)
    default_field: FieldSpec | None = None
    # Objects written before this one (companies before contacts, so associations can resolve).
    after: tuple[str, ...] = ()
    # The suffix the destination gives custom field names (Salesforce ``__c``); derived names
    # (a token field's count and truncation companions) keep it last.
    custom_suffix: str = ""

    @property
    def required_fields(self) -> frozenset[str]:
        """The fields the destination will not empty (``FieldSpec.required``): a ``clear``
        removal leaves them as they are."""
        return frozenset(name for name, spec in self.fields.items() if spec.required)


# --- what flows through write ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WriteRecord:
    """One record to upsert: the product key, what changed, and what the destination holds.

    ``changes`` holds only the fields that differ from the last acknowledged payload (multi-value
    fields always whole); ``payload`` is the full formatted record, for connectors that must send
    everything (a create, a bulk CSV). ``remote_id`` is the destination id learned earlier, if any.
    ``hints`` carries per-record extras a connector documents (e.g. an email to match a contact
    that existed before syncer).
    """

    key: str
    changes: Mapping[str, str | None]
    payload: Mapping[str, str | None]
    remote_id: str | None = None
    hints: Mapping[str, Any] = field(default_factory=dict)


class Refusable:
    """A destination's answer that may be a refusal: ``ok`` unless ``rejected`` says why not."""

    __slots__ = ()
    rejected: str | None

    @property
    def ok(self) -> bool:
        """Whether the destination accepted it."""
        return self.rejected is None


@dataclass(frozen=True, slots=True)
class WriteResult(Refusable):
    """The destination's answer for one record."""

    key: str
    remote_id: str | None = None
    rejected: str | None = None  # the destination's reason, when it refused this record
    field: str | None = None  # the field the rejection names, when known
    created: bool | None = None


@dataclass(frozen=True, slots=True)
class BulkResult:
    """What one bulk job came to: one :class:`WriteResult` per input record (any order), and
    how many HTTP requests the job took (create, upload, close, every poll, the result reads),
    so that the run's request count is the destination's, not one per job."""

    results: Sequence[WriteResult]
    requests: int


@dataclass(frozen=True, slots=True)
class AssociationChange:
    """Associate (or dissociate) two records, e.g. a HubSpot contact with a company.

    Keys are product keys; the ``*_remote_id`` are what the destination knows them by.
    """

    from_object: str
    from_key: str
    from_remote_id: str
    to_object: str
    to_key: str
    to_remote_id: str
    kind: str = ""  # "primary" or "" (unlabeled)
    remove: bool = False


@dataclass(frozen=True, slots=True)
class AssociationResult(Refusable):
    change: AssociationChange
    rejected: str | None = None


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """What the destination said about its rate limit on the last response."""

    limit: int | None = None
    remaining: int | None = None
    interval_seconds: float | None = None
    daily_limit: int | None = None
    daily_remaining: int | None = None


@dataclass(slots=True)
class EnsureReport:
    """What ``ensure`` did: fields created, fields already right, and what an admin must fix."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


# --- the contract ---------------------------------------------------------------------------


class ConnectorConfig(BaseModel):
    """Base of every connector's configuration model: secrets as ``SecretStr``, unknown keys are
    errors (a typo in a setting must not be ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


ConfigT = TypeVar("ConfigT", bound=ConnectorConfig)


class Connector(ABC, Generic[ConfigT]):
    """Base class of destination connectors. See the module docstring for the contract."""

    #: The name users put in ``syncer.yaml`` (``connector: hubspot``); equals the entry point name.
    name: ClassVar[str]
    #: The pydantic model of this connector's settings and credentials.
    config_model: ClassVar[type[ConnectorConfig]]
    #: Batch size, rate limit, associations, removal modes.
    capabilities: ClassVar[Capabilities]
    #: The destination objects this connector writes, by name.
    objects: ClassVar[Mapping[str, ObjectSpec]]

    def __init__(self, config: ConfigT) -> None:
        self.config = config
        self._rate_observer: Callable[[RateLimitInfo], None] | None = None

    @abstractmethod
    def write(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
        """Upsert ``batch`` (at most ``capabilities.max_batch`` records, keys unique) and return
        one result per record. Author hook."""

    def ensure(self, object_name: str, fields: Sequence[FieldSpec]) -> EnsureReport:
        """Create the custom fields the mapping needs, idempotently. Author hook; the default
        assumes the fields exist."""
        return EnsureReport(existing=[f.name for f in fields])

    def associate(self, changes: Sequence[AssociationChange]) -> Sequence[AssociationResult]:
        """Create or remove associations. Author hook for connectors with
        ``capabilities.associations``."""
        raise NotImplementedError(f"connector {self.name!r} does not support associations")

    def write_bulk(self, object_name: str, records: Sequence[WriteRecord]) -> BulkResult:
        """Upsert many records in one bulk job (keys unique): one result per record and the
        number of HTTP requests the job took. Author hook for connectors with
        ``capabilities.bulk_threshold``: the engine uses it instead of ``write`` when a run has
        more changed records than that."""
        raise NotImplementedError(f"connector {self.name!r} has no bulk path")

    def archive(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
        """Archive (soft-delete) records that left the source. Author hook for connectors with
        ``"archive"`` in ``capabilities.removal_modes``."""
        raise NotImplementedError(f"connector {self.name!r} does not support archiving")

    def check(self) -> None:
        """Prove the credentials work with one cheap authenticated read, before the engine
        writes anything (preflight). Raise :class:`syncer.errors.ConfigError` with what to fix
        when they are refused, :class:`syncer.errors.RetriableError` when the destination
        cannot be reached. Author hook; the default checks nothing."""

    def close(self) -> None:
        """Release network resources. Author hook; optional."""

    @property
    def bulk_batch_size(self) -> int:
        """Records per bulk job. Author hook: a connector whose config sets it overrides this."""
        return self.capabilities.bulk_batch

    @property
    def bulk_threshold(self) -> int | None:
        """Changed records in one run above which the engine takes the bulk path (None: never).
        Author hook: a connector whose config sets it overrides this."""
        return self.capabilities.bulk_threshold

    @final
    def set_rate_observer(self, observer: Callable[[RateLimitInfo], None] | None) -> None:
        """Engine-owned: the engine's rate limiter listens here."""
        self._rate_observer = observer

    @final
    def report_rate_limit(self, info: RateLimitInfo) -> None:
        """Connectors call this with the rate-limit headers of each response; the engine's
        limiter adapts its pace to them."""
        if self._rate_observer is not None:
            self._rate_observer(info)

    @classmethod
    @final
    def object_spec(cls, object_name: str) -> ObjectSpec:
        try:
            return cls.objects[object_name]
        except KeyError:
            known = ", ".join(sorted(cls.objects))
            from syncer.errors import ConfigError

            raise ConfigError(
                f"connector {cls.name!r} has no object {object_name!r}; it writes: {known}"
            ) from None
