"""The engine: store → resolve → map → format → plan → apply → record, for one destination.

:class:`Sync` ties the steps together for one ``syncer.yaml``. The CLI and the Prefect flows
call the same two methods:

* :meth:`Sync.plan` — a dry run: everything up to the diff, nothing written anywhere (not even
  the policy marks), counts and samples returned;
* :meth:`Sync.run` — the real thing, under the destination's lease, after a preflight that
  proves the run can succeed (see :meth:`Sync.start_run`): ``ensure`` the custom fields, then
  for each object in write order stream the plan into the write pipeline, committing what the
  destination acknowledged (and only that) to the sync state, then the associations planned in
  the same pass.

Both take ``cluster``: ``local:N`` or ``tcp://HOST:PORT`` plans (and writes) key-range
partitions on Dask workers instead of in this process (:mod:`syncer.engine.cluster`, the
``[dask]`` extra).

A run that crashes leaves every acknowledged batch recorded; the next run plans against that
state and sends only the rest (at-least-once delivery, idempotent upserts: a batch sent but not
recorded is sent again, harmlessly).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property, partial
from types import ModuleType
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from syncer.config import (
    DestinationConfig,
    SecretLoader,
    SyncConfig,
    build_connector_config,
    resolve_credentials,
)
from syncer.connectors.base import Connector
from syncer.connectors.registry import get_connector
from syncer.db import create_db_engine, resolve_store_url
from syncer.errors import ConfigError, Problem, SyncerError
from syncer.mapping import MappingFile, ObjectMapping, load_mapping
from syncer.plan import Change
from syncer.policies import PolicySettings
from syncer.policies.hierarchy import Hierarchy
from syncer.ratelimit import RateLimiter
from syncer.retry import RetryPolicy, call_with_retry
from syncer.state import RunLog, acquire, init_state
from syncer.store.database import open_store
from syncer.store.readers import iter_all_accounts

from .coordinator import ClusterSpec, refuse_local_files
from .incremental import KeySet, ReadScope, read_scope, tally
from .planning import changes, plan_object
from .reports import PlanReport, RunReport
from .run import LEASE_TTL, Progress, RunSession

if TYPE_CHECKING:
    from .cluster import DaskPool

__all__ = ["Destination", "Sync"]


@dataclass(frozen=True, slots=True)
class Destination:
    """A configured destination, checked: its connector class and its loaded mapping."""

    name: str
    config: DestinationConfig
    connector_cls: type[Connector[Any]]
    mapping: MappingFile


class Sync:
    """One ``syncer.yaml``: its store, state, policies and destinations.

    ``environ`` and ``secret_loader`` say where credentials come from (the process environment,
    and Prefect Secret blocks when the flows pass a loader). ``retry`` and ``clock`` are for tests.
    """

    def __init__(
        self,
        config: SyncConfig,
        *,
        environ: Mapping[str, str] | None = None,
        secret_loader: SecretLoader | None = None,
        retry: RetryPolicy | None = None,
        now: datetime | None = None,
    ) -> None:
        self.config = config
        self.environ = environ
        self.secret_loader = secret_loader
        self.retry = retry or RetryPolicy()
        self.now = now
        self._hierarchy: Hierarchy | None = None
        self.settings = PolicySettings(
            config.ladder, config.policies.primary, dict(config.policies.rollups)
        )

    # --- databases and destinations ----------------------------------------------------------

    @cached_property
    def store(self) -> Engine:
        return open_store(resolve_store_url(self.config.store), writable=self._state_in_store)

    @property
    def _state_in_store(self) -> bool:
        return self.config.state is None or self.config.state == self.config.store

    @property
    def store_writable(self) -> bool:
        """Whether this process may write the store (it holds the state): tombstones are
        pruned only then."""
        return self._state_in_store

    @cached_property
    def state(self) -> Engine:
        url = self.config.state
        if url is None or self._state_in_store:  # opened (never created) through the store
            return init_state(self.store)
        return init_state(create_db_engine(url))

    @property
    def hierarchy(self) -> Hierarchy:
        """The account forest with its roll-ups: the whole forest, read when first needed, or
        the part of it a run set (:meth:`use_hierarchy`)."""
        if self._hierarchy is None:
            accounts = iter_all_accounts(self.store)
            self._hierarchy = Hierarchy.from_accounts(accounts, self.settings.rollups)
        return self._hierarchy

    def use_hierarchy(self, hierarchy: Hierarchy | None) -> None:
        """Resolve against ``hierarchy`` (an incremental run's part of the forest); None: read
        the whole forest again when next needed (the store as it is now)."""
        self._hierarchy = hierarchy

    def close(self) -> None:
        """Dispose of the database engines (idempotent)."""
        for name in ("state", "store"):
            engine = self.__dict__.pop(name, None)
            if engine is not None:
                engine.dispose()

    def __enter__(self) -> Sync:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def destination(self, name: str) -> Destination:
        """The destination ``name`` with its connector class found and its mapping loaded and
        checked against the connector's objects (every problem reported at once)."""
        dest = self.config.destination(name)
        connector_cls = get_connector(dest.connector)
        mapping = load_mapping(dest.mapping, connector_cls.objects, self.config.ladder)
        if dest.removal not in connector_cls.capabilities.removal_modes:
            modes = ", ".join(sorted(connector_cls.capabilities.removal_modes))
            raise ConfigError(
                Problem(
                    f"destination {name!r}: connector {dest.connector!r} cannot remove records "
                    f"by {dest.removal!r}",
                    file=dest.source_file,
                    line=dest.line_of("removal"),
                    hint=f"set removal to one of: {modes}",
                )
            )
        return Destination(name, dest, connector_cls, mapping)

    def connect(self, dest: Destination) -> Connector[Any]:
        """A connector instance for ``dest``, its credentials resolved now (never stored)."""
        credentials = resolve_credentials(
            dest.config, environ=self.environ, secret_loader=self.secret_loader
        )
        model = dest.connector_cls.config_model
        settings = build_connector_config(dest.config, model, credentials)
        return dest.connector_cls(settings)

    def changes(
        self, dest: Destination, obj: ObjectMapping, **options: Any
    ) -> Generator[Change, None, None]:
        """The plan of one object (:func:`syncer.engine.planning.changes`)."""
        return changes(self, dest, obj, **options)

    # --- plan ---------------------------------------------------------------------------------

    def plan(
        self,
        name: str,
        *,
        samples: int = 5,
        keys: Sequence[str] | None = None,
        on_change: Callable[[Change], None] | None = None,
        cluster: str | None = None,
        full: bool = False,
    ) -> PlanReport:
        """Dry run of destination ``name``: counts per action and up to ``samples`` changes per
        object that would send something (``keys``: keep exactly those keys' changes instead).
        Writes nothing: no record, mark or position (like any command, it may create what the
        sync state's schema lacks, such as the marks' index by account an incremental plan reads
        through).

        ``cluster`` (``local:N``, ``tcp://HOST:PORT``) plans key-range partitions on Dask
        workers (:mod:`syncer.engine.cluster`): the same report, in about ``1 / N`` of the time
        on a large store (each worker also starts up, and in a full plan reads the account
        forest, so it only pays off beyond some ten thousand records). ``on_change`` needs the
        changes in this process, so it plans in one.

        The plan reads what changed since the last completed run and what that affects, or
        everything (``full``, or when the run would be full): :mod:`syncer.engine.incremental`.
        An incremental plan with nothing to read plans here, without starting a cluster.
        """
        spec = self._cluster_spec(cluster) if on_change is None else None
        dest = self.destination(name)
        # On a cluster, each worker resolves: in a full plan it reads the forest itself and this
        # process only counts it; an incremental scope's part of it is read here and sent along.
        scope = read_scope(self, dest, full=full, explain=keys is not None, resolves=spec is None)
        objects = dest.mapping.objects
        if spec is not None and _reads_anything(scope, objects):
            with _dask_pool(spec) as pool:
                parts = _cluster_module().plan_on_cluster(
                    pool, self, dest, scope, samples=samples, keys=keys
                )
            report = PlanReport(name, parts)
        else:
            plan = partial(
                plan_object,
                self,
                dest,
                samples=samples,
                keys=keys,
                remake=scope.remake(write=False),
            )
            report = PlanReport(
                name, [plan(o, shard=scope.keys_for(o), on_change=on_change) for o in objects]
            )
        tally(report, scope)
        return report

    def check_cluster(self, cluster: str | None) -> ClusterSpec | None:
        """The cluster ``cluster`` names, checked against this config before anything is
        written: :class:`ConfigError` for a value that names none, and for a running cluster
        (``tcp://``) with a SQLite store or state, which its workers on other machines could
        not share."""
        if cluster is None:
            return None
        spec = ClusterSpec.parse(cluster)
        store = resolve_store_url(self.config.store)
        refuse_local_files(spec, store, self.config.state or store)
        return spec

    def _cluster_spec(self, cluster: str | None) -> ClusterSpec | None:
        spec = self.check_cluster(cluster)
        if spec is not None:
            _cluster_module()  # the [dask] extra is installed, or say so now
        return spec

    # --- run ----------------------------------------------------------------------------------

    def run(
        self,
        name: str,
        *,
        progress: Progress | None = None,
        lease_wait: float = 0.0,
        lease_ttl: float = LEASE_TTL,
        connector: Connector[Any] | None = None,
        full: bool = False,
        cluster: str | None = None,
    ) -> RunReport:
        """Sync destination ``name``: see the module docstring. Returns the run's report; the
        same figures are in ``sync_runs``. Errors propagate after the run is recorded as
        ``failed`` (acknowledged batches stay recorded). ``full`` reads the whole store, not
        only what changed since the last completed run. ``cluster`` writes partitions on Dask
        workers (:mod:`syncer.engine.cluster`; ``progress`` is then not called)."""
        spec = self._cluster_spec(cluster)
        if spec is not None and connector is not None:
            raise ValueError("a run on a cluster opens its connectors on the workers")
        # The cluster is up before the run starts and closed after it ended (its lease released).
        pool = _dask_pool(spec) if spec is not None else nullcontext(None)
        with (
            pool as workers,
            self.start_run(
                name, lease_wait=lease_wait, lease_ttl=lease_ttl, connector=connector, full=full
            ) as session,
        ):
            session.ensure()
            assert session.scope is not None
            # An incremental run with nothing to read runs here: no cluster needs to start.
            if workers is not None and _reads_anything(session.scope, session.dest.mapping.objects):
                _cluster_module().run_on_cluster(workers, session)
            else:
                for obj in session.dest.mapping.objects:
                    session.apply_object(obj.name, progress=progress)
                session.associate()
        return session.report

    def start_run(
        self,
        name: str,
        *,
        lease_wait: float = 0.0,
        lease_ttl: float = LEASE_TTL,
        connector: Connector[Any] | None = None,
        full: bool = False,
    ) -> RunSession:
        """Begin a run of ``name`` after its preflight: the run row, the destination's lease,
        the connector.

        Preflight — before anything is written to the destination (not even ``ensure``'s
        fields): the config and the mapping are valid, the credentials are present, the account
        hierarchy loads, the sync state is writable (the run row and the lease are its first
        writes), and the destination accepts the credentials (``connector.check()``, one cheap
        authenticated read). A run that fails here is recorded as ``failed`` and nothing else.

        Use it as a context manager and call its steps in order (``ensure``, ``apply_object``
        for each object of the mapping, ``associate``); leaving the block records how the run
        ended and releases the lease. The Prefect flow drives the steps as separate tasks.

        The lease is renewed by a heartbeat while this process lives, and each step renews it
        when it starts (see :data:`~syncer.engine.run.LEASE_TTL`).

        What the run reads is decided here, before anything is read (``full``: everything;
        :func:`~syncer.engine.incremental.read_scope`); the account hierarchy is loaded here
        when anything is to be resolved, so one that does not load fails the run before it
        writes."""
        dest = self.destination(name)
        conn = connector or self.connect(dest)
        try:
            scope = read_scope(self, dest, full=full)
            runs = RunLog(self.state)
            try:
                run_id = runs.start_run(name, dry_run=False)
            except DBAPIError as exc:
                raise ConfigError(
                    f"the sync state database cannot be written ({exc.orig}); make it writable "
                    "(or point `state:` in syncer.yaml at one that is) and run again"
                ) from exc
        except BaseException:
            if connector is None:
                conn.close()
            raise
        try:
            lease = acquire(
                self.state, name, run_id, lease_ttl, wait_seconds=lease_wait, heartbeat=True
            )
        except SyncerError as exc:
            runs.finish_run(run_id, "failed", {}, str(exc))
            if connector is None:
                conn.close()
            raise
        try:
            runs.mark_interrupted(name, run_id)
            call_with_retry(
                conn.check,
                policy=self.retry,
                what=f"{conn.name} credentials check",
                limiter=RateLimiter(conn.capabilities.rate_limit),
            )
        except BaseException as exc:
            runs.finish_run(run_id, "failed", {}, str(exc) or type(exc).__name__)
            lease.release()
            if connector is None:
                conn.close()
            raise
        return RunSession(
            self, dest, conn, lease, run_id, owns_connector=connector is None, scope=scope
        )


def _reads_anything(scope: ReadScope, objects: Sequence[ObjectMapping]) -> bool:
    """Whether a plan of ``scope`` has any key to read (a full one always has)."""
    return not scope.incremental or any(
        not isinstance(keys, KeySet) or len(keys) for keys in map(scope.keys_for, objects)
    )


def _cluster_module() -> ModuleType:
    """:mod:`syncer.engine.cluster`, imported now: Dask is an extra."""
    try:
        from . import cluster
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ("dask", "distributed"):
            raise
        raise ConfigError(
            f"--cluster needs Dask distributed, which is not installed ({exc.name}); install "
            "the extra that brings it: pip install 'syncer[dask]'"
        ) from None
    return cluster


def _dask_pool(spec: ClusterSpec) -> DaskPool:
    pool: DaskPool = _cluster_module().DaskPool(spec)
    return pool
