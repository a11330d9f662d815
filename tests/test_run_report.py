"""The run report tells the truth: who stopped a record (syncer or the destination), every stage
move among the records sent, the bulk path's real request count, and a lease that a paused step
does not lose silently.

SQLite and PostgreSQL (``db_url``): the store and the sync state live in the same database.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import pytest
from sqlalchemy import update

from syncer.connectors.base import BulkResult, Capabilities, WriteRecord
from syncer.db import create_db_engine
from syncer.engine import Sync, stage_field
from syncer.errors import LeaseHeldError, LeaseLostError, RetriableError
from syncer.state import RunLog, acquire
from syncer.store.schema import memberships, users
from syncer.testing.memory import MemoryConfig, MemoryConnector, MemoryStore

ROOT = Path(__file__).resolve().parents[1]


def _stages(dest: MemoryStore, object_name: str) -> dict[str, str | None]:
    return {k: r.fields.get("syncer_stage") for k, r in dest.records[object_name].items()}


# --- rejected by syncer vs refused by the destination -------------------------------------------


def test_syncer_rejections_and_destination_refusals_are_counted_apart(
    store_url: str, memory_sync: Callable[..., Sync]
) -> None:
    engine = create_db_engine(store_url)
    with engine.begin() as conn:  # u03: an email syncer's formatter refuses
        conn.execute(update(users).where(users.c.user_id == "u03").values(email="not-an-email"))
    engine.dispose()
    refusing = MemoryConnector(MemoryConfig(reject_keys=frozenset({"u05"})))
    with memory_sync() as sync:
        report = sync.run("crm", connector=refusing)
        stored = RunLog(sync.state).get_run(report.run_id)
    contacts = next(o for o in report.objects if o.object == "contacts")
    assert report.status == "partial"
    assert (contacts.sent, contacts.counts.rejected, contacts.refused) == (12, 1, 1)
    assert {k for k, _ in contacts.errors} == {"u03", "u05"}
    counts = report.run_counts()
    assert (counts["sent"], counts["rejected"], counts["refused"]) == (23, 1, 1)
    assert "failed" not in counts  # the old figure that mixed the two
    assert stored is not None
    assert stored.counts == counts


def test_a_run_with_only_syncer_rejections_refuses_nothing(
    store_url: str, memory_sync: Callable[..., Sync]
) -> None:
    engine = create_db_engine(store_url)
    with engine.begin() as conn:
        conn.execute(update(users).where(users.c.user_id == "u03").values(email="not-an-email"))
    engine.dispose()
    with memory_sync() as sync:
        report = sync.run("crm", connector=MemoryConnector())
    assert report.status == "partial"
    assert report.run_counts()["rejected"] == 1
    assert report.run_counts()["refused"] == 0


# --- stage moves --------------------------------------------------------------------------------


def test_the_stage_field_is_the_one_the_mapping_fills_with_stage(
    tmp_path: Path, memory_sync: Callable[..., Sync]
) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "objects:\n"
        "  contacts:\n"
        "    source: users\n"
        "    key: syncer_user_id\n"
        "    fields:\n"
        "      email: {type: email, value: user.email}\n"
        "      lifecycle: {type: string, value: stage}\n"
        "      syncer_stage: user.lead_stage\n",
        encoding="utf-8",
    )
    with memory_sync(mapping=mapping) as sync:
        [obj] = sync.destination("crm").mapping.objects
    assert stage_field(obj) == "lifecycle"  # the template wins over the name
    with memory_sync() as sync:
        hubspot = {o.name: stage_field(o) for o in sync.destination("crm").mapping.objects}
    assert hubspot == {"companies": "syncer_stage", "contacts": "syncer_stage"}


def test_stage_moves_are_tallied_for_every_record_sent_not_only_the_samples(
    store_url: str, memory_sync: Callable[..., Sync]
) -> None:
    dest = MemoryStore()
    with memory_sync() as sync:
        first = sync.run("crm", connector=MemoryConnector(store=dest))
        created = _stages(dest, "contacts")
        contacts = next(o for o in first.objects if o.object == "contacts")
        # All 14 contacts were created: each one a move from nothing, far more than 5 samples.
        assert contacts.stage_moves == Counter((None, s) for s in created.values())
        assert sum(contacts.stage_moves.values()) == 14 > len(contacts.samples)

        engine = create_db_engine(store_url)
        with engine.begin() as conn:
            conn.execute(update(memberships).values(stage="PRO"))
        engine.dispose()
        second = sync.run("crm", connector=MemoryConnector(store=dest))
    after = _stages(dest, "contacts")
    expected = Counter((created[k], after[k]) for k in after if created[k] != after[k])
    contacts = next(o for o in second.objects if o.object == "contacts")
    assert expected  # the change did move stages
    assert contacts.stage_moves == expected
    companies = next(o for o in second.objects if o.object == "companies")
    assert sum(companies.stage_moves.values()) <= companies.sent


def test_a_refused_record_is_not_tallied_as_a_stage_move(memory_sync: Callable[..., Sync]) -> None:
    refusing = MemoryConnector(MemoryConfig(reject_keys=frozenset({"u05"})))
    with memory_sync() as sync:
        report = sync.run("crm", connector=refusing)
    contacts = next(o for o in report.objects if o.object == "contacts")
    assert sum(contacts.stage_moves.values()) == contacts.sent == 13


# --- the bulk path's requests -------------------------------------------------------------------


class _BulkMemory(MemoryConnector):
    """The memory destination with a bulk path that takes four HTTP calls per job (create,
    upload, close, results) and fails its first job once if asked to."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        max_batch=100,
        associations=True,
        removal_modes=frozenset({"none", "clear", "archive"}),
        bulk_threshold=5,
    )
    fail_first_job = False

    def write_bulk(self, object_name: str, records: Sequence[WriteRecord]) -> BulkResult:
        if self.fail_first_job:
            self.fail_first_job = False
            raise RetriableError("bulk job: HTTP 503", status=503)
        return BulkResult(self.write(object_name, records), requests=4)


