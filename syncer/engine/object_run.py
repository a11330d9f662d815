"""One object of a run: its pass over the store planned, sent and recorded.

:class:`ObjectRun` streams the object's plan (:func:`syncer.engine.planning.changes`) into the
write pipeline through :meth:`~syncer.engine.run.RunSession.write`: upserts (or, past the
connector's ``bulk_threshold``, bulk jobs), then archives. Each answered batch is recorded as it
comes: the acknowledged records in ``sync_records`` (and off the dead-letter list), the refused
or unanswered ones on it. Formatter rejections and removals that send nothing are recorded in
batches of their own. The same pass hands each view to the object's association planner.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from itertools import chain, islice
from typing import TYPE_CHECKING, Any

from syncer.connectors.base import WriteRecord, WriteResult
from syncer.db import ALL_KEYS
from syncer.mapping import ObjectMapping
from syncer.plan import Change
from syncer.state import Ack, AssociationLedger, FailureLog, RecordState, Rejection
from syncer.state.hashing import payload_hash

from .associations import LinkPlanner
from .incremental import RowsRead
from .operations import RecordOp, record_op
from .pipeline import ApplyStats, Operation
from .planning import changes
from .reports import ObjectReport, stage_field

if TYPE_CHECKING:
    from .run import Progress, RunSession

__all__ = ["ObjectRun"]

#: Formatter rejections and removals that send nothing, recorded this many at a time.
_LOCAL_FLUSH = 1000


class ObjectRun:
    """Plan → apply → record for one object of a run (:meth:`RunSession.apply_object`)."""

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
        self.archives: list[WriteRecord] = []
        self.gone: list[str] = []
        self.rejected: list[Rejection] = []
        self._base = (0, 0)  # requests and retries of the earlier operations of this object
        self.read = RowsRead()  # store rows the pass read

    def run(self) -> None:
        session, conn = self.session, self.session.connector
        planner = None
        if self.obj.associations:
            planner = LinkPlanner(self.dest, self.obj, AssociationLedger(session.sync.state))
        session.links.pop(self.obj.name, None)  # a retried step plans its links again
        # Closed however the apply ends: a plan left suspended (a crash, a refused batch) would
        # keep its store connection, and on PostgreSQL its open transaction, alive as long as
        # the traceback that references it.
        source = self.to_send(planner.see if planner is not None else None)
        try:
            records: Iterator[WriteRecord] = source
            kind: RecordOp = "write"
            threshold = conn.bulk_threshold
            if threshold is not None:
                # Look ahead: more changed records than the threshold take the bulk path.
                head = list(islice(records, threshold + 1))
                kind = "bulk" if len(head) > threshold else "write"
                records = chain(head, records)
            concurrency = session.dest.config.concurrency or conn.capabilities.concurrency
            if kind == "bulk":
                concurrency = 1  # a bulk job is already the destination's parallelism
            self.send(record_op(conn, self.obj.name, kind), records, concurrency)
            if self.archives:
                self.send(record_op(conn, self.obj.name, "archive"), self.archives, 1)
        finally:
            try:
                self.flush_local()
            finally:
                source.close()
                self.rep.read = self.read.as_dict()
        if planner is not None:
            planner.flush()
            session.links[self.obj.name] = planner

    def send(
        self,
        op: Operation[WriteRecord, WriteResult],
        records: Iterable[WriteRecord],
        concurrency: int,
    ) -> None:
        self._base = (self.rep.requests, self.rep.retries)
        stats = self.session.write(
            op,
            records,
            on_results=self.on_results,
            concurrency=concurrency,
            progress=self.report_progress,
        )
        self.rep.requests = self._base[0] + stats.requests
        self.rep.retries = self._base[1] + stats.retries

    def to_send(self, on_view: Callable[[Any], None] | None) -> Generator[WriteRecord, None, None]:
        session, rep = self.session, self.rep
        removal = session.dest.config.removal
        scope = session.scope
        stream = changes(
            session.sync,
            session.dest,
            self.obj,
            on_marks=session.marks.add,
            on_view=on_view,
            keys=scope.keys_for(self.obj) if scope is not None else ALL_KEYS,
            read=self.read,
            remake=scope.remake(write=True) if scope is not None else None,
        )
        for change in stream:
            rep.counts.add(change.action)
            if change.action == "rejected":
                rep.note_error(change.key, change.reason or "rejected")
                # The refused payload's hash: once the store is fixed the payload differs, so a
                # record set aside for it is sent again without `syncer retry`.
                digest = payload_hash(change.payload)
                self.rejected.append(
                    Rejection(change.key, change.reason or "", change.field, digest)
                )
            elif change.action == "remove" and (
                not change.sends or (removal == "archive" and change.remote_id is None)
            ):
                self.gone.append(change.key)  # nothing to send (or no id to archive by)
            elif change.sends:
                self.pending[change.key] = change
                record = WriteRecord(
                    change.key, change.changes, change.payload, change.remote_id, change.hints
                )
                if change.action == "remove" and removal == "archive":
                    self.archives.append(record)  # after the upserts, through their own call
                    continue
                if len(rep.samples) < 5:
                    rep.samples.append(change)
                yield record
            if len(self.rejected) + len(self.gone) >= _LOCAL_FLUSH:
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
        """One answered batch: commit what was accepted, log what was refused (or unanswered)."""
        rep, run_id = self.rep, self.session.run_id
        acks: list[Ack] = []
        refused: list[Rejection] = []
        for result in results:
            change = self.pending.pop(result.key)
            if result.ok:
                self.tally_stage(change)
                removed = change.action == "remove"
                acks.append(
                    Ack(result.key, change.payload, result.remote_id, change.digest, removed)
                )
            else:
                reason = result.rejected or "rejected"
                refused.append(Rejection(result.key, reason, result.field, change.digest))
                rep.note_error(result.key, reason)
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
        self.session.marks.flush_if_full()

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
        self.rep.requests = self._base[0] + stats.requests
        self.rep.retries = self._base[1] + stats.retries
        if self.progress is not None:
            self.progress(self.obj.name, stats)
