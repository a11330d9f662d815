"""A design measurement: account token fields re-rendered from per-member tokens kept aside.

The design is built since (:mod:`syncer.engine.member_tokens`; measure it with
``benchmarks/incremental.py --phases users1email``). This script, with its own table and text,
stays to rerun the figures of ``docs/performance.md``'s "2026-12-05" section as they were taken.

    python benchmarks/member_tokens.py --users 1000000 [--runs 3]

An email change of 1% of the users rebuilds the companies that list their members' emails:
at 1M, 19,500 accounts with 822,000 member rows, read from the store, resolved and formatted
again (``docs/performance.md``). This script measures the alternative the docs describe: each
member's contribution to each member token field (its word and priority, as the mapping's fused
collectors give it) kept in a table clustered by account, so that such an account's fields are
re-rendered from its rows (:func:`syncer.tokens.token_texts`) instead of rebuilt.

It uses the work store of ``benchmarks/incremental.py`` after its first full run (run that
first) and writes nothing there: the table goes to a file of its own beside it. Steps:

* ``build`` — every account's members, resolved as a plan resolves them (marks included), each
  member's tokens for each fused member field of the companies mapping;
* then, for the accounts of 1% of the users (picked with ``--seed``; nothing is changed in the
  store), ``--runs`` times each and interleaved: the companies' plan as it is
  (``plan_object``, one process), and the same fields re-rendered from the table;
* checks that every re-rendered field equals what the mapping formats for the account now.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(__file__).resolve().parent / ".data"

UNIT = "\x1f"  # between a member's fields in the table
RANK = "\x1e"  # between a token's key and its priority


def _fields(obj: Any) -> list[tuple[Any, Any]]:
    """(spec, collector) of each fused token field over ``members``."""
    from syncer.mapping import make_environment
    from syncer.mapping.writers import _fused

    env = make_environment(obj.ladder)
    out = []
    for f in obj.fields:
        fused = _fused(f.template, env, f.spec.case_insensitive)
        if fused is not None and fused[2] == ("members", None):
            out.append((f.spec, fused[1]))
    return out


def build(sync: Any, obj: Any, table: Path) -> None:
    from syncer.engine.planning import views

    fields = _fields(obj)
    table.unlink(missing_ok=True)
    db = sqlite3.connect(table)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE member_tokens (account_id TEXT, user_id TEXT, tokens TEXT,"
        " PRIMARY KEY (account_id, user_id)) WITHOUT ROWID"
    )
    started, rows = time.perf_counter(), 0
    spent = {"collect": 0.0, "insert": 0.0}  # of the whole: the members' tokens, the writes
    batch: list[tuple[str, str, str]] = []
    for view in views(sync, "accounts"):
        t = time.perf_counter()
        for m in view.members:
            parts = []
            for _, collect in fields:
                parts.append("".join(f"{k}{RANK}{p}" for k, p in collect([m]).items()))
            batch.append((view.account.account_id, m.user_id, UNIT.join(parts)))
        spent["collect"] += time.perf_counter() - t
        if len(batch) >= 10_000:
            t = time.perf_counter()
            db.executemany("INSERT INTO member_tokens VALUES (?, ?, ?)", batch)
            spent["insert"] += time.perf_counter() - t
            rows += len(batch)
            batch.clear()
    t = time.perf_counter()
    db.executemany("INSERT INTO member_tokens VALUES (?, ?, ?)", batch)
    db.commit()
    spent["insert"] += time.perf_counter() - t
    rows += len(batch)
    size = table.stat().st_size >> 20
    print(
        f"built {rows} rows in {time.perf_counter() - started:.1f} s (the members' tokens "
        f"{spent['collect']:.1f} s, the inserts {spent['insert']:.1f} s; the rest reads and "
        f"resolves the accounts), {size} MB",
        flush=True,
    )


def render(table: Path, keys: list[str], fields: list[Any]) -> dict[str, dict[str, Any]]:
    """Each account's fields (text, count, truncated), re-rendered from the table."""
    db = sqlite3.connect(f"file:{table}?mode=ro", uri=True)
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        marks = ",".join("?" * len(chunk))
        rows = db.execute(
            f"SELECT account_id, tokens FROM member_tokens WHERE account_id IN ({marks})"
            " ORDER BY account_id, user_id",
            chunk,
        )
        account, bests = None, [{} for _ in fields]
        for account_id, tokens in rows:
            if account_id != account:
                if account is not None:
                    out[account] = _texts(bests, fields)
                account, bests = account_id, [{} for _ in fields]
            for best, part in zip(bests, tokens.split(UNIT), strict=True):
                if part:
                    key, _, priority = part.partition(RANK)
                    rank = int(priority)
                    if rank > best.get(key, -1):
                        best[key] = rank
        if account is not None:
            out[account] = _texts(bests, fields)
    db.close()
    return out


