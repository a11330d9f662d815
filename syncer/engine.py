"""The engine: store → resolve → map → format → plan → apply → record, for one destination.

:class:`Sync` ties the steps together for one ``syncer.yaml``. The CLI and the Prefect flows
call the same two methods:

* :meth:`Sync.plan` — a dry run: everything up to the diff, nothing written anywhere (not even
  the policy marks), counts and samples returned;
* :meth:`Sync.run` — the real thing, under the destination's lease: ``ensure`` the custom fields,
  then for each object in write order stream the plan into the connector, committing each batch
  the destination acknowledged (and only those) to the sync state, then associations.

A run that crashes leaves every acknowledged batch recorded; the next run plans against that
state and sends only the rest (at-least-once delivery, idempotent upserts: a batch sent but not
recorded is sent again, harmlessly).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property, partial
from itertools import chain, islice
from multiprocessing import get_context
from typing import Any

from sqlalchemy.engine import Engine

from syncer.apply import ApplyStats, apply_records, archive_records
from syncer.config import (
    DestinationConfig,
    SecretLoader,
    SyncConfig,
    build_connector_config,
    resolve_credentials,
)
from syncer.connectors.base import Connector, WriteRecord, WriteResult
from syncer.connectors.registry import get_connector
from syncer.db import ALL_KEYS, KeyRange, create_db_engine, resolve_store_url, split_key_space
from syncer.errors import ConfigError, Problem, SyncerError
from syncer.links import LinkStats, sync_associations
from syncer.mapping import MappingFile, ObjectMapping, load_mapping
from syncer.model import Mark, ResolvedAccount, ResolvedUser
from syncer.plan import ACTIONS, Change, PlanCounts, Planned, plan_changes
from syncer.policies import PolicySettings
from syncer.policies.hierarchy import Hierarchy
from syncer.policies.resolve import Resolver
from syncer.ratelimit import RateLimiter
from syncer.retry import RetryEvent, RetryPolicy, call_with_retry
from syncer.state import (
    Ack,
    FailureLog,
    Lease,
    RecordState,
    Rejection,
    RunLog,
    acquire,
    init_state,
)
from syncer.state.marks import MarkStore
from syncer.store.database import open_store
from syncer.store.readers import iter_accounts, iter_all_accounts, iter_users
from syncer.store.schema import memberships, users

__all__ = [
    "LEASE_TTL",
    "Destination",
    "ObjectReport",
    "PlanReport",
    "RunReport",
    "RunSession",
    "StageMove",
    "Sync",
    "stage_field",
]

log = logging.getLogger("syncer.engine")

View = ResolvedUser | ResolvedAccount
_MARK_FLUSH = 5000
#: How long a run's lease on its destination lasts without renewal, in seconds. A heartbeat thread
#: renews it several times within that for as long as the run's process lives (through any pause
#: between steps), so a run whose process died blocks its destination for at most this long.
LEASE_TTL = 45.0
#: The name of the field in a mapping that holds the record's stage when no field is filled by
#: the expression ``stage`` alone (see :func:`stage_field`).
STAGE_FIELD_NAMES = ("syncer_stage", "Syncer_Stage__c")

#: A record's stage before and after a write (None: the destination held none, e.g. a create).
StageMove = tuple[str | None, str | None]


def stage_field(obj: ObjectMapping) -> str | None:
    """The destination field of ``obj`` that holds the record's resolved stage, if any.

    That is the first field whose template is exactly the expression ``stage`` (``syncer_stage:
    stage`` in a mapping); failing that, a field named as in :data:`STAGE_FIELD_NAMES`. Run
    reports tally stage moves on this field (:attr:`ObjectReport.stage_moves`).
    """
    for f in obj.fields:
        if f.template.strip() == "stage":
            return f.spec.name
    names = {f.spec.name for f in obj.fields}
    return next((n for n in STAGE_FIELD_NAMES if n in names), None)


@dataclass(slots=True)
class ObjectReport:
    """What one object's plan (and, in a run, its apply) came to.

    Records not delivered are counted apart by who stopped them: ``counts.rejected`` are the
    records syncer itself would not send (formatting refused them: an invalid email, a value over
    its field's budget), ``refused`` the records the destination refused.
    """

    object: str
    counts: PlanCounts = field(default_factory=PlanCounts)
    samples: list[Change] = field(default_factory=list)
    sent: int = 0  # records the destination acknowledged
    refused: int = 0  # records the destination refused (syncer's own rejections: counts.rejected)
    set_aside: int = 0  # rejected or refused too often: on the dead-letter list now
    requests: int = 0  # calls to the destination, retries included
    retries: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (key, reason), first few
    #: Stage moves among the created and updated records the destination acknowledged, every one
    #: of them (not only the samples): (before, after) → how many records, on the object's
    #: :func:`stage_field`. Records whose stage did not change are not counted.
    stage_moves: Counter[StageMove] = field(default_factory=Counter)


@dataclass(slots=True)
class PlanReport:
    """A plan for one destination: per-object counts and samples."""

    destination: str
    objects: list[ObjectReport]

    def totals(self) -> dict[str, int]:
        return {a: sum(getattr(o.counts, a) for o in self.objects) for a in ACTIONS}


@dataclass(slots=True)
class RunReport(PlanReport):
    """A finished (or failed) run: the plan's counts plus what was sent."""

    run_id: str = ""
    status: str = "running"
    message: str | None = None
    links: LinkStats | None = None
    elapsed: float = 0.0
    marks_saved: int = 0

    def run_counts(self) -> dict[str, int]:
        """The run's figures as ``sync_runs.counts`` stores them: the plan's actions (so
        ``rejected`` is what syncer itself would not send), then ``sent`` and ``refused`` (by the
        destination), ``requests``, ``retries`` and, with associations, what they came to."""
        counts = self.totals()
        counts["sent"] = sum(o.sent for o in self.objects)
        counts["refused"] = sum(o.refused for o in self.objects)
        counts["requests"] = sum(o.requests for o in self.objects)
        counts["retries"] = sum(o.retries for o in self.objects)
        if self.links is not None:
            counts["associations_created"] = self.links.created
            counts["associations_removed"] = self.links.removed
        return counts


@dataclass(frozen=True, slots=True)
class Destination:
    """A configured destination, checked: its connector class and its loaded mapping."""

    name: str
    config: DestinationConfig
    connector_cls: type[Connector[Any]]
    mapping: MappingFile


Progress = Callable[[str, ApplyStats], None]


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

    @cached_property
    def state(self) -> Engine:
        url = self.config.state
        if url is None or self._state_in_store:  # opened (never created) through the store
            return init_state(self.store)
        return init_state(create_db_engine(url))

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

    # --- resolve ------------------------------------------------------------------------------

    @cached_property
    def hierarchy(self) -> Hierarchy:
        return Hierarchy.from_accounts(iter_all_accounts(self.store), self.settings.rollups)

    def views(
        self,
        source: str,
        *,
        save_marks: Callable[[list[Mark]], None] | None = None,
        keys: KeyRange = ALL_KEYS,
    ) -> Iterator[View]:
        """Resolved users or accounts (those whose key is in ``keys``) in key order.
        ``save_marks`` receives the marks that changed (a real run saves them; a plan leaves
        the state untouched)."""
        resolver = Resolver(self.settings, self.hierarchy, now=self.now or datetime.now(UTC))
        marks = MarkStore(self.state)
        stream: Iterator[tuple[View, list[Mark]]]
        if source == "users":
            stream = resolver.resolve_users(
                iter_users(self.store, keys=keys),
                marks.iter_marks(keys=keys),
                on_vanished=save_marks,
            )
        else:
            stream = resolver.resolve_accounts(
                iter_accounts(self.store, keys=keys),
                marks.iter_account_marks(keys=keys),
                on_vanished=save_marks,
            )
        for view, changed in stream:
            if changed and save_marks is not None:
                save_marks(changed)
            yield view

    def planned(
        self,
        obj: ObjectMapping,
        *,
        save_marks: Callable[[list[Mark]], None] | None = None,
        keys: KeyRange = ALL_KEYS,
    ) -> Iterator[Planned]:
        """The object's source records, formatted for the destination, in key order."""
        for view in self.views(obj.source, save_marks=save_marks, keys=keys):
            out = obj.format(view)
            rej = out.rejected
            yield Planned(
                out.key,
                out.payload,
                out.hints,
                rejected=rej.reason if rej is not None else None,
                rejected_field=rej.field if rej is not None else None,
            )

    def changes(
        self,
        dest: Destination,
        obj: ObjectMapping,
        *,
        save_marks: Callable[[list[Mark]], None] | None = None,
        on_change: Callable[[Change], None] | None = None,
        keys: KeyRange = ALL_KEYS,
    ) -> Generator[Change, None, None]:
        """The plan of one object: one :class:`Change` per key (in ``keys``) of the source or
        the state."""
        aside = FailureLog(self.state).set_aside_keys(dest.name, obj.name)
        stored = RecordState(self.state).iter_records(dest.name, obj.name, keys=keys)
        return plan_changes(
            obj.name,
            obj.key_field,
            self.planned(obj, save_marks=save_marks, keys=keys),
            stored,
            removal=dest.config.removal,
            set_aside=aside,
            on_change=on_change,
        )

    # --- plan ---------------------------------------------------------------------------------

    def plan(
        self,
        name: str,
        *,
        samples: int = 5,
        keys: Sequence[str] | None = None,
        on_change: Callable[[Change], None] | None = None,
        workers: int = 1,
    ) -> PlanReport:
        """Dry run of destination ``name``: counts per action and up to ``samples`` changes per
        object that would send something (``keys``: keep exactly those keys' changes instead).
        Writes nothing.

        ``workers > 1`` plans each object in that many processes, over contiguous key ranges
        (twice as many as processes, cut at even shares of the work), and merges their counts
        and samples in key order: the same report, in about
        ``1 / workers`` of the time on a large store (each process also starts up, imports and
        reads the account forest, so it only pays off beyond some ten thousand records).
        ``on_change`` needs the changes in this process, so it plans in one.
        """
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        dest = self.destination(name)
        report = PlanReport(name, [])
        if workers == 1 or on_change is not None:
            for obj in dest.mapping.objects:
                rep = _plan_object(
                    self, dest, obj, shard=ALL_KEYS, samples=samples, keys=keys, on_change=on_change
                )
                report.objects.append(rep)
            return report
        now = self.now or datetime.now(UTC)  # one clock for every shard
        # Every object's shards go to one pool at once, so both ends of a plan keep the
        # processes busy; each process builds its Sync (mapping, account forest) once.
        with ProcessPoolExecutor(
            workers,
            mp_context=get_context("spawn"),  # no inherited connections or threads
            initializer=_start_worker,
            initargs=(self.config, now, name),
        ) as pool:
            jobs = []
            for obj in dest.mapping.objects:
                # Cut where the work is even: an account costs about its member count (a few
                # accounts hold most members), a user about the same as any other. Twice as
                # many shards as processes lets a process that finishes early take another.
                column = users.c.user_id if obj.source == "users" else memberships.c.account_id
                shards = split_key_space(self.store, column, 2 * workers)
                jobs.append([pool.submit(_plan_shard, obj.name, s, samples, keys) for s in shards])
            for obj, futures in zip(dest.mapping.objects, jobs, strict=True):
                rep = ObjectReport(obj.name)
                for future in futures:  # in key order: samples as one process would pick them
                    part = future.result()
                    rep.counts += part.counts
                    room = samples - len(rep.samples) if keys is None else len(part.samples)
                    rep.samples.extend(part.samples[: max(room, 0)])
                report.objects.append(rep)
        return report

    # --- run ----------------------------------------------------------------------------------

    def run(
        self,
        name: str,
        *,
        progress: Progress | None = None,
        lease_wait: float = 0.0,
        lease_ttl: float = LEASE_TTL,
        connector: Connector[Any] | None = None,
    ) -> RunReport:
        """Sync destination ``name``: see the module docstring. Returns the run's report; the
        same figures are in ``sync_runs``. Errors propagate after the run is recorded as
        ``failed`` (acknowledged batches stay recorded)."""
        with self.start_run(
            name, lease_wait=lease_wait, lease_ttl=lease_ttl, connector=connector
        ) as session:
            session.ensure()
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
    ) -> RunSession:
        """Begin a run of ``name``: the run row, the destination's lease, the connector.

        Use it as a context manager and call its steps in order (``ensure``, ``apply_object``
        for each object of the mapping, ``associate``); leaving the block records how the run
        ended and releases the lease. The Prefect flow drives the steps as separate tasks.

        The lease is renewed by a heartbeat while this process lives, and each step renews it
        when it starts (see :data:`LEASE_TTL`)."""
        dest = self.destination(name)
        runs = RunLog(self.state)
        run_id = runs.start_run(name, dry_run=False)
        try:
            lease = acquire(
                self.state, name, run_id, lease_ttl, wait_seconds=lease_wait, heartbeat=True
            )
        except SyncerError as exc:
            runs.finish_run(run_id, "failed", {}, str(exc))
            raise
        runs.mark_interrupted(name, run_id)
        try:
            conn = connector or self.connect(dest)
        except BaseException as exc:
            runs.finish_run(run_id, "failed", {}, str(exc))
            lease.release()
            raise
        return RunSession(self, dest, conn, lease, run_id, owns_connector=connector is None)


