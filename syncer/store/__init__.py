"""The canonical store: schema, streaming readers and loaders.

The public API is re-exported here; the modules hold the details.
"""

from __future__ import annotations

from syncer.store.closure import Closure, affected
from syncer.store.database import init_store, open_store
from syncer.store.feed import (
    ChangeSet,
    Tombstone,
    changes_since,
    current_position,
    prune_tombstones,
)
from syncer.store.keys import KeySet, RowsRead
from syncer.store.loaders import load_paths
from syncer.store.readers import (
    iter_accounts,
    iter_all_accounts,
    iter_identities,
    iter_users,
    read_account,
    read_all_accounts,
    read_user,
    store_stats,
)
from syncer.store.removal import DeleteKeys, DeleteReport, delete_records
from syncer.store.reports import FileReport, LoadReport
from syncer.store.rules import LoadRules

__all__ = [
    "ChangeSet",
    "Closure",
    "DeleteKeys",
    "DeleteReport",
    "FileReport",
    "KeySet",
    "LoadReport",
    "LoadRules",
    "RowsRead",
    "Tombstone",
    "affected",
    "changes_since",
    "current_position",
    "delete_records",
    "init_store",
    "iter_accounts",
    "iter_all_accounts",
    "iter_identities",
    "iter_users",
    "load_paths",
    "open_store",
    "prune_tombstones",
    "read_account",
    "read_all_accounts",
    "read_user",
    "store_stats",
]