def _texts(bests: list[dict[str, int]], fields: list[Any]) -> dict[str, Any]:
    from syncer.tokens import token_texts

    return {
        spec.name: token_texts(best, spec.max_length)
        for best, (spec, _) in zip(bests, fields, strict=True)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rebuild", action="store_true", help="build the table again")
    args = parser.parse_args()
    config = DATA / f"incremental-{args.users}-work.yaml"
    if not config.exists():
        sys.exit(f"no {config}: run `python benchmarks/incremental.py --users {args.users}` first")
    from syncer.config import load_config
    from syncer.engine import Sync
    from syncer.engine.planning import formatted as formatted_records
    from syncer.engine.planning import plan_object
    from syncer.fields import companion_names
    from syncer.store.keys import KeySet

    table = DATA / f"member-tokens-{args.users}.db"
    with Sync(load_config(config)) as sync:
        dest = sync.destination("crm")
        obj = dest.mapping.object("companies")
        if args.rebuild or not table.exists():
            build(sync, obj, table)
        store = sqlite3.connect(
            f"file:{DATA / f'incremental-{args.users}-work.db'}?mode=ro", uri=True
        )
        users = [r[0] for r in store.execute("SELECT user_id FROM users")]
        picked = random.Random(args.seed).sample(users, len(users) // 100)
        keys = sorted(
            {
                r[0]
                for i in range(0, len(picked), 500)
                for r in store.execute(
                    "SELECT account_id FROM memberships WHERE user_id IN "
                    f"({','.join('?' * len(picked[i : i + 500]))})",
                    picked[i : i + 500],
                )
            }
        )
        store.close()
        fields = _fields(obj)
        times: dict[str, list[float]] = {"plan": [], "render": []}
        for _ in range(args.runs):
            started = time.perf_counter()
            rep = plan_object(sync, dest, obj, shard=KeySet.of(keys), samples=0, keys=None)
            times["plan"].append(time.perf_counter() - started)
            started = time.perf_counter()
            rendered = render(table, keys, fields)
            times["render"].append(time.perf_counter() - started)
            print({k: round(v[-1], 2) for k, v in times.items()}, rep.read, flush=True)
        formatted = {f.key: f.payload for f in formatted_records(sync, obj, keys=KeySet.of(keys))}
        differ = 0
        for account, texts in rendered.items():
            for (spec, _), (text, total, truncated) in zip(fields, texts.values(), strict=True):
                count, cut = companion_names(spec.name, spec.suffix)
                payload = formatted[account]
                want = (payload.get(spec.name), payload.get(count), payload.get(cut))
                differ += want != (text, str(total), "true" if truncated else "false")
        print(
            f"accounts {len(keys)}, rendered {len(rendered)}, fields that differ from the "
            f"mapping's: {differ}"
        )
        print({k: round(statistics.median(v), 2) for k, v in times.items()})


if __name__ == "__main__":
    main()