class RunSession:
    """One run of one destination, step by step; made by :meth:`Sync.start_run`."""

    def __init__(
        self,
        sync: Sync,
        dest: Destination,
        connector: Connector[Any],
        lease: Lease,
        run_id: str,
        *,
        owns_connector: bool,
    ) -> None:
        self.sync = sync
        self.dest = dest
        self.connector = connector
        self.lease = lease
        # Without a heartbeat, one call's retries must end well inside the lease: it is renewed
        # only between batches, so a call retrying for longer could let another run take the
        # destination while this one still writes. A call that gives up is retried by the next
        # run (its batch was never acknowledged). The heartbeat renews it during the call.
        deadline = lease.ttl_seconds / 2
        if not lease.heartbeat_running and (
            sync.retry.deadline is None or sync.retry.deadline > deadline
        ):
            self.retry = dataclasses.replace(sync.retry, deadline=deadline)
        else:
            self.retry = sync.retry
        self.report = RunReport(dest.name, [], run_id=run_id)
        self.limiter = RateLimiter(connector.capabilities.rate_limit)
        connector.set_rate_observer(self.limiter.observe)
        self.marks = _MarkBuffer(MarkStore(sync.state))
        self._owns_connector = owns_connector
        self._runs = RunLog(sync.state)
        self._started = datetime.now(UTC)

    def __enter__(self) -> RunSession:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, _tb: object
    ) -> None:
        self.finish(exc)

    @property
    def run_id(self) -> str:
        return self.report.run_id

    def ensure(self) -> None:
        """Create the custom fields the mapping needs; every field problem (missing, or of the
        wrong type or length) reported at once."""
        self.lease.renew()
        problems: list[Problem] = []
        for obj in self.dest.mapping.objects:
            # Idempotent, so a transient failure (a 429 during setup) just runs it again.
            result = call_with_retry(
                partial(self.connector.ensure, obj.name, obj.destination_fields()),
                policy=self.retry,
                what=f"{self.connector.name} ensure {obj.name}",
                limiter=self.limiter,
            )
            for text in result.problems:
                problems.append(Problem(f"{self.dest.name} {obj.name}: {text}"))
            if result.created:
                log.info("%s %s: created fields %s", self.dest.name, obj.name, result.created)
        if problems:
            # Not only missing fields: an existing one may be of the wrong type or too short.
            summary = (
                f"destination {self.dest.name!r}: {len(problems)} field problem(s) to fix "
                "before syncing (missing fields, or fields of the wrong type or length)"
            )
            raise ConfigError(problems, summary=summary)

    def apply_object(self, object_name: str, *, progress: Progress | None = None) -> ObjectReport:
        """Plan and apply one object of the mapping; its policy marks are saved as it goes."""
        obj = next((o for o in self.dest.mapping.objects if o.name == object_name), None)
        if obj is None:
            raise ConfigError(f"the mapping of {self.dest.name!r} has no object {object_name!r}")
        # A scheduler may have waited before this step (a task retry): renew before writing, so
        # a lease another run took meanwhile stops the step before its first batch.
        self.lease.renew()
        rep = ObjectReport(obj.name)
        self.report.objects.append(rep)
        _ObjectRun(self, obj, rep, progress).run()
        self.report.marks_saved = self.marks.flush()
        log.info(
            "%s %s: %s; sent %d, rejected by syncer %d, refused by the destination %d, "
            "%d requests, %d retries",
            self.dest.name,
            obj.name,
            ", ".join(f"{k} {v}" for k, v in rep.counts.as_dict().items() if v),
            rep.sent,
            rep.counts.rejected,
            rep.refused,
            rep.requests,
            rep.retries,
        )
        self._runs.update_counts(self.run_id, self.report.run_counts())
        return rep

    def associate(self) -> LinkStats | None:
        """Bring associations in line (connectors that have them, mappings that ask)."""
        if not any(o.associations for o in self.dest.mapping.objects):
            return None
        self.lease.renew()
        self.report.links = sync_associations(
            self.dest.name,
            self.dest.mapping,
            self.connector,
            views=self.sync.views,
            state=self.sync.state,
            run_id=self.run_id,
            limiter=self.limiter,
            retry=self.retry,
        )
        self._runs.update_counts(self.run_id, self.report.run_counts())
        return self.report.links

    def finish(self, exc: BaseException | None = None) -> RunReport:
        """Record how the run ended, release the lease and the connector (idempotent)."""
        report = self.report
        if report.status != "running":
            return report
        if exc is not None:
            report.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            report.message = str(exc) or type(exc).__name__
        else:
            undelivered = sum(o.counts.rejected + o.refused for o in report.objects) + (
                report.links.failed if report.links else 0
            )
            report.status = "partial" if undelivered else "succeeded"
        report.elapsed = (datetime.now(UTC) - self._started).total_seconds()
        try:
            self.marks.flush()
            self._runs.finish_run(report.run_id, report.status, report.run_counts(), report.message)
        finally:
            self.lease.release()
            if self._owns_connector:
                self.connector.close()
        return report


