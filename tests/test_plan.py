"""The plan's merge-join: source records against the sync state, one change per key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncer.config import load_config
from syncer.engine import Sync
from syncer.errors import RecordRejected
from syncer.mapping import Formatted
from syncer.plan import Change, plan_changes
from syncer.state import Ack, RecordState
from syncer.state.hashing import payload_hash
from syncer.state.records import StoredRecord
from syncer.store.database import init_store
from syncer.store.loaders import load_paths


def _stored(key: str, payload: dict[str, str | None], *, removed: bool = False) -> StoredRecord:
    return StoredRecord(
        key=key,
        remote_id=f"r{key}",
        payload_hash=payload_hash(payload),
        payload_json=json.dumps(payload),
        removed=removed,
        run_id="run0",
        synced_at=None,
    )


def Planned(
    key: str,
    payload: dict[str, str | None],
    *,
    rejected: str | None = None,
    field: str | None = None,
) -> Formatted:
    refusal = RecordRejected(key, rejected, field=field) if rejected is not None else None
    return Formatted(key, payload, {}, refusal)


def _plan(planned: list[Formatted], stored: list[StoredRecord], **kw: object) -> list[Change]:
    return list(plan_changes("contacts", "uid", planned, stored, **kw))  # type: ignore[arg-type]


def test_a_new_key_is_a_create_without_empty_fields() -> None:
    [change] = _plan([Planned("u1", {"uid": "u1", "email": "a@x.io", "phone": None})], [])
    assert change.action == "create"
    assert change.changes == {"uid": "u1", "email": "a@x.io"}
    assert change.sends


def test_an_equal_payload_is_unchanged_and_sends_nothing() -> None:
    payload = {"uid": "u1", "email": "a@x.io"}
    [change] = _plan([Planned("u1", dict(payload))], [_stored("u1", payload)])
    assert change.action == "unchanged"
    assert not change.sends
    assert change.remote_id == "ru1"


def test_an_update_sends_only_the_fields_that_changed() -> None:
    before = {"uid": "u1", "email": "a@x.io", "accounts": ";1:cus;"}
    after = {"uid": "u1", "email": "a@x.io", "accounts": ";1:cus;2:mql;"}
    [change] = _plan([Planned("u1", after)], [_stored("u1", before)])
    assert change.action == "update"
    assert change.changes == {"accounts": ";1:cus;2:mql;"}
    assert change.before == before
    assert change.remote_id == "ru1"


def test_a_value_cleared_in_the_source_is_sent_as_none() -> None:
    before = {"uid": "u1", "phone": "123"}
    [change] = _plan([Planned("u1", {"uid": "u1", "phone": None})], [_stored("u1", before)])
    assert change.changes == {"phone": None}


def test_a_key_gone_from_the_source_is_a_removal_by_mode() -> None:
    stored = [_stored("u1", {"uid": "u1", "email": "a@x.io", "stage": "CUS"})]
    [none] = _plan([], stored, removal="none")
    assert (none.action, none.sends) == ("remove", False)
    [clear] = _plan([], stored, removal="clear")
    assert clear.changes == {"email": None, "stage": None}
    assert clear.payload == {"uid": "u1", "email": None, "stage": None}
    [archive] = _plan([], stored, removal="archive")
    assert archive.sends
    assert archive.remote_id == "ru1"


def test_a_clear_leaves_the_fields_the_destination_requires_with_their_last_value() -> None:
    stored = [_stored("u1", {"uid": "u1", "last": "Hopper", "email": "a@x.io", "stage": None})]
    [clear] = _plan([], stored, removal="clear", required=("last",))
    assert clear.changes == {"email": None}  # the required field is not sent at all
    assert clear.payload == {"uid": "u1", "last": "Hopper", "email": None, "stage": None}
    assert clear.sends
    only = [_stored("u1", {"uid": "u1", "last": "Hopper"})]
    [nothing] = _plan([], only, removal="clear", required=("last",))
    assert (nothing.action, nothing.sends) == ("remove", False)  # nothing left to clear


def test_a_removed_record_is_not_removed_twice_and_comes_back_whole() -> None:
    payload = {"uid": "u1", "email": "a@x.io"}
    assert _plan([], [_stored("u1", payload, removed=True)], removal="clear") == []
    [back] = _plan([Planned("u1", payload)], [_stored("u1", payload, removed=True)])
    assert back.action == "update"
    assert back.changes == payload


def test_a_formatter_rejection_is_planned_as_rejected_with_its_reason() -> None:
    [change] = _plan([Planned("u1", {}, rejected="invalid email 'x'", field="email")], [])
    assert (change.action, change.reason, change.field) == (
        "rejected",
        "invalid email 'x'",
        "email",
    )
    assert not change.sends


def test_a_set_aside_payload_is_skipped_until_it_changes() -> None:
    payload = {"uid": "u1", "email": "bad@x.io"}
    digest = payload_hash(payload)
    [skipped] = _plan([Planned("u1", payload)], [], set_aside={"u1": digest})
    assert skipped.action == "skipped"
    [retried] = _plan(
        [Planned("u1", {"uid": "u1", "email": "ok@x.io"})], [], set_aside={"u1": digest}
    )
    assert retried.action == "create"


def test_out_of_order_source_keys_are_an_error_not_a_wrong_plan() -> None:
    with pytest.raises(ValueError, match="out of order"):
        _plan([Planned("b", {}), Planned("a", {})], [])


keys = st.lists(st.text("abc019:;é", min_size=1, max_size=4), unique=True).map(sorted)


@given(source=keys, state=keys)
def test_every_key_of_source_or_state_gets_exactly_one_change(
    source: list[str], state: list[str]
) -> None:
    planned = [Planned(k, {"uid": k, "v": "new"}) for k in source]
    stored = [_stored(k, {"uid": k, "v": "old" if i % 2 else "new"}) for i, k in enumerate(state)]
    changes = _plan(planned, stored, removal="clear")
    assert [c.key for c in changes] == sorted(set(source) | set(state))
    for change in changes:
        if change.key not in source:
            assert change.action == "remove"
        elif change.key not in state:
            assert change.action == "create"
        else:
            assert change.action in ("update", "unchanged")


# --- the examples/ dataset, planned for HubSpot, on SQLite and PostgreSQL ------------------------

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "hubspot_plan.json"


@pytest.fixture
def examples_sync(db_url: str, tmp_path: Path) -> Iterator[Sync]:
    engine = init_store(db_url)
    load_paths(engine, [ROOT / "examples"])
    engine.dispose()
    config = tmp_path / "syncer.yaml"
    config.write_text(
        f"store: {json.dumps(db_url)}\n"
        "destinations:\n"
        f"  crm: {{connector: memory, mapping: {ROOT / 'mappings' / 'hubspot.yaml'}}}\n",
        encoding="utf-8",
    )
    with Sync(load_config(config)) as sync:
        yield sync


def test_the_examples_plan_as_the_golden_file_then_zero_changes_once_recorded(
    examples_sync: Sync,
) -> None:
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    dest = examples_sync.destination("crm")
    records = RecordState(examples_sync.state)
    for obj in dest.mapping.objects:
        changes = list(examples_sync.changes(dest, obj))
        assert {c.key: dict(c.payload) for c in changes} == golden[obj.name]
        assert {c.action for c in changes} == {"create"}
        # Record the plan as the destination's acknowledgement, then plan again.
        acks = [Ack(c.key, c.payload, f"remote-{c.key}", c.digest) for c in changes]
        records.commit_acknowledged("crm", obj.name, acks, "run-1")
    again = examples_sync.plan("crm")
    totals = again.totals()
    assert totals["unchanged"] == sum(len(v) for v in golden.values())
    assert totals["unchanged"] == sum(totals.values())
    assert all(not o.samples for o in again.objects)
