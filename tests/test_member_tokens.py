"""Companies made again from kept member tokens when only some members' emails or names changed
(:mod:`syncer.engine.member_tokens`): the same records as a full rebuild, and a rebuild
whenever the kept tokens may not hold."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from test_incremental_property import apply_step, contents, two_syncs

from syncer.engine import Sync
from syncer.mapping.member_tokens import MemberTokenFields
from syncer.state.schema import sync_member_token_accounts, sync_member_tokens
from syncer.store.schema import accounts, users
from syncer.testing.memory import MemoryConfig, MemoryConnector, MemoryStore

ROOT = Path(__file__).resolve().parents[1]
HUBSPOT = (ROOT / "mappings" / "hubspot.yaml").read_text(encoding="utf-8")
#: The companies' member fields cut short: the kept tokens must truncate as a rebuild does.
SHORT = HUBSPOT.replace(
    'syncer_user_emails: {type: tokens, value: "members | emails"}',
    'syncer_user_emails: {type: tokens, value: "members | emails", max_length: 40}',
).replace(
    "value: \"members | tokens('email', 'stage')\"}",
    "value: \"members | tokens('email', 'stage')\", max_length: 60}",
)
#: A companies field that lists member names through a loop: not a fused token field.
LOOP = HUBSPOT.replace(
    "      syncer_user_count:",
    '      syncer_first_names: "{% for m in members %}{{ m.first_name }} {% endfor %}"\n'
    "      syncer_user_count:",
    1,
)
NAMES = HUBSPOT.replace(
    "      syncer_user_count:",
    "      syncer_user_names: {type: tokens, value: \"members | tokens('first_name')\"}\n"
    "      syncer_user_count:",
    1,
)


@contextmanager
def syncs(mapping: str = HUBSPOT) -> Iterator[tuple[Engine, Sync, Reference]]:
    """A fresh SQLite store, and two Syncs of it with their own states: ``inc``, and ``ref``
    synced in full (removal ``none``, the default)."""
    with two_syncs("none", text=mapping) as (engine, inc, ref):
        yield engine, inc, Reference(ref)


def _members(engine: Engine, account: str, stages: list[str]) -> None:
    for i, stage in enumerate(stages):
        apply_step(engine, ("member", f"u{i}", account, stage, i % 4))


@dataclass
class Reference:
    """The same store synced in full every time, to a destination of its own."""

    sync: Sync
    dest: MemoryStore = field(default_factory=MemoryStore)

    def check(self, inc_dest: MemoryStore) -> None:
        self.sync.run("crm", connector=MemoryConnector(store=self.dest), full=True)
        assert contents(inc_dest) == contents(self.dest)


def test_an_email_change_remakes_the_company_from_kept_tokens() -> None:
    dest = MemoryStore()
    with syncs() as (engine, inc, ref):
        _members(engine, "a1", ["CUS", "MQL", "PRO", "MAL", "visitor"])
        _members(engine, "a2", ["CUS"])
        first = inc.run("crm", connector=MemoryConnector(store=dest))
        assert first.mode == "full"
        apply_step(engine, ("user", "u1", None, "A", "y"))  # u1's email: in a1's fields
        plan = inc.plan("crm")
        assert plan.mode == "incremental"
        # a1's five kept members are read from the state; of the store, u1's membership there
        # (and u1's own row and memberships, for its contact).
        assert plan.read["member_tokens"] == 5
        assert plan.totals()["update"] == 2  # u1's contact, a1's company
        run = inc.run("crm", connector=MemoryConnector(store=dest))
        assert run.read["member_tokens"] == 5
        assert "u1zayzdezxample" in (dest.records["companies"]["a1"].fields["syncer_user_emails"])
        ref.check(dest)
        # The run kept u1's new tokens: the next email change is made from them too.
        apply_step(engine, ("user", "u3", None, "A", "y"))
        again = inc.run("crm", connector=MemoryConnector(store=dest))
        assert again.read["member_tokens"] == 5
        ref.check(dest)
        check = MemoryConnector(store=dest)
        full = inc.run("crm", connector=check, full=True)
        assert full.run_counts()["sent"] == 0


def test_truncated_fields_are_remade_as_a_rebuild_truncates_them() -> None:
    dest = MemoryStore()
    with syncs(SHORT) as (engine, inc, ref):
        _members(engine, "a1", ["CUS", "MQL", "PRO", "MAL", "visitor", "CUS", "MQL"])
        inc.run("crm", connector=MemoryConnector(store=dest))
        held = dest.records["companies"]["a1"].fields
        assert held["syncer_user_emails_truncated"] == "true"
        for uid, domain in (("u2", "yyyyyyyyyyyy"), ("u0", "z"), ("u2", "x")):
            apply_step(engine, ("user", uid, None, "A", domain))
            run = inc.run("crm", connector=MemoryConnector(store=dest))
            assert run.read["member_tokens"] == 7
            ref.check(dest)


def test_members_sharing_an_address_keep_its_best_stage() -> None:
    """Two members with one email: the company's token of it carries the better stage, in a
    rebuild and in a company made from kept tokens alike (each key keeps its highest rank)."""
    dest = MemoryStore()
    with syncs() as (engine, inc, ref):
        _members(engine, "a1", ["MQL", "PRO", "CUS"])
        with engine.begin() as conn:
            conn.execute(update(users).where(users.c.user_id == "u1").values(email="u0@x.example"))
        inc.run("crm", connector=MemoryConnector(store=dest))
        ref.check(dest)
        apply_step(engine, ("user", "u2", None, "A", "y"))
        run = inc.run("crm", connector=MemoryConnector(store=dest))
        assert run.read["member_tokens"] == 3
        ref.check(dest)
        # The PRO member takes another address: the shared one falls back to MQL.
        with engine.begin() as conn:
            conn.execute(update(users).where(users.c.user_id == "u1").values(email="u1@z.example"))
        run = inc.run("crm", connector=MemoryConnector(store=dest))
        assert run.read["member_tokens"] == 3
        stages = dest.records["companies"]["a1"].fields["syncer_user_stages"] or ""
        assert "u0zazxzdezxamplexmql" in stages
        ref.check(dest)


def test_a_name_change_is_remade_where_companies_list_names() -> None:
    dest = MemoryStore()
    with syncs(NAMES) as (engine, inc, ref):
        _members(engine, "a1", ["CUS", "MQL", "PRO"])
        inc.run("crm", connector=MemoryConnector(store=dest))
        apply_step(engine, ("user", "u1", None, "Zed", "x"))
        run = inc.run("crm", connector=MemoryConnector(store=dest))
        assert run.read["member_tokens"] == 3
        assert "zed" in (dest.records["companies"]["a1"].fields["syncer_user_names"] or "")
        ref.check(dest)


def test_a_mapping_that_reads_members_otherwise_rebuilds() -> None:
    dest = MemoryStore()
    with syncs(LOOP) as (engine, inc, ref):
        _members(engine, "a1", ["CUS", "MQL", "PRO"])
        inc.run("crm", connector=MemoryConnector(store=dest))
        apply_step(engine, ("user", "u1", None, "Zed", "y"))
        run = inc.run("crm", connector=MemoryConnector(store=dest))
        assert "member_tokens" not in run.read
        assert run.read["memberships"] >= 3  # a1 read whole
        ref.check(dest)


def test_a_membership_change_rebuilds_the_account() -> None:
    dest = MemoryStore()
    with syncs() as (engine, inc, ref):
        _members(engine, "a1", ["CUS", "MQL", "PRO"])
        inc.run("crm", connector=MemoryConnector(store=dest))
        # u1's email and its stage in a1 change at once: a1 is rebuilt, not remade.
        apply_step(engine, ("user", "u1", None, "A", "y"))
        apply_step(engine, ("member", "u1", "a1", "churned", 1))
        run = inc.run("crm", connector=MemoryConnector(store=dest))
        assert "member_tokens" not in run.read
        ref.check(dest)
        # ...and keeps its tokens: u1, churned, is no longer one of them.
        apply_step(engine, ("user", "u2", None, "A", "y"))
        run = inc.run("crm", connector=MemoryConnector(store=dest))
        assert run.read["member_tokens"] == 2
        ref.check(dest)


def test_an_account_refused_last_time_is_rebuilt() -> None:
    dest = MemoryStore()
    with syncs() as (engine, inc, ref):
        _members(engine, "a1", ["CUS", "MQL", "PRO"])
        inc.run("crm", connector=MemoryConnector(store=dest))
        apply_step(engine, ("user", "u1", None, "A", "y"))
        refusing = MemoryConnector(MemoryConfig(reject_keys=frozenset({"a1"})), store=dest)
        refused = inc.run("crm", connector=refusing)
        assert refused.run_counts()["refused"] == 1
        apply_step(engine, ("user", "u2", None, "A", "y"))
        run = inc.run("crm", connector=MemoryConnector(store=dest))
        assert "member_tokens" not in run.read  # a1 waits for a retry: rebuilt
        ref.check(dest)


def test_kept_tokens_hold_across_runs_that_did_not_touch_them() -> None:
    dest = MemoryStore()
    with syncs() as (engine, inc, ref):
        _members(engine, "a1", ["CUS", "MQL", "PRO"])
        apply_step(engine, ("member", "u9", "a2", "CUS", 0))
        inc.run("crm", connector=MemoryConnector(store=dest))
        # Runs that change a2 and others only: a1's rows, written by the first run (stamped
        # before the position now recorded), still hold every change.
        apply_step(engine, ("user", "u9", None, "A", "y"))
        inc.run("crm", connector=MemoryConnector(store=dest))
        apply_step(engine, ("member", "u9", "a2", "PRO", 0))
        inc.run("crm", connector=MemoryConnector(store=dest))
        apply_step(engine, ("user", "u1", None, "A", "y"))
        run = inc.run("crm", connector=MemoryConnector(store=dest))
        assert run.read["member_tokens"] == 3
        ref.check(dest)


def test_kept_tokens_of_another_config_are_not_used() -> None:
    dest = MemoryStore()
    with syncs() as (engine, inc, ref):
        _members(engine, "a1", ["CUS", "MQL", "PRO"])
        inc.run("crm", connector=MemoryConnector(store=dest))
        # Rows of another mapping (bogus tokens): not used, the account is rebuilt.
        with inc.state.begin() as conn:
            conn.execute(update(sync_member_tokens).values(tokens="bogus\x1e9\x1f\x1f"))
            conn.execute(update(sync_member_token_accounts).values(config_hash="another"))
        apply_step(engine, ("user", "u1", None, "A", "y"))
        run = inc.run("crm", connector=MemoryConnector(store=dest))
        assert "member_tokens" not in run.read
        ref.check(dest)
        # The rebuild kept fresh rows: they are used next time.
        with inc.state.connect() as conn:
            kept = conn.execute(select(sync_member_tokens.c.tokens)).scalars().all()
        assert kept
        assert not any("bogus" in t for t in kept)
        apply_step(engine, ("user", "u2", None, "A", "y"))
        run = inc.run("crm", connector=MemoryConnector(store=dest))
        assert run.read["member_tokens"] == 3
        ref.check(dest)


def test_an_account_gone_from_the_store_loses_its_rows() -> None:
    dest = MemoryStore()
    with syncs() as (engine, inc, ref):
        _members(engine, "a1", ["CUS", "MQL"])
        apply_step(engine, ("member", "u0", "a2", "CUS", 0))
        inc.run("crm", connector=MemoryConnector(store=dest))
        ref.check(dest)
        # a2 deleted with plain SQL, its membership left behind (no foreign keys enforced).
        with engine.begin() as conn:
            conn.execute(accounts.delete().where(accounts.c.account_id == "a2"))
        inc.run("crm", connector=MemoryConnector(store=dest))
        ref.check(dest)
        with inc.state.connect() as conn:
            held = conn.execute(select(sync_member_token_accounts.c.account_id)).scalars().all()
        assert held == ["a1"]
        apply_step(engine, ("user", "u0", None, "A", "y"))
        run = inc.run("crm", connector=MemoryConnector(store=dest))
        assert run.read["member_tokens"] == 2  # a1's; a2 has none, and no record to make
        ref.check(dest)


def test_which_objects_keep_member_tokens() -> None:
    def companies(text: str) -> MemberTokenFields | None:
        with syncs(text) as (_engine, sync, _ref):
            return MemberTokenFields.of(sync.destination("crm").mapping.object("companies"))

    hubspot = companies(HUBSPOT)
    assert hubspot is not None
    assert hubspot.names == ("syncer_users", "syncer_user_emails", "syncer_user_stages")
    names = companies(NAMES)
    assert names is not None
    assert "syncer_user_names" in names.names
    assert companies(LOOP) is None  # a loop over members reads their names unseen
    anchor = "    key: syncer_account_id "
    hinted = HUBSPOT.replace(anchor, "    hints: {domain: account.domain}\n" + anchor, 1)
    assert hinted != HUBSPOT
    assert companies(hinted) is None


emails = st.lists(
    st.tuples(st.sampled_from(["a", "b", "Bob", "x.y", "z"]), st.sampled_from(["x", "y", "Q"])),
    min_size=1,
    max_size=8,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.sampled_from(["CUS", "MQL", "PRO", "MAL", "visitor", "churned"]), min_size=1, max_size=6
    ),
    emails,
)
def test_remade_companies_equal_rebuilt_ones(
    stages: list[str], changes: list[tuple[str, str]]
) -> None:
    """Members' emails changed one at a time, under fields cut short: every run's companies
    equal a full rebuild's, and those with an active member are made from kept tokens."""
    dest = MemoryStore()
    with syncs(SHORT) as (engine, inc, ref):
        _members(engine, "a1", stages)
        inc.run("crm", connector=MemoryConnector(store=dest))
        active = sum(s != "churned" for s in stages)
        for i, (local, domain) in enumerate(changes):
            uid = f"u{i % len(stages)}"
            with engine.begin() as conn:
                conn.execute(
                    update(users)
                    .where(users.c.user_id == uid)
                    .values(email=f"{local}{i}@{domain}.example")
                )
            run = inc.run("crm", connector=MemoryConnector(store=dest))
            assert run.read.get("member_tokens", 0) == active
            ref.check(dest)


def test_changed_members_are_read_again_when_the_closure_kept_too_many(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The closure reads the changed members' rows to find their accounts and keeps them for
    the token pass, up to a bound; past it the pass reads them itself, with the same result."""
    from syncer.store import closure

    dest = MemoryStore()
    with syncs() as (engine, inc, ref):
        _members(engine, "a1", ["CUS", "MQL", "PRO"])
        inc.run("crm", connector=MemoryConnector(store=dest))
        ref.check(dest)
        apply_step(engine, ("email", "u1", "y"))
        kept = inc.plan("crm")
        monkeypatch.setattr(closure, "KEEP_MEMBER_ROWS", 0)
        again = inc.plan("crm")
        assert kept.read["member_tokens"] == again.read["member_tokens"] == 3
        assert (kept.read["memberships"], again.read["memberships"]) == (1, 2)
        assert kept.totals() == again.totals()
        inc.run("crm", connector=MemoryConnector(store=dest))
        ref.check(dest)
