"""Sync state: what each destination holds, runs, rejected records, leases, association ledger.

Every write of what a destination holds follows its acknowledgement (see ``DESIGN.md`` § Sync
state and idempotency); the member tokens (:mod:`syncer.state.member_tokens`), derived from the
store alone, are the exception. Open the database with :func:`open_state` (or create it with
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
from syncer.state.lease import Lease, LeaseInfo, acquire, current_lease
from syncer.state.lease_holders import HolderState, LeaseStatus, lease_statuses, release_lease
from syncer.state.records import Ack, RecordState, StoredRecord
from syncer.state.runs import FINAL_STATUSES, RunInfo, RunLog

__all__ = [
    "FINAL_STATUSES",
    "Ack",
    "AssociationLedger",
    "AssociationLike",
    "Failure",
    "FailureLog",
    "HolderState",
    "Lease",
    "LeaseInfo",
    "LeaseStatus",
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
    "init_state",
    "lease_statuses",
    "open_state",
    "payload_hash",
    "release_lease",
    "utcnow",
]
