"""Incremental runs are exact: after any sequence of store changes, a destination synced
incrementally after each step holds what a full run produces, and a ``--full`` run afterwards
sends nothing.

Hypothesis draws sequences of steps over a small key space (so changes collide): users, accounts
and memberships written with plain SQL (as the product's own jobs would: the feed's triggers see
them), deletions through ``syncer store delete``'s API, churn, stage changes and re-parenting
(cycles included), user changes an account shows (an email) or may not (a first name: only
the mappings whose companies list member names show it), and emails changed alone (a contact
then made from its row). After each step one destination is
synced incrementally and another, with its own sync state, in full; their contents must be
equal, record by record and link by link.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.engine import Engine

from syncer.config import load_config
from syncer.engine import Sync
from syncer.retry import RetryPolicy
from syncer.store.database import init_store
from syncer.store.removal import DeleteKeys, delete_records
from syncer.store.schema import accounts, memberships, users
from syncer.testing.memory import MemoryConnector, MemoryStore

ROOT = Path(__file__).resolve().parents[1]
USERS = [f"u{i}" for i in range(5)]
ACCOUNTS = [f"a{i}" for i in range(4)]
STAGES = [None, "visitor", "MAL", "MQL", "CUS", "PRO", "churned"]
T0 = datetime(2024, 1, 1, tzinfo=UTC)

Step = tuple[Any, ...]

user_step = st.tuples(
    st.just("user"),
    st.sampled_from(USERS),
    st.sampled_from(STAGES[:-1]),
    st.sampled_from("AB"),  # the first name: shown by the companies of some mappings only
    st.sampled_from("xy"),  # the email's domain: shown by every mapping's companies
)
account_step = st.tuples(
    st.just("account"),
    st.sampled_from(ACCOUNTS),
    st.sampled_from(STAGES),
    st.sampled_from([None, *ACCOUNTS]),  # the parent: re-parenting, cycles included
    st.integers(0, 3),  # licenses, rolled up the forest
)
#: The email alone (nothing else of the user): its contact is made from its row and last payload.
email_step = st.tuples(st.just("email"), st.sampled_from(USERS), st.sampled_from("xyz"))
member_step = st.tuples(
    st.just("member"),
    st.sampled_from(USERS),
    st.sampled_from(ACCOUNTS),
    st.sampled_from(STAGES),  # churn included
    st.integers(0, 3),  # joined day: primary-account policy
)
delete_step = st.tuples(
    st.sampled_from(["delete", "sql-delete"]),  # the store's API, or the product's plain SQL
    st.sampled_from(["user", "account", "membership"]),
    st.integers(0, 30),
)
steps = st.lists(
    st.lists(
        st.one_of(user_step, email_step, account_step, member_step, delete_step),
        min_size=1,
        max_size=4,
    ),
    min_size=1,
    max_size=5,
)


def _upsert(engine: Engine, table: Any, key: dict[str, Any], values: dict[str, Any]) -> None:
    where = [table.c[k] == v for k, v in key.items()]
    with engine.begin() as conn:
        if conn.execute(select(*table.primary_key.columns).where(*where)).first() is None:
            conn.execute(table.insert().values(**key, **values))
        else:
            conn.execute(table.update().where(*where).values(**values))


def _ensure_user(engine: Engine, uid: str) -> None:
    with engine.connect() as conn:
        if conn.execute(select(users.c.user_id).where(users.c.user_id == uid)).first():
            return
    _upsert(engine, users, {"user_id": uid}, {"email": f"{uid}@x.example", "attributes": {}})


def _ensure_account(engine: Engine, aid: str) -> None:
    with engine.connect() as conn:
        if conn.execute(select(accounts.c.account_id).where(accounts.c.account_id == aid)).first():
            return
    _upsert(engine, accounts, {"account_id": aid}, {"name": aid.upper(), "attributes": {}})


def apply_step(engine: Engine, step: Step) -> None:
    """One change to the store, written as the product would (plain SQL) or deleted through
    the store's delete API."""
    kind = step[0]
    if kind == "user":
        _, uid, lead, name, domain = step
        values = {"email": f"{uid}@{domain}.example", "first_name": name, "lead_stage": lead}
        _upsert(engine, users, {"user_id": uid}, {**values, "attributes": {}})
    elif kind == "email":
        _, uid, domain = step
        _ensure_user(engine, uid)
        with engine.begin() as conn:
            conn.execute(
                users.update().where(users.c.user_id == uid).values(email=f"{uid}@{domain}.example")
            )
    elif kind == "account":
        _, aid, stage, parent, licenses = step
        if parent is not None:
            _ensure_account(engine, parent)
        values = {"name": aid.upper(), "stage": stage, "parent_account_id": parent}
        _upsert(
            engine, accounts, {"account_id": aid}, {**values, "attributes": {"licenses": licenses}}
        )
    elif kind == "member":
        _, uid, aid, stage, day = step
        _ensure_user(engine, uid)
        _ensure_account(engine, aid)
        joined = T0.replace(day=1 + day)
        _upsert(
            engine,
            memberships,
            {"user_id": uid, "account_id": aid},
            {"stage": stage, "role": "member", "joined_at": joined},
        )
    else:
        _, what, pick = step
        with engine.connect() as conn:
            if what == "user":
                keys: list[Any] = list(conn.execute(select(users.c.user_id)).scalars())
            elif what == "account":
                keys = list(conn.execute(select(accounts.c.account_id)).scalars())
            else:
                keys = [
                    tuple(r)
                    for r in conn.execute(select(memberships.c.user_id, memberships.c.account_id))
                ]
        if not keys:
            return
        key = sorted(keys)[pick % len(keys)]
        if kind == "sql-delete":
            # As the product's own job would: one DELETE, children and memberships left as the
            # database's foreign keys leave them (an orphaned child is rejected by the hierarchy).
            table = {"user": users, "account": accounts, "membership": memberships}[what]
            columns = list(table.primary_key.columns)
            values = key if isinstance(key, tuple) else (key,)
            with engine.begin() as conn:
                conn.execute(
                    table.delete().where(*(c == v for c, v in zip(columns, values, strict=True)))
                )
            return
        if what == "account":
            # The delete API refuses to orphan children: they become roots first (re-parenting).
            with engine.begin() as conn:
                c = accounts.c
                conn.execute(
                    accounts.update()
                    .where(c.parent_account_id == key)
                    .values(parent_account_id=None)
                )
            delete_records(engine, DeleteKeys([], [key], []))
        elif what == "user":
            delete_records(engine, DeleteKeys([key], [], []))
        else:
            delete_records(engine, DeleteKeys([], [], [key]))


