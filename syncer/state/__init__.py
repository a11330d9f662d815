"""Sync state: what each destination holds, runs, rejected records, leases, association ledger.

Every write here follows an acknowledgement from the destination (see ``DESIGN.md`` § Sync state
and idempotency). Open the database with :func:`open_state` (or create it with
:func:`init_state`), then hand the engine to the piece you need::

    engine = open_state(url)
    records = RecordState(engine)
    for stored in records.iter_records("hubspot", "contacts"):  # key order, streamed
        ...
"""

from syncer.state.associations import AssociationLedger, AssociationLike, Link
from syncer.state.database import as_utc, init_state, open_state, utcnow
from syncer.state.failures import Failure, FailureLog, Rejection
from syncer.state.hashing import canonical_text, payload_hash
from syncer.state.lease import Lease, LeaseInfo, acquire, current_lease, force_release
from syncer.state.records import Ack, RecordState, StoredRecord
from syncer.state.runs import FINAL_STATUSES, RunInfo, RunLog

__all__ = [
    "FINAL_STATUSES",
    "Ack",
    "AssociationLedger",
    "AssociationLike",
    "Failure",
    "FailureLog",
    "Lease",
    "LeaseInfo",
    "Link",
    "RecordState",
    "Rejection",
    "RunInfo",
    "RunLog",
    "StoredRecord",
    "acquire",
    "as_utc",
    "canonical_text",
    "current_lease",
    "force_release",
    "init_state",
    "open_state",
    "payload_hash",
    "utcnow",
]