def test_the_bulk_path_counts_the_requests_each_job_took(memory_sync: Callable[..., Sync]) -> None:
    with memory_sync() as sync:
        report = sync.run("crm", connector=_BulkMemory())
    # 11 companies and 14 contacts, both over the threshold of 5: one job each.
    assert [(o.object, o.sent, o.requests, o.retries) for o in report.objects] == [
        ("companies", 11, 4, 0),
        ("contacts", 14, 4, 0),
    ]


def test_a_failed_bulk_attempt_counts_a_request_and_a_retry(
    memory_sync: Callable[..., Sync],
) -> None:
    connector = _BulkMemory()
    connector.fail_first_job = True
    with memory_sync() as sync:
        report = sync.run("crm", connector=connector)
    companies = report.objects[0]
    assert (companies.sent, companies.requests, companies.retries) == (11, 5, 1)
    assert report.run_counts()["retries"] == 1


# --- the lease across steps ---------------------------------------------------------------------


def test_a_step_renews_the_lease_before_it_writes(memory_sync: Callable[..., Sync]) -> None:
    with memory_sync() as sync:
        with sync.start_run("crm", lease_ttl=60, connector=MemoryConnector()) as session:
            session.ensure()
            before = session.lease.expires_at
            time.sleep(0.05)
            session.apply_object("companies")
            assert session.lease.expires_at > before
        assert session.report.status == "succeeded"


def test_a_step_whose_lease_another_run_took_writes_nothing(
    memory_sync: Callable[..., Sync],
) -> None:
    connector = MemoryConnector()
    with memory_sync() as sync:
        session = sync.start_run("crm", lease_ttl=0.5, connector=connector)
        session.ensure()
        # The process stalled (its heartbeat did not run) for longer than the lease lasts.
        session.lease.stop_heartbeat()
        time.sleep(0.7)
        other = acquire(sync.state, "crm", "another-run", 60)
        with pytest.raises(LeaseLostError):
            session.apply_object("companies")
        session.finish(LeaseLostError("crm", session.run_id, "another-run", other.expires_at))
        assert [c for c in connector.calls if c.op == "write"] == []
        # The other run still holds the lease: finishing this one did not release it.
        with pytest.raises(LeaseHeldError):
            acquire(sync.state, "crm", "a-third-run", 60)
        other.release()


def test_a_run_takes_its_lease_for_the_ttl_it_is_given(memory_sync: Callable[..., Sync]) -> None:
    with memory_sync() as sync:
        with sync.start_run("crm", lease_ttl=900, connector=MemoryConnector()) as session:
            lease = session.lease
            lasts = (lease.expires_at - lease.acquired_at).total_seconds()
        assert lease.ttl_seconds == 900
        assert 899 <= lasts <= 901


def test_the_log_line_of_an_object_says_what_was_planned_and_sent(
    memory_sync: Callable[..., Sync], caplog: pytest.LogCaptureFixture
) -> None:
    with memory_sync() as sync, caplog.at_level("INFO", logger="syncer.engine"):
        sync.run("crm")
        caplog.clear()
        sync.run("crm")  # nothing changed: an incremental run plans no record at all
    lines = [r.getMessage() for r in caplog.records if ": " in r.getMessage()]
    companies = next(line for line in lines if line.startswith("crm companies: "))
    assert companies.startswith("crm companies: no records planned; sent 0, ")
    assert companies.endswith("0 write requests, 0 retries")
