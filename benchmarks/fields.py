"""Micro-benchmark of field formatting: µs per call for the field kinds a plan formats most.

Run: ``python benchmarks/fields.py [--repeat 5] [--number 20000]``. Prints the median (and min)
over ``--repeat`` runs of ``--number`` calls each. The plan formats every field of every record
(1M users × ~10 fields in the 60 s target), so a field should cost a few µs at most.
"""

from __future__ import annotations

import argparse
import statistics
import timeit
from collections.abc import Callable
from decimal import Decimal

from syncer.fields import FieldSpec, FieldType, format_field
from syncer.tokens import Token

ACCOUNTS = FieldSpec("syncer_accounts", FieldType.TOKENS, max_length=255)
ACCOUNT_IDS = FieldSpec("syncer_account_ids", FieldType.TOKENS, max_length=255)
USERS = FieldSpec("syncer_users", FieldType.TOKENS, max_length=255)
EMAIL = FieldSpec("email", FieldType.EMAIL)
NUMBER = FieldSpec("contract_value", FieldType.NUMBER)
STRING = FieldSpec("name", FieldType.STRING, max_length=255)

# A typical user: 2.5 memberships (the target's ratio), ids numeric, stages from the ladder.
ACCOUNT_TOKENS = [Token(("34", "CUS"), 3), Token(("110", "MQL"), 2), Token(("2071", "MAL"), 1)]
ID_TOKENS = ["34", "110", "2071"]
# A typical account: a handful of users as email:stage pairs (the slow path: escapes).
USER_TOKENS = [
    Token(("ann.lee@acme.io", "CUS"), 3),
    Token(("bo@acme.io", "MQL"), 2),
    Token(("max.zeta@acme.io", "MAL"), 1),
    Token(("cy@acme.io", "MAL"), 1),
    Token(("dee+crm@acme.io", "visitor"), 0),
]

CASES: dict[str, Callable[[], object]] = {
    "tokens: 3 account_id:stage": lambda: format_field(ACCOUNTS, ACCOUNT_TOKENS),
    "tokens: 3 plain ids": lambda: format_field(ACCOUNT_IDS, ID_TOKENS),
    "tokens: 5 email:stage": lambda: format_field(USERS, USER_TOKENS),
    "email": lambda: format_field(EMAIL, "Ann.Lee@Acme.io"),
    "number (Decimal)": lambda: format_field(NUMBER, Decimal("1200.50")),
    "number (int)": lambda: format_field(NUMBER, 1200),
    "string": lambda: format_field(STRING, "Acme Inc"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args()
    print(f"{'field':32} {'median µs':>10} {'min µs':>8}   ({args.repeat} runs × {args.number})")
    for name, call in CASES.items():
        runs = timeit.repeat(call, repeat=args.repeat, number=args.number)
        per_call = [r / args.number * 1e6 for r in runs]
        print(f"{name:32} {statistics.median(per_call):10.2f} {min(per_call):8.2f}")


if __name__ == "__main__":
    main()