def contents(dest: MemoryStore) -> tuple[dict[Any, Any], set[Any]]:
    """What the destination holds, by key (remote ids differ between two destinations)."""
    records = {
        (obj, key): (dict(r.fields), r.archived)
        for obj, held in dest.records.items()
        for key, r in held.items()
    }
    by_id = {
        (obj, r.remote_id): key for obj, held in dest.records.items() for key, r in held.items()
    }
    links = {
        (fo, by_id[(fo, fid)], to, by_id[(to, tid)], kind)
        for fo, fid, to, tid, kind in dest.associations
    }
    return records, links


#: The companies' extra field of each mapping drawn: none (HubSpot's: members' ids, emails
#: and stages), members' first names through ``tokens``, and through a loop (which the
#: closure cannot follow: it takes every column as shown).
MAPPINGS = {
    "hubspot": "",
    "names": "      syncer_user_names: {type: tokens, value: \"members | tokens('first_name')\"}\n",
    "loop": '      syncer_first_names: "{% for m in members %}{{ m.first_name }} {% endfor %}"\n',
}


def _mapping(base: Path, variant: str, text: str | None = None) -> Path:
    """The mapping file of ``variant``, or one of the whole ``text`` when given."""
    if text is not None:
        out = base / "mapping.yaml"
        out.write_text(text, encoding="utf-8")
        return out
    path = ROOT / "mappings" / "hubspot.yaml"
    if not MAPPINGS[variant]:
        return path
    text = path.read_text(encoding="utf-8")
    anchor = "      syncer_user_count:"
    assert anchor in text
    out = base / f"{variant}.yaml"
    out.write_text(text.replace(anchor, MAPPINGS[variant] + anchor, 1), encoding="utf-8")
    return out


