"""Synthetic canonical stores for benchmarks: N users, power-law accounts, hierarchies, churn.

    python benchmarks/generate.py --users 100000 --store sqlite:///bench.db
    python benchmarks/generate.py --users 100000 --csv /tmp/bench-csv

Shape (deterministic for a seed): N/5 accounts whose sizes follow a power law (a few accounts
with thousands of members, most with a handful); 1–5 memberships per user (mean 2.5); one
account in five has a parent (forests up to three levels deep) and one in twenty is a virtual
account × product child; about 4% of memberships are churned; stages drawn from the default
ladder; every account has the named attributes (status, contract value, renewal date, licenses).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from syncer.store.database import init_store
from syncer.store.schema import accounts, memberships, users

STAGES = ("visitor", "MAL", "MQL", "CUS", "PRO")
STAGE_WEIGHTS = (30, 25, 20, 18, 7)
STATUSES = ("active", "trial", "prospect", "churned")
CHUNK = 20_000
BASE = datetime(2020, 1, 1, tzinfo=UTC)


def _account_id(i: int) -> str:
    return f"A{i:07d}"


def _user_id(i: int) -> str:
    return f"U{i:08d}"


def iter_accounts(n_users: int, seed: int) -> Iterator[dict[str, Any]]:
    """Account rows: parents always come before their children (lower index)."""
    rng = random.Random(seed)
    n = max(n_users // 5, 1)
    for i in range(n):
        parent = None
        if i > 10 and rng.random() < 0.2:
            parent = _account_id(rng.randrange(0, i))
        product = None
        if parent is not None and rng.random() < 0.25:
            product = f"Widget{rng.randint(1, 5)}"
        created = BASE + timedelta(days=rng.randrange(0, 1500))
        yield {
            "account_id": _account_id(i),
            "name": f"Company {i}" + (f" × {product}" if product else ""),
            "domain": f"company{i}.example",
            "parent_account_id": parent,
            "stage": rng.choices(STAGES, STAGE_WEIGHTS)[0],
            "attributes": {
                "status": rng.choice(STATUSES),
                "contract_value": rng.randrange(0, 200_000, 500),
                "renewal_date": (created + timedelta(days=365)).date().isoformat(),
                "licenses": rng.randrange(1, 500),
                **({"product": product} if product else {}),
            },
            "created_at": created,
            "updated_at": created,
        }


def iter_users(n_users: int, seed: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed + 1)
    for i in range(n_users):
        created = BASE + timedelta(days=rng.randrange(0, 1500), seconds=rng.randrange(86400))
        yield {
            "user_id": _user_id(i),
            "email": f"user{i}@mail{i % 997}.example",
            "first_name": f"First{i % 5000}",
            "last_name": f"Last{i % 7919}",
            "lead_stage": rng.choices(STAGES[:3], (50, 30, 20))[0],
            "attributes": {"title": "Engineer"} if i % 3 == 0 else {},
            "created_at": created,
            "updated_at": created,
        }


def iter_memberships(n_users: int, seed: int) -> Iterator[dict[str, Any]]:
    """1–5 distinct accounts per user (mean 2.5); account popularity follows a power law."""
    rng = random.Random(seed + 2)
    n_accounts = max(n_users // 5, 1)
    for i in range(n_users):
        k = min(rng.choice((1, 1, 2, 2, 3, 3, 3, 4, 5, 1)), n_accounts)
        chosen: set[int] = set()
        while len(chosen) < k:
            chosen.add(int(n_accounts * rng.random() ** 3))
        for a in sorted(chosen):
            stage = "churned" if rng.random() < 0.04 else rng.choices(STAGES, STAGE_WEIGHTS)[0]
            joined = BASE + timedelta(days=rng.randrange(0, 1500))
            yield {
                "user_id": _user_id(i),
                "account_id": _account_id(a),
                "role": "admin" if rng.random() < 0.2 else "member",
                "stage": stage,
                "joined_at": joined,
                "updated_at": joined,
            }


def _chunks(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def populate(store_url: str, users_n: int, seed: int = 1) -> dict[str, int]:
    """Create the store's tables at ``store_url`` and fill them; returns row counts."""
    engine = init_store(store_url)
    counts = {}
    for table, rows in (
        (accounts, iter_accounts(users_n, seed)),
        (users, iter_users(users_n, seed)),
        (memberships, iter_memberships(users_n, seed)),
    ):
        n = 0
        for batch in _chunks(rows):
            with engine.begin() as conn:
                conn.execute(table.insert(), batch)
            n += len(batch)
        counts[table.name] = n
    engine.dispose()
    return counts


def mutate(store_url: str, fraction: float, seed: int = 2) -> int:
    """Change ``fraction`` of memberships (a stage rises, or it churns); returns how many."""
    from sqlalchemy import select, update

    from syncer.db import create_db_engine

    engine = create_db_engine(store_url)
    rng = random.Random(seed)
    m = memberships.c
    with engine.begin() as conn:
        # In a fixed order: without one, SQLite scans whichever index is smallest, which
        # schema 3 changed (the same seed then picked other memberships). This is the order
        # schema 2's scan gave, so the figures of earlier rounds pick the same ones.
        keys = conn.execute(select(m.user_id, m.account_id).order_by(m.account_id, m.user_id)).all()
        picked = rng.sample(keys, int(len(keys) * fraction))
        for user_id, account_id in picked:
            stage = "churned" if rng.random() < 0.3 else rng.choice(STAGES[2:])
            conn.execute(
                update(memberships)
                .where(m.user_id == user_id, m.account_id == account_id)
                .values(stage=stage)
            )
    engine.dispose()
    return len(picked)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def write_csv(out_dir: Path, users_n: int, seed: int = 1) -> dict[str, Path]:
    """accounts.csv, users.csv and memberships.csv in the loader's format (attributes as
    extra columns)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in (
        ("accounts", iter_accounts(users_n, seed)),
        ("users", iter_users(users_n, seed)),
        ("memberships", iter_memberships(users_n, seed)),
    ):
        path = out_dir / f"{name}.csv"
        writer = None
        with path.open("w", newline="", encoding="utf-8") as fh:
            for row in rows:
                flat = {k: v for k, v in row.items() if k != "attributes"}
                flat.update(row.get("attributes") or {})
                if writer is None:
                    fields = list(flat)
                    if name == "accounts":
                        fields += [f for f in ("product",) if f not in fields]
                    elif name == "users" and "title" not in fields:
                        fields.append("title")
                    writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="raise")
                    writer.writeheader()
                writer.writerow({k: _cell(flat.get(k)) for k in writer.fieldnames})
        paths[name] = path
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--store", help="SQLAlchemy URL of a store to create and fill")
    where.add_argument("--csv", type=Path, help="directory for CSV files")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.store:
        result: Any = populate(args.store, args.users, args.seed)
    else:
        result = {k: str(v) for k, v in write_csv(args.csv, args.users, args.seed).items()}
    print(json.dumps({"elapsed_s": round(time.perf_counter() - started, 1), **result}))


if __name__ == "__main__":
    main()
