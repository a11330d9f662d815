"""Benchmark scripts (run as ``python benchmarks/NAME.py``); shared helpers here."""

from __future__ import annotations

import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent / ".data"


def plan_store_config(users: int) -> Path:
    """The config of the store ``benchmarks/plan.py --users N`` generated; exits saying how to
    make it when there is none."""
    config = DATA / f"plan-{users}.yaml"
    if not config.exists():
        sys.exit(f"no {config}: run `python benchmarks/plan.py --users {users}` first")
    return config
