"""syncer: resolve multi-account product data and sync it to single-account CRMs, idempotently."""

from __future__ import annotations

__version__ = "0.1.0"