class _ObjectRun:
    """Plan → apply → record for one object of a run."""

    def __init__(
        self, session: RunSession, obj: ObjectMapping, rep: ObjectReport, progress: Progress | None
    ) -> None:
        self.session = session
        self.obj = obj
        self.rep = rep
        self.progress = progress
        state = session.sync.state
        self.records = RecordState(state)
        self.failures = FailureLog(state)
        self.max_attempts = session.sync.config.policies.max_attempts
        self.dest = session.dest.name
        self.stage_field = stage_field(obj)
        self.pending: dict[str, Change] = {}
        self.archives: list[Change] = []
        self.gone: list[str] = []
        self.rejected: list[Rejection] = []

    def run(self) -> None:
        session, conn = self.session, self.session.connector
        retry = session.retry
        # Closed however the apply ends: a plan left suspended (a crash, a refused batch) would
        # keep its store connection, and on PostgreSQL its open transaction, alive as long as
        # the traceback that references it.
        source = self.to_send()
        try:
            records: Iterator[WriteRecord] = source
            threshold = conn.bulk_threshold
            if threshold is not None:
                # Look ahead: more changed records than the threshold take the bulk path.
                head = list(islice(records, threshold + 1))
                if len(head) > threshold:
                    self.bulk(chain(head, records))
                    return
                records = iter(head)
            stats = apply_records(
                conn,
                self.obj.name,
                records,
                on_results=self.on_results,
                limiter=session.limiter,
                retry=retry,
                concurrency=session.dest.config.concurrency or conn.capabilities.concurrency,
                progress=self.report_progress,
            )
            self.rep.requests, self.rep.retries = stats.requests, stats.retries
            if self.archives:
                for change in self.archives:
                    self.pending[change.key] = change
                stats = archive_records(
                    conn,
                    self.obj.name,
                    (WriteRecord(c.key, c.changes, c.payload, c.remote_id) for c in self.archives),
                    on_results=self.on_results,
                    limiter=session.limiter,
                    retry=retry,
                )
                self.rep.requests += stats.requests
                self.rep.retries += stats.retries
        finally:
            try:
                self.flush_local()
            finally:
                source.close()

    def bulk(self, records: Iterator[WriteRecord]) -> None:
        """Hand the records to the connector's bulk path in large chunks, each retried as a
        whole on transient errors and committed when its job's results come back.

        Requests are the HTTP calls each job took, as the connector reports them; an attempt
        that failed counts one request (the call that failed: the connector cannot report the
        others of an attempt it abandoned) and one retry."""
        session, conn = self.session, self.session.connector
        while chunk := list(islice(records, conn.bulk_batch_size)):
            outcome = call_with_retry(
                partial(conn.write_bulk, self.obj.name, chunk),
                policy=session.retry,
                what=f"{conn.name} bulk {self.obj.name} ({len(chunk)} records)",
                limiter=session.limiter,
                on_retry=self.on_bulk_retry,
            )
            self.rep.requests += outcome.requests
            self.on_results(outcome.results)

    def on_bulk_retry(self, _event: RetryEvent) -> None:
        self.rep.requests += 1
        self.rep.retries += 1
        # A bulk job's backoff can be long: keep the lease while waiting for the next attempt.
        self.session.lease.renew_if_due()

    def to_send(self) -> Generator[WriteRecord, None, None]:
        session, rep = self.session, self.rep
        removal = session.dest.config.removal
        changes = session.sync.changes(session.dest, self.obj, save_marks=session.marks.add)
        for change in changes:
            rep.counts.add(change.action)
            if change.action == "rejected":
                _note_error(rep, change.key, change.reason or "rejected")
                self.rejected.append(Rejection(change.key, change.reason or "", change.field, None))
            elif change.action == "remove" and (
                not change.sends or (removal == "archive" and change.remote_id is None)
            ):
                self.gone.append(change.key)  # nothing to send (or no id to archive by)
            elif change.action == "remove" and removal == "archive":
                self.archives.append(change)
            elif change.sends:
                if len(rep.samples) < 5:
                    rep.samples.append(change)
                self.pending[change.key] = change
                yield WriteRecord(
                    change.key, change.changes, change.payload, change.remote_id, change.hints
                )
            if len(self.rejected) + len(self.gone) >= 1000:
                self.flush_local()
                session.lease.renew_if_due()

    def flush_local(self) -> None:
        """Record formatter rejections and removals that send nothing."""
        if self.rejected:
            self.rep.set_aside += len(
                self.failures.record_rejections(
                    self.dest, self.obj.name, self.rejected, self.session.run_id, self.max_attempts
                )
            )
            self.rejected.clear()
        if self.gone:
            self.records.mark_removed(self.dest, self.obj.name, self.gone, self.session.run_id)
            self.gone.clear()

    def on_results(self, results: Sequence[WriteResult]) -> None:
        """One acknowledged batch: commit what was accepted, log what was refused."""
        rep, run_id = self.rep, self.session.run_id
        acks: list[Ack] = []
        refused: list[Rejection] = []
        for result in results:
            change = self.pending.pop(result.key)
            if result.ok:
                self.tally_stage(change)
                acks.append(
                    Ack(
                        result.key,
                        change.payload,
                        result.remote_id,
                        change.digest,
                        removed=change.action == "remove",
                    )
                )
            else:
                reason = result.rejected or "rejected"
                refused.append(Rejection(result.key, reason, result.field, change.digest))
                _note_error(rep, result.key, reason)
        self.records.commit_acknowledged(self.dest, self.obj.name, acks, run_id)
        if acks:
            self.failures.clear(self.dest, self.obj.name, [a.key for a in acks])
        if refused:
            rep.set_aside += len(
                self.failures.record_rejections(
                    self.dest, self.obj.name, refused, run_id, self.max_attempts
                )
            )
        rep.sent += len(acks)
        rep.refused += len(refused)
        self.session.lease.renew_if_due()

    def tally_stage(self, change: Change) -> None:
        """Count an acknowledged create or update whose stage moved."""
        name = self.stage_field
        if name is None or change.action not in ("create", "update"):
            return
        before = change.before.get(name) if change.before is not None else None
        after = change.payload.get(name)
        if before != after:
            self.rep.stage_moves[(before, after)] += 1

    def report_progress(self, stats: ApplyStats) -> None:
        self.rep.requests, self.rep.retries = stats.requests, stats.retries
        if self.progress is not None:
            self.progress(self.obj.name, stats)