@contextmanager
def two_syncs(
    removal: str, mapping: str = "hubspot", *, text: str | None = None
) -> Iterator[tuple[Engine, Sync, Sync]]:
    """A fresh SQLite store, and two Syncs of it with their own sync states: ``inc`` and
    ``ref``; their mapping is the ``mapping`` variant, or the whole ``text`` when given."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        mapping_path = _mapping(base, mapping, text)
        store_url = f"sqlite:///{base / 'store.db'}"
        engine = init_store(store_url)
        made = []
        for name in ("inc", "ref"):
            config = base / f"{name}.yaml"
            config.write_text(
                f"store: {json.dumps(store_url)}\n"
                f"state: {json.dumps(f'sqlite:///{base / name}.db')}\n"
                "destinations:\n"
                "  crm:\n"
                "    connector: memory\n"
                f"    mapping: {mapping_path}\n"
                f"    removal: {removal}\n",
                encoding="utf-8",
            )
            made.append(Sync(load_config(config), retry=RetryPolicy.no_wait()))
        try:
            yield engine, made[0], made[1]
        finally:
            for sync in made:
                sync.close()
            engine.dispose()


@settings(
    # SYNCER_PROPERTY_EXAMPLES=500 (with --timeout=0) for a longer search than the suite's.
    max_examples=int(os.environ.get("SYNCER_PROPERTY_EXAMPLES", "25")),
    deadline=None,
    # No shrinking: each example opens two databases and runs a dozen syncs, so shrinking a
    # failure takes minutes; the failing steps are printed whole (few, by construction).
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(steps, st.sampled_from(["clear", "archive"]), st.sampled_from(sorted(MAPPINGS)))
# A member's name, then email, changing under mappings whose companies show the name or not.
@example([[("member", "u1", "a1", "CUS", 0)], [("user", "u1", None, "B", "x")]], "clear", "names")
@example([[("member", "u1", "a1", "CUS", 0)], [("user", "u1", None, "B", "x")]], "clear", "loop")
@example(
    [[("member", "u1", "a1", "CUS", 0)], [("user", "u1", None, "B", "y")]], "archive", "hubspot"
)
def test_incremental_runs_equal_full_runs(
    batches: list[list[Step]], removal: str, mapping: str
) -> None:
    inc_dest, ref_dest = MemoryStore(), MemoryStore()
    with two_syncs(removal, mapping) as (engine, inc, ref):
        for i, batch in enumerate(batches):
            for step in batch:
                apply_step(engine, step)
            inc_report = inc.run("crm", connector=MemoryConnector(store=inc_dest))
            ref_report = ref.run("crm", connector=MemoryConnector(store=ref_dest), full=True)
            assert inc_report.mode == ("full" if i == 0 else "incremental")
            assert ref_report.mode == "full"
            assert contents(inc_dest) == contents(ref_dest), f"after step {i}: {batch}"
        # A full recompute after the incremental runs finds nothing to send.
        check = MemoryConnector(store=inc_dest)
        full = inc.run("crm", connector=check, full=True)
        assert full.mode == "full"
        assert [c for c in check.calls if c.op != "check"] == []
        assert full.run_counts()["sent"] == 0


def test_a_no_change_run_reads_no_store_row() -> None:
    dest = MemoryStore()
    with two_syncs("clear") as (engine, inc, _ref):
        apply_step(engine, ("member", "u1", "a1", "CUS", 0))
        first = inc.run("crm", connector=MemoryConnector(store=dest))
        assert first.mode == "full"
        assert first.read["users"] == 1
        conn = MemoryConnector(store=dest)
        again = inc.run("crm", connector=conn)
        assert again.cost() == {
            "mode": "incremental",
            "read": {"users": 0, "accounts": 0, "memberships": 0},
        }
        assert [c for c in conn.calls if c.op != "check"] == []
        # One user's name changed: that user is read, not a1 (its company shows its members'
        # emails, not their names); then its email: a1 is read too.
        apply_step(engine, ("user", "u1", "MQL", "B", "x"))
        apply_step(engine, ("user", "u2", "MQL", "B", "x"))  # a user of no account
        plan = inc.plan("crm")
        assert plan.mode == "incremental"
        assert plan.read["users"] == 2
        assert plan.read["accounts"] == 1  # a1's name and parent: u1's membership shows them
        # u1's contact changes (its name), u2's is new; no company is planned.
        assert {a: n for a, n in plan.totals().items() if n} == {"update": 1, "create": 1}
        apply_step(engine, ("user", "u1", "MQL", "B", "y"))
        plan = inc.plan("crm")
        # u1's contact and a1's company (it lists u1's email) change, u2's is still new.
        assert {a: n for a, n in plan.totals().items() if n} == {"update": 2, "create": 1}


def test_a_key_not_read_is_not_removed() -> None:
    dest = MemoryStore()
    with two_syncs("archive") as (engine, inc, _ref):
        apply_step(engine, ("member", "u1", "a1", "CUS", 0))
        apply_step(engine, ("member", "u2", "a2", "CUS", 0))
        inc.run("crm", connector=MemoryConnector(store=dest))
        apply_step(engine, ("user", "u1", "MQL", "B", "x"))
        report = inc.run("crm", connector=MemoryConnector(store=dest))
        assert report.totals()["remove"] == 0
        assert not dest.records["contacts"]["u2"].archived
        # Deleted: a tombstone, so removed (archived) by the next incremental run.
        apply_step(engine, ("delete", "user", 1))  # sorted: u1, u2 -> u2
        report = inc.run("crm", connector=MemoryConnector(store=dest))
        assert report.mode == "incremental"
        assert report.totals()["remove"] == 1
        assert dest.records["contacts"]["u2"].archived


def test_a_run_killed_mid_way_keeps_the_position_and_converges() -> None:
    from syncer.testing.memory import MemoryConfig

    dest, ref_dest = MemoryStore(), MemoryStore()
    with two_syncs("clear") as (engine, inc, ref):
        apply_step(engine, ("member", "u1", "a1", "CUS", 0))
        inc.run("crm", connector=MemoryConnector(store=dest))
        for uid in USERS:
            apply_step(engine, ("member", uid, "a2", "MQL", 1))
        small = MemoryConnector.configured(max_batch=1)
        crashing = small(MemoryConfig(crash_after_batches=2), store=dest)
        try:
            inc.run("crm", connector=crashing)
        except RuntimeError:
            pass
        else:  # pragma: no cover - the fault switch must fire
            raise AssertionError("the run did not crash")
        again = inc.run("crm", connector=MemoryConnector(store=dest))
        assert again.mode == "incremental"
        assert again.status == "succeeded"
        ref.run("crm", connector=MemoryConnector(store=ref_dest), full=True)
        assert contents(dest) == contents(ref_dest)


def test_a_policy_change_means_a_full_run() -> None:
    dest = MemoryStore()
    with two_syncs("clear") as (engine, inc, _ref):
        apply_step(engine, ("member", "u1", "a1", "CUS", 0))
        inc.run("crm", connector=MemoryConnector(store=dest))
        assert inc.plan("crm").mode == "incremental"
        policies = inc.config.policies.model_copy(update={"primary": "first"})
        other = Sync(inc.config.model_copy(update={"policies": policies}))
        try:
            plan = other.plan("crm")
            assert plan.mode == "full"
            assert "policies" in plan.mode_reason
        finally:
            other.close()
