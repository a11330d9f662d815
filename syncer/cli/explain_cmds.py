"""``syncer explain user ID`` / ``account ID``: why a user or account has the stage it has.

For a RevOps person asking "why is she CUS?": each membership with its stage in the store, its
high-water mark from earlier runs, and the rule that decided. Reads the store and the policy
marks; writes nothing (the marks move only when a real run saves them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich import box
from rich.table import Table
from rich.text import Text
from sqlalchemy.engine import Engine

from syncer.cli.app import JsonOption, StoreOption, command_group, console, print_json
from syncer.config import PoliciesConfig, load_config
from syncer.db import DEFAULT_STORE_URL, STATE_URL_ENV
from syncer.engine import Sync
from syncer.errors import BadInputError, Problem
from syncer.model import AccountWithMembers, ResolvedMembership, UserWithMemberships
from syncer.policies import PolicySettings
from syncer.policies.hierarchy import Hierarchy
from syncer.policies.resolve import Resolver
from syncer.state import open_state
from syncer.state.marks import MarkStore
from syncer.store.database import open_store
from syncer.store.readers import iter_all_accounts, read_account, read_user

T = TypeVar("T")

explain_app = command_group(
    "explain", "Why a user or an account has its stage: memberships, marks, the deciding rule."
)

StateOption = Annotated[
    str | None,
    typer.Option(
        "--state",
        envvar=STATE_URL_ENV,
        help="Sync state URL (default: the store).",
        show_default=False,
    ),
]


ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Take store, state and policies from this syncer.yaml instead."
    ),
]


@contextmanager
def _explained(
    read: Callable[[Engine, str], T | None],
    kind: str,
    key: str,
    store_url: str,
    state_url: str | None,
    config: Path | None,
) -> Iterator[tuple[Resolver, MarkStore, T]]:
    """The resolver, the marks and the ``kind`` ``key`` as ``read`` finds it in the store (a
    clear error if it is not there); every engine is disposed on exit."""
    with ExitStack() as cleanup:
        settings = PolicySettings(rollups=dict(PoliciesConfig().rollups))
        if config is not None:
            sync = cleanup.enter_context(Sync(load_config(config)))
            settings, store, state = sync.settings, sync.store, sync.state
        else:
            store = open_store(store_url)
            cleanup.callback(store.dispose)
            if state_url is None:
                state = open_state(store)
            else:
                state = open_state(state_url)
                cleanup.callback(state.dispose)
        hierarchy = Hierarchy.from_accounts(iter_all_accounts(store), settings.rollups)
        item = read(store, key)
        if item is None:
            raise BadInputError(
                Problem(f"no {kind} {key!r} in the store", key=key, hint="check the id")
            )
        yield Resolver(settings, hierarchy), MarkStore(state), item


Show = Callable[[Resolver, MarkStore, T, bool], None]
"""How one kind is shown: given the resolver, the marks, the item read and ``--json``."""


def _explain_command(
    kind: str, read: Callable[[Engine, str], T | None], id_help: str
) -> Callable[[Show[T]], Show[T]]:
    """Register ``syncer explain KIND ID``, shown by the decorated function (whose docstring is
    the command's help): one command body, so both kinds take the same options and find the
    store, state and policies the same way. Every engine is disposed once ``show`` returns."""

    def register(show: Show[T]) -> Show[T]:
        def command(
            key: str,
            store: StoreOption = DEFAULT_STORE_URL,
            state: StateOption = None,
            config: ConfigFile = None,
            as_json: JsonOption = False,
        ) -> None:
            with _explained(read, kind, key, store, state, config) as (resolver, marks, item):
                show(resolver, marks, item, as_json)

        # The argument is named for the kind (``user_id``: in help and errors), which this
        # module's string annotations cannot refer to: its annotation is set as an object.
        command.__annotations__["key"] = Annotated[
            str, typer.Argument(metavar=f"{kind}_id", help=id_help)
        ]
        command.__doc__ = show.__doc__
        explain_app.command(kind)(command)
        return show

    return register


@_explain_command("user", read_user, "The product's user id.")
def explain_user(
    resolver: Resolver, marks: MarkStore, item: UserWithMemberships, as_json: bool
) -> None:
    """A user's memberships, marks and the rule behind their stage and primary account."""
    previous = {(m.subject, m.account_id): m for m in marks.get_user_marks(item.user.user_id)}
    resolved, changed = resolver.resolve_user(item, previous.values())
    u = resolved.user
    name = " ".join(p for p in (u.first_name, u.last_name) if p) or u.email or u.user_id
    gone = [
        mark
        for (subject, aid), mark in previous.items()
        if subject == "membership"
        and not mark.churned
        and aid not in {m.account_id for m in resolved.memberships}
    ]

    def was(account_id: str) -> str | None:
        before = previous.get(("membership", account_id))
        return None if before is None else ("churned" if before.churned else str(before.stage))

    if as_json:
        print_json(
            {
                "user_id": u.user_id,
                "name": name,
                "email": u.email,
                "lead_stage": u.lead_stage,
                "stage": resolved.stage,
                "rule": resolved.rule,
                "primary_account_id": resolved.primary_account_id,
                "primary_rule": resolved.primary_rule,
                "memberships": [
                    {
                        "account_id": m.account_id,
                        "account_name": m.account_name,
                        "stage": m.stage,
                        "mark_before": was(m.account_id),
                        "mark_now": m.mark,
                        "state": _membership_state(m),
                    }
                    for m in resolved.memberships
                ]
                + [
                    {
                        "account_id": mark.account_id,
                        "account_name": None,
                        "stage": None,
                        "mark_before": str(mark.stage),
                        "mark_now": None,
                        "state": "left",
                    }
                    for mark in gone
                ],
                "marks_changing": len(changed),
            }
        )
        return
    console.print(Text.assemble((f"{name} ({u.user_id})", "bold"), f"  lead stage {u.lead_stage}"))
    table = Table(box=box.SIMPLE_HEAD)
    for col in ("account", "name", "stage in store", "mark (earlier runs)", "mark now", "state"):
        table.add_column(col)
    for m in resolved.memberships:
        table.add_row(
            m.account_id,
            m.account_name or "",
            m.stage,
            was(m.account_id) or "—",
            m.mark or "—",
            _membership_state(m),
        )
    for mark in gone:
        table.add_row(mark.account_id, "", "(not in store)", str(mark.stage), "—", "left: churn")
    console.print(table)
    console.print(Text.assemble(("stage ", "bold"), resolved.stage, "  — ", resolved.rule))
    console.print(
        Text.assemble(
            ("primary ", "bold"),
            str(resolved.primary_account_id),
            "  — ",
            resolved.primary_rule or "",
        )
    )
    if changed:
        console.print(
            f"{len(changed)} mark(s) would change at the next real run (not saved by explain)",
            style="dim",
        )


@_explain_command("account", read_account, "The product's account id.")
def explain_account(
    resolver: Resolver, marks: MarkStore, item: AccountWithMembers, as_json: bool
) -> None:
    """An account's own stage, its active members, hierarchy and roll-ups."""
    resolved, _ = resolver.resolve_account(item, marks.get_account_marks(item.account.account_id))
    a = resolved.account
    if as_json:
        print_json(
            {
                "account_id": a.account_id,
                "name": a.name,
                "stage": resolved.stage,
                "rule": resolved.rule,
                "ancestors": list(resolved.ancestors),
                "children": list(resolved.children),
                "rollups": dict(sorted(resolved.rollups.items())),
                "members": [
                    {
                        "user_id": m.user_id,
                        "email": m.email,
                        "role": m.role,
                        "stage": m.stage,
                        "mark": m.mark,
                    }
                    for m in resolved.members
                ],
            }
        )
        return
    console.print(Text.assemble((f"{a.name or a.account_id} ({a.account_id})", "bold")))
    console.print(Text.assemble(("stage ", "bold"), resolved.stage, "  — ", resolved.rule))
    if resolved.ancestors:
        console.print(f"ancestors: {' → '.join(resolved.ancestors)}")
    if resolved.children:
        console.print(f"children: {', '.join(resolved.children)}")
    if resolved.rollups:
        console.print(
            "roll-ups over the subtree: "
            + ", ".join(f"{k} {v:g}" for k, v in sorted(resolved.rollups.items()))
        )
    table = Table(box=box.SIMPLE_HEAD, title="active members")
    for col in ("user", "email", "role", "stage", "mark"):
        table.add_column(col)
    for m in resolved.members:
        table.add_row(m.user_id, m.email or "", m.role or "", m.stage, m.mark or "—")
    console.print(table)


def _membership_state(m: ResolvedMembership) -> str:
    """``churned``, ``primary`` or ``active``: how explain names a membership's state."""
    return "churned" if m.churned else ("primary" if m.primary else "active")
