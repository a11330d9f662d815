"""The engine end to end on the examples/ dataset, against the in-memory destination.

SQLite and PostgreSQL (``db_url``): the store and the sync state live in the same database.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, update

from syncer.connectors.base import WriteRecord, WriteResult
from syncer.db import create_db_engine
from syncer.engine import RunSession, Sync
from syncer.model import Mark
from syncer.state import AssociationLedger, FailureLog, RecordState, acquire
from syncer.store.schema import memberships, users
from syncer.testing.memory import MemoryConfig, MemoryConnector, MemoryStore

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden" / "hubspot_plan.json"


def _plan_payloads(sync: Sync) -> dict[str, dict[str, dict[str, str | None]]]:
    dest = sync.destination("crm")
    return {
        obj.name: {c.key: dict(c.payload) for c in sync.changes(dest, obj)}
        for obj in dest.mapping.objects
    }


def test_golden_plan_of_the_examples_for_hubspot(memory_sync: Callable[..., Sync]) -> None:
    with memory_sync(removal="clear") as sync:
        got = _plan_payloads(sync)
    if os.environ.get("SYNCER_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert got.keys() == expected.keys()
    for obj, records in expected.items():
        assert got[obj].keys() == records.keys(), obj
        for key, payload in records.items():
            assert got[obj][key] == payload, f"{obj} {key}"


def test_a_plan_writes_nothing(memory_sync: Callable[..., Sync]) -> None:
    with memory_sync(removal="clear") as sync:
        report = sync.plan("crm")
        assert report.totals()["create"] == 25
        assert RecordState(sync.state).count("crm") == 0
        again = sync.plan("crm")
    assert again.totals() == report.totals()


def test_run_then_rerun_sends_nothing_and_plans_zero_changes(
    memory_sync: Callable[..., Sync],
) -> None:
    dest = MemoryStore()
    with memory_sync(removal="clear") as sync:
        first = sync.run("crm", connector=MemoryConnector(store=dest))
        assert first.status == "succeeded"
        assert first.run_counts()["sent"] == 25
        assert dest.count("companies") == 11
        assert dest.count("contacts") == 14
        second_conn = MemoryConnector(store=dest)
        second = sync.run("crm", connector=second_conn)
        assert second_conn.calls == []  # not one request, associations included
        # Nothing changed in the store: the incremental rerun reads nothing at all.
        assert (second.mode, second.totals()["unchanged"]) == ("incremental", 0)
        assert sync.plan("crm").cost() == {
            "mode": "incremental",
            "read": {"users": 0, "accounts": 0, "memberships": 0},
        }
        assert sync.plan("crm", full=True).totals()["unchanged"] == 25


@pytest.mark.parametrize("max_batch", [3, 4, 7])
def test_a_crash_after_batch_k_resumes_without_duplicates(
    max_batch: int, memory_sync: Callable[..., Sync]
) -> None:
    dest = MemoryStore()
    connector_cls = MemoryConnector.configured(max_batch=max_batch)
    with memory_sync(removal="clear") as sync:
        crashing = connector_cls(MemoryConfig(crash_after_batches=2), store=dest)
        with pytest.raises(RuntimeError, match="simulated crash"):
            sync.run("crm", connector=crashing)
        acked = [c for c in crashing.calls if c.op == "write" and c.outcome == "ok"]
        [crashed] = [c for c in crashing.calls if c.outcome == "crash"]
        recorded = RecordState(sync.state).count("crm")
        # Exactly the two acknowledged batches are recorded (batches do not cross objects, so
        # with 11 companies they need not be full), not the batch that crashed.
        assert len(acked) == 2
        assert recorded == sum(c.size for c in acked)
        rerun = connector_cls(store=dest)
        report = sync.run("crm", connector=rerun)
    assert report.status == "succeeded"
    sent = [k for c in rerun.calls if c.op == "write" for k in c.keys]
    assert len(sent) == len(set(sent))  # nothing twice within the rerun
    assert len(sent) == 25 - recorded  # only what was not acknowledged
    assert set(crashed.keys) <= set(sent)
    # Every record written once, except the crashed batch's, written again (idempotent upsert).
    writes = [r.writes for held in dest.records.values() for r in held.values()]
    assert len(writes) == 25
    assert sum(writes) == 25 + crashed.size


def test_a_record_the_destination_refuses_is_logged_and_the_others_land(
    memory_sync: Callable[..., Sync],
) -> None:
    dest = MemoryStore()
    with memory_sync(removal="clear") as sync:
        report = sync.run(
            "crm",
            connector=MemoryConnector(MemoryConfig(reject_keys=frozenset({"u05"})), store=dest),
        )
        assert report.status == "partial"
        assert dest.count("contacts") == 13
        [failure] = list(FailureLog(sync.state).iter_failures("crm"))
        assert (failure.object, failure.key, failure.attempts) == ("contacts", "u05", 1)
        # The next run tries that record again, and only it.
        retry = MemoryConnector(store=dest)
        again = sync.run("crm", connector=retry)
        assert [k for c in retry.calls if c.op == "write" for k in c.keys] == ["u05"]
        assert again.status == "succeeded"
        assert list(FailureLog(sync.state).iter_failures("crm")) == []


def test_an_invalid_email_rejects_that_record_only(
    store_url: str, memory_sync: Callable[..., Sync]
) -> None:
    engine = create_db_engine(store_url)
    with engine.begin() as conn:
        conn.execute(update(users).where(users.c.user_id == "u03").values(email="not-an-email"))
    engine.dispose()
    dest = MemoryStore()
    with memory_sync(removal="clear") as sync:
        report = sync.run("crm", connector=MemoryConnector(store=dest))
        contacts = next(o for o in report.objects if o.object == "contacts")
        assert contacts.counts.rejected == 1
        assert contacts.sent == 13
        [(key, reason)] = contacts.errors
        assert key == "u03"
        assert "not-an-email" in reason


def test_stage_policy_through_runs_the_worked_example(
    store_url: str, memory_sync: Callable[..., Sync]
) -> None:
    """u01: CUS in ACME, MQL in XYZ → CUS; XYZ → PRO: PRO; XYZ churns: CUS; ACME corrected down
    to MQL: still CUS; ACME churns too: churned."""
    engine = create_db_engine(store_url)
    m = memberships.c
    dest = MemoryStore()

    def set_stage(account: str, stage: str) -> None:
        with engine.begin() as conn:
            conn.execute(
                update(memberships)
                .where(m.user_id == "u01", m.account_id == account)
                .values(stage=stage)
            )

    def stage_after_run() -> str | None:
        sync.run("crm", connector=MemoryConnector(store=dest))
        return dest.records["contacts"]["u01"].fields["syncer_stage"]

    with memory_sync(removal="clear") as sync:
        assert stage_after_run() == "CUS"
        set_stage("XYZ", "PRO")
        assert stage_after_run() == "PRO"
        set_stage("XYZ", "churned")
        assert stage_after_run() == "CUS"
        set_stage("ACME", "MQL")
        assert stage_after_run() == "CUS"
        set_stage("ACME", "churned")
        assert stage_after_run() == "churned"
    engine.dispose()


def test_associations_follow_memberships_and_leave_foreign_ones(
    store_url: str, memory_sync: Callable[..., Sync]
) -> None:
    dest = MemoryStore()
    engine = create_db_engine(store_url)
    with memory_sync(removal="clear") as sync:
        sync.run("crm", connector=MemoryConnector(store=dest))
        ids = {obj: {k: r.remote_id for k, r in held.items()} for obj, held in dest.records.items()}
        u01, acme, xyz, hooli = (
            ids["contacts"]["u01"],
            ids["companies"]["ACME"],
            ids["companies"]["XYZ"],
            ids["companies"]["HOOLI"],
        )

        def linked(contact: str) -> set[str]:
            return {a[3] for a in dest.associations if a[1] == contact}

        assert linked(u01) == {acme, xyz}
        assert ("contacts", u01, "companies", acme, "primary") in dest.associations
        # A salesperson links u01 to HOOLI by hand: not syncer's to remove.
        dest.associations.add(("contacts", u01, "companies", hooli, ""))
        with engine.begin() as conn:
            conn.execute(
                delete(memberships).where(
                    memberships.c.user_id == "u01", memberships.c.account_id == "XYZ"
                )
            )
        report = sync.run("crm", connector=MemoryConnector(store=dest))
        assert report.links is not None
        assert report.links.removed == 1
        assert linked(u01) == {acme, hooli}
        assert AssociationLedger(sync.state).count("crm") == 21
    engine.dispose()


def test_a_user_gone_from_the_store_is_cleared_in_the_destination(
    store_url: str, memory_sync: Callable[..., Sync]
) -> None:
    dest = MemoryStore()
    engine = create_db_engine(store_url)
    with memory_sync(removal="clear") as sync:
        sync.run("crm", connector=MemoryConnector(store=dest))
        with engine.begin() as conn:
            conn.execute(delete(memberships).where(memberships.c.user_id == "u07"))
            conn.execute(delete(users).where(users.c.user_id == "u07"))
        report = sync.run("crm", connector=MemoryConnector(store=dest))
        contacts = next(o for o in report.objects if o.object == "contacts")
        assert contacts.counts.remove == 1
        held = dest.records["contacts"]["u07"].fields
        assert held["syncer_user_id"] == "u07"
        assert held.get("email") in (None, "")
        # Removed once: the next plan has nothing more to do for it.
        assert sync.plan("crm").totals()["remove"] == 0
    engine.dispose()


@pytest.mark.parametrize(("configured", "expected"), [(None, 1), (3, 3)])
def test_batches_in_flight_follow_the_destination_setting_or_the_connector(
    configured: int | None, expected: int, memory_sync: Callable[..., Sync]
) -> None:
    import threading

    class Tracking(MemoryConnector.configured(max_batch=2)):  # type: ignore[misc]
        in_flight = peak = 0
        guard = threading.Lock()

        def write(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
            cls = type(self)
            with cls.guard:
                cls.in_flight += 1
                cls.peak = max(cls.peak, cls.in_flight)
            try:
                return super().write(object_name, batch)
            finally:
                with cls.guard:
                    cls.in_flight -= 1

    extra = "" if configured is None else f"    concurrency: {configured}\n"
    dest = MemoryStore()
    with memory_sync(removal="clear", extra=extra) as sync:
        report = sync.run("crm", connector=Tracking(MemoryConfig(latency=0.02), store=dest))
    assert report.run_counts()["sent"] == 25
    assert dest.count("companies") == 11
    assert dest.count("contacts") == 14
    assert Tracking.peak == expected


@pytest.mark.parametrize(
    ("policy_deadline", "lease_ttl", "expected"),
    [(900.0, 60.0, 30.0), (None, 60.0, 30.0), (10.0, 60.0, 10.0)],
)
def test_one_call_retries_for_at_most_half_the_lease(
    policy_deadline: float | None,
    lease_ttl: float,
    expected: float,
    memory_sync: Callable[..., Sync],
) -> None:
    # A lease without a heartbeat is renewed between batches only: a call retrying longer than
    # the lease could let a second run take the destination while this one still writes.
    with memory_sync(removal="clear") as sync:
        sync.retry = dataclasses.replace(sync.retry, deadline=policy_deadline)
        with acquire(sync.state, "crm", "run-1", lease_ttl) as lease:
            session = RunSession(
                sync,
                sync.destination("crm"),
                MemoryConnector(),
                lease,
                "run-1",
                owns_connector=True,
            )
            assert session.retry.deadline == expected


@pytest.mark.parametrize("policy_deadline", [900.0, None, 10.0])
def test_a_heartbeat_leaves_a_calls_retries_to_the_policy(
    policy_deadline: float | None, memory_sync: Callable[..., Sync]
) -> None:
    # The heartbeat renews the run's lease while a call retries, so a short lease does not cut
    # the destination's backoff short.
    with memory_sync(removal="clear") as sync:
        sync.retry = dataclasses.replace(sync.retry, deadline=policy_deadline)
        with sync.start_run("crm", lease_ttl=6, connector=MemoryConnector()) as session:
            assert session.lease.heartbeat_running
            assert session.retry.deadline == policy_deadline


def test_a_run_reads_the_store_once(
    memory_sync: Callable[..., Sync], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records and associations come from one pass: every user and account is read once."""
    from syncer.engine import planning

    read: dict[str, int] = {"users": 0, "accounts": 0}

    def counting(name: str, reader: Callable[..., Iterator[object]]) -> Callable[..., object]:
        def wrapped(*args: object, **kwargs: object) -> Iterator[object]:
            for item in reader(*args, **kwargs):
                read[name] += 1
                yield item

        return wrapped

    monkeypatch.setattr(planning, "iter_users", counting("users", planning.iter_users))
    monkeypatch.setattr(planning, "iter_accounts", counting("accounts", planning.iter_accounts))
    with memory_sync() as sync:
        report = sync.run("crm", connector=MemoryConnector())
        with sync.store.connect() as conn:
            n_users = conn.execute(select(func.count()).select_from(users)).scalar_one()
    assert report.links is not None
    assert report.links.created > 0  # planned in the same pass
    assert read == {"users": n_users, "accounts": 11}


def test_marks_are_not_saved_while_the_store_is_read(
    memory_sync: Callable[..., Sync], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Policy marks land with the run's state (at its record points, and when an object is
    done), never from inside the read stream, however small the flush size."""
    from syncer.engine import run
    from syncer.state.marks import MarkStore

    inside_the_stream: list[str] = []
    real_save = MarkStore.save

    def save(self: MarkStore, marks: Iterable[Mark], **kw: int) -> int:
        frames = {f.function for f in inspect.stack()}
        inside_the_stream.extend(sorted(frames & {"views", "formatted", "to_send"}))
        return real_save(self, marks, **kw)

    monkeypatch.setattr(run, "_MARK_FLUSH", 1)
    monkeypatch.setattr(MarkStore, "save", save)
    with memory_sync() as sync:
        report = sync.run("crm", connector=MemoryConnector())
    assert report.marks_saved > 0
    assert inside_the_stream == []
