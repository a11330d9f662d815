"""Only ``syncer init`` creates a store: plan, run and every other command open it, and refuse a
missing, uninitialised, other-version or read-only store with a message naming what to run,
writing nothing (not even an empty SQLite file)."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine, text, update

from syncer.db import create_db_engine
from syncer.errors import ConfigError
from syncer.store.database import init_store, open_store
from syncer.store.schema import STORE_SCHEMA_VERSION, store_version
from syncer.testing.memory import MemoryConnector, MemoryStore

if TYPE_CHECKING:
    from syncer.engine import Sync


def test_a_missing_sqlite_file_is_refused_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    with pytest.raises(ConfigError, match=r"no such file .*typo\.db.*syncer init --store"):
        open_store(f"sqlite:///{path}")
    assert not path.exists()


def test_an_uninitialised_store_is_refused(db_url: str) -> None:
    create_engine(db_url).dispose()  # the database exists (an empty file on SQLite)
    if db_url.startswith("sqlite"):
        Path(db_url.removeprefix("sqlite:///")).touch()
    with pytest.raises(ConfigError, match=r"is not initialised; run `syncer init --store"):
        open_store(db_url)


def test_an_initialised_store_opens_and_init_is_idempotent(db_url: str) -> None:
    init_store(db_url).dispose()
    init_store(db_url).dispose()
    engine = open_store(db_url, writable=True)
    with engine.connect() as conn:
        versions = conn.execute(text(f"SELECT version FROM {store_version.name}")).scalars()
        assert list(versions) == [STORE_SCHEMA_VERSION]
    engine.dispose()


def test_a_store_at_another_schema_version_is_refused(db_url: str) -> None:
    engine = init_store(db_url)
    with engine.begin() as conn:
        conn.execute(update(store_version).values(version=STORE_SCHEMA_VERSION + 1))
    engine.dispose()
    newer, ours = STORE_SCHEMA_VERSION + 1, STORE_SCHEMA_VERSION
    with pytest.raises(
        ConfigError, match=rf"schema version {newer}; this syncer reads version {ours}"
    ):
        open_store(db_url)
    with pytest.raises(ConfigError, match=f"schema version {newer}"):
        init_store(db_url)  # no migration to run: init does not paper over it either


def test_a_store_without_a_version_record_needs_init_which_adds_it(db_url: str) -> None:
    engine = init_store(db_url)
    with engine.begin() as conn:  # a store made before the version record existed
        conn.execute(text(f"DROP TABLE {store_version.name}"))
    engine.dispose()
    with pytest.raises(ConfigError, match="is not initialised"):
        open_store(db_url)
    init_store(db_url).dispose()
    open_store(db_url).dispose()


def test_a_read_only_sqlite_store_is_refused_when_the_run_writes_to_it(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    init_store(f"sqlite:///{path}").dispose()
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
    open_store(read_only).dispose()  # reading is fine
    with pytest.raises(ConfigError, match=r"is read-only .*keep the state elsewhere"):
        open_store(read_only, writable=True)


def test_a_store_another_process_is_writing_is_writable_and_opens_at_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    init_store(f"sqlite:///{path}").dispose()
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a run in progress holds the write lock
    try:
        started = time.monotonic()
        open_store(f"sqlite:///{path}", writable=True).dispose()
        assert time.monotonic() - started < 5  # not the 30 s busy timeout
    finally:
        writer.execute("ROLLBACK")
        writer.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes files whatever their mode")
def test_a_sqlite_file_without_write_permission_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    init_store(f"sqlite:///{path}").dispose()
    path.chmod(0o444)
    with pytest.raises(ConfigError, match="is read-only"):
        open_store(f"sqlite:///{path}", writable=True)


def test_plan_and_run_on_a_missing_store_write_nothing_anywhere(
    tmp_path: Path, memory_sync: Callable[..., Sync], store_url: str
) -> None:
    if not store_url.startswith("sqlite"):
        pytest.skip("the missing-file case is SQLite's; PostgreSQL is covered above")
    Path(store_url.removeprefix("sqlite:///")).unlink()
    dest = MemoryStore()
    with memory_sync() as sync:
        with pytest.raises(ConfigError, match="no such file"):
            sync.plan("crm")
        with pytest.raises(ConfigError, match="no such file"):
            sync.run("crm", connector=MemoryConnector(store=dest))
    assert not Path(store_url.removeprefix("sqlite:///")).exists()
    assert dest.records == {}


@pytest.mark.postgres
def test_a_run_on_an_uninitialised_postgres_store_writes_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    from syncer.config import load_config
    from syncer.engine import Sync

    config = tmp_path / "syncer.yaml"
    mapping = Path(__file__).resolve().parents[1] / "mappings" / "hubspot.yaml"
    config.write_text(
        f'store: "{postgres_url}"\n'
        f"destinations:\n  crm:\n    connector: memory\n    mapping: {mapping}\n",
        encoding="utf-8",
    )
    dest = MemoryStore()
    with Sync(load_config(config)) as sync, pytest.raises(ConfigError, match="not initialised"):
        sync.run("crm", connector=MemoryConnector(store=dest))
    assert dest.records == {}
    engine = create_db_engine(postgres_url)
    with engine.connect() as conn:
        tables = conn.execute(
            text(
                "SELECT count(*) FROM information_schema.tables"
                " WHERE table_schema = current_schema()"
            )
        ).scalar_one()
    engine.dispose()
    assert tables == 0  # neither the store's tables nor the state's
