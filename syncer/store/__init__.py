"""The canonical store: schema, streaming readers and loaders.

The public API is re-exported here; the modules hold the details.
"""

from __future__ import annotations

from syncer.store.database import init_store, open_store
from syncer.store.loaders import FileReport, LoadReport, load_paths
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

__all__ = [
    "FileReport",
    "LoadReport",
    "init_store",
    "iter_accounts",
    "iter_all_accounts",
    "iter_identities",
    "iter_users",
    "load_paths",
    "open_store",
    "read_account",
    "read_all_accounts",
    "read_user",
    "store_stats",
]