def _plan_object(
    sync: Sync,
    dest: Destination,
    obj: ObjectMapping,
    *,
    shard: KeyRange,
    samples: int,
    keys: Sequence[str] | None,
    on_change: Callable[[Change], None] | None = None,
) -> ObjectReport:
    """Counts and samples of one object's plan over the keys in ``shard``."""
    rep = ObjectReport(obj.name)
    wanted = set(keys) if keys is not None else None
    with closing(sync.changes(dest, obj, on_change=on_change, keys=shard)) as changes:
        for change in changes:
            rep.counts.add(change.action)
            if wanted is not None:
                if change.key in wanted:
                    rep.samples.append(change)
            elif change.action not in ("unchanged", "skipped") and len(rep.samples) < samples:
                rep.samples.append(change)
    return rep


# A plan worker process's own Sync, built once by the pool's initializer: process-local state
# is how a ProcessPoolExecutor task reaches what its process prepared.
_WORKER: dict[str, tuple[Sync, Destination]] = {}


def _start_worker(config: SyncConfig, now: datetime, name: str) -> None:
    sync = Sync(config, now=now)
    _WORKER["plan"] = (sync, sync.destination(name))


def _plan_shard(
    object_name: str, shard: KeyRange, samples: int, keys: Sequence[str] | None
) -> ObjectReport:
    """One worker process's part of :meth:`Sync.plan`: its own engines, the parent's clock."""
    sync, dest = _WORKER["plan"]
    obj = dest.mapping.object(object_name)
    return _plan_object(sync, dest, obj, shard=shard, samples=samples, keys=keys)


def _note_error(rep: ObjectReport, key: str, reason: str) -> None:
    if len(rep.errors) < 10:
        rep.errors.append((key, reason))


class _MarkBuffer:
    """Changed policy marks of a real run, saved in batches as the run streams."""

    def __init__(self, store: MarkStore) -> None:
        self.store = store
        self.buffer: list[Mark] = []
        self.saved = 0

    def add(self, marks: list[Mark]) -> None:
        self.buffer.extend(marks)
        self.flush_if_full()

    def flush_if_full(self) -> None:
        if len(self.buffer) >= _MARK_FLUSH:
            self.flush()

    def flush(self) -> int:
        if self.buffer:
            self.saved += self.store.save(self.buffer)
            self.buffer = []
        return self.saved
