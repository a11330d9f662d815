"""Incremental runs against the HubSpot emulator, through the real hubspot-api-client: after
changes written with plain SQL and through the store's delete API, an incremental run leaves
HubSpot as a full run into another HubSpot leaves it (records, removals and associations), reads
only what the changes affect, and a ``--full`` run afterwards writes nothing.

Also on PostgreSQL (the store and the incremental destination's state), when
``SYNCER_TEST_POSTGRES_URL`` is set.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

from crm_configs import hubspot_config
from sqlalchemy import text
from sqlalchemy.engine import Engine

from syncer.config import load_config
from syncer.db import create_db_engine
from syncer.engine import RunReport, Sync
from syncer.retry import RetryPolicy
from syncer.state.feed import FeedPositions
from syncer.store.feed import current_position
from syncer.store.removal import DeleteKeys, delete_records
from syncer.testing.hubspot_emulator import HubSpotEmulator

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "incr-token"


def _held(emulator: HubSpotEmulator) -> dict[str, object]:
    """What HubSpot holds, by the product's keys (record ids differ between two emulators)."""
    companies = {i: p.get("syncer_account_id") for i, p in emulator.companies().items()}
    out: dict[str, object] = {
        f"companies/{p['syncer_account_id']}": p
        for p in emulator.companies().values()
        if p.get("syncer_account_id")
    }
    for cid, props in emulator.contacts().items():
        key = props.get("syncer_user_id")
        if not key:
            continue
        links = {companies[c]: sorted(t) for c, t in emulator.associations(cid).items()}
        out[f"contacts/{key}"] = (props, links)
    for record in out.values():  # timestamps the emulator stamps are not the data
        props = record[0] if isinstance(record, tuple) else record
        assert isinstance(props, dict)
        for name in ("createdate", "lastmodifieddate", "hs_object_id", "hs_lastmodifieddate"):
            props.pop(name, None)
    return out


def _until_caught_up(sync: Sync, store: Engine) -> list[RunReport]:
    """Incremental runs until the destination's feed position passed the last change.

    One run does it when the feed's position passes every committed change at once; a feed
    whose position waits for transactions still running elsewhere reads the rest in a later
    run — so run again until then."""
    last = current_position(store)  # the changes made so far are at or below it
    runs = [sync.run("hubspot")]
    deadline = time.monotonic() + 60
    while FeedPositions(sync.state).position_of("hubspot") < last:
        assert time.monotonic() < deadline, "the feed stayed behind for a minute"
        time.sleep(0.2)
        runs.append(sync.run("hubspot"))
    return runs


def test_incremental_runs_leave_hubspot_as_a_full_run_does(tmp_path: Path, store_url: str) -> None:
    store = create_db_engine(store_url)
    inc_state = store_url  # in the store's database (SQLite, then PostgreSQL): tombstones pruned
    ref_state = f"sqlite:///{tmp_path / 'ref.db'}"
    with ExitStack() as stack:
        inc_hs = stack.enter_context(HubSpotEmulator(access_token=TOKEN, seed=7))
        ref_hs = stack.enter_context(HubSpotEmulator(access_token=TOKEN, seed=7))
        env = {"HS_TOKEN": TOKEN}
        retry = RetryPolicy.no_wait(12)
        inc = stack.enter_context(
            Sync(
                load_config(hubspot_config(tmp_path / "inc.yaml", store_url, inc_state, inc_hs)),
                environ=env,
                retry=retry,
            )
        )
        ref = stack.enter_context(
            Sync(
                load_config(hubspot_config(tmp_path / "ref.yaml", store_url, ref_state, ref_hs)),
                environ=env,
                retry=retry,
            )
        )
        first = inc.run("hubspot")
        assert (first.mode, first.status) == ("full", "succeeded")
        ref.run("hubspot", full=True)
        # The product renames a user, churns a membership, re-parents an account, and an
        # operator deletes a user through the store's API.
        with store.begin() as conn:
            conn.execute(text("UPDATE users SET first_name = 'Adaline' WHERE user_id = 'u01'"))
            conn.execute(
                text(
                    "UPDATE memberships SET stage = 'churned' "
                    "WHERE user_id = 'u02' AND account_id = 'ACME'"
                )
            )
            conn.execute(
                text("UPDATE accounts SET parent_account_id = NULL WHERE account_id = 'ACME-EU'")
            )
        delete_records(store, DeleteKeys(["u03"], [], []))
        runs = _until_caught_up(inc, store)
        assert all((r.mode, r.status) == ("incremental", "succeeded") for r in runs)
        assert sum(r.totals()["remove"] for r in runs) == 1  # u03's contact cleared
        assert runs[0].read["users"] < first.read["users"]
        full = ref.run("hubspot", full=True)
        assert full.status == "succeeded"
        assert _held(inc_hs) == _held(ref_hs)
        # A user's email alone: its contact is made from its row and its last payload, its
        # companies from their kept member tokens; nothing of the forest is read.
        with store.begin() as conn:
            conn.execute(
                text("UPDATE users SET email = 'ada.new@example.com' WHERE user_id = 'u01'")
            )
        runs = _until_caught_up(inc, store)
        assert sum(r.read["accounts"] for r in runs) == 0
        assert sum(r.read["users"] for r in runs) == 1
        assert sum(r.totals()["update"] for r in runs) >= 2  # the contact and its companies
        ref.run("hubspot", full=True)
        assert _held(inc_hs) == _held(ref_hs)
        # A full recompute finds nothing to send after the incremental runs.
        inc_hs.reset_log()
        again = inc.run("hubspot", full=True)
        assert again.mode == "full"
        assert inc_hs.write_requests() == []
        assert again.run_counts()["sent"] == 0
    store.dispose()
