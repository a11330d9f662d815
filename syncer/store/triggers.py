"""The change feed's triggers: how every write to the store, syncer's or anyone's plain SQL,
stamps the rows it touches and leaves tombstones for what it deletes.

SQLite: AFTER INSERT/UPDATE triggers take the next value of the one-row counter
(``store_feed.seq``) and write it into the row's ``change_seq``; AFTER DELETE triggers write a
tombstone with it. SQLite has one writer at a time, so counter order is commit order. A row
already stamped with the counter's next value is left alone: ``syncer load`` stamps its own
rows that way (:class:`PreStamp`), saving two row writes per row.

PostgreSQL: BEFORE INSERT/UPDATE triggers set ``NEW.change_seq`` to the writing transaction's
id (``pg_current_xact_id()``, 64 bits, never wraps) and AFTER DELETE triggers write tombstones
with it; the first stamp of a transaction registers it in ``store_commits``, where a deferred
(commit-time) trigger gives it the next value of the SEQUENCE ``store_commit_seq`` under an
advisory lock; a statement-level TRUNCATE trigger records the table (every destination then
needs a full run). Why: see :mod:`syncer.store.feed`.

Installing is idempotent (``syncer init`` re-runs it); :func:`install_feed` also creates the
counter row. Triggers are named ``syncer_feed_*``.

**What a member shows.** An account's record shows of each member their email and names (the
join of ``memberships`` with ``users``), so a user whose row changed touches their accounts only
when one of these changed. The ``syncer_feed_users_shown`` trigger writes a ``member`` row to
the tombstones table for that (the changed columns in ``other_key``, ``*`` when the user was
re-keyed, or inserted while memberships naming it were already there), taking a number of its
own like the other tombstones. It came after the feed: installing it into a store writes a
``feed``/``member`` marker, so a reader whose window starts before the trigger existed knows it
cannot tell (:func:`member_feed_installed`).

**What else changed.** The ``syncer_feed_users_other`` trigger writes a ``member`` row with ``+``
when an UPDATE changes any other data column of a user (its ``lead_stage``, ``attributes`` or
timestamps), so the ``member`` rows name every column change of a user: a user whose rows in a
window name only the email and names changed nothing a resolved record is made from besides
those columns (:meth:`~syncer.store.feed.ChangeSet.own_changes`). It came later still: its
marker is ``feed``/``columns`` (:func:`columns_feed_installed`). Readers of the ``member`` rows
that look for ``*`` and column names pass ``+`` by.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from syncer.db import is_postgres
from syncer.errors import ConfigError
from syncer.store.schema import (
    FEED_COLUMNS,
    FEED_TABLES,
    accounts,
    data_columns,
    identities,
    memberships,
    store_commits,
    store_feed,
    store_tombstones,
    users,
)


@dataclass(frozen=True, slots=True)
class _Tombstone:
    """How a deleted row of one table is written down: SQL expressions over ``OLD``."""

    entity: str
    entity_key: str
    other_key: str
    changed: str  # true when an UPDATE changed the row's key (its old key left the store)


_TOMBSTONES: dict[str, _Tombstone] = {
    users.name: _Tombstone(
        "'user'", "OLD.user_id", "NULL", "OLD.user_id IS DISTINCT FROM NEW.user_id"
    ),
    accounts.name: _Tombstone(
        "'account'",
        "OLD.account_id",
        "OLD.parent_account_id",
        "OLD.account_id IS DISTINCT FROM NEW.account_id",
    ),
    memberships.name: _Tombstone(
        "'membership'",
        "OLD.user_id",
        "OLD.account_id",
        "(OLD.user_id IS DISTINCT FROM NEW.user_id"
        " OR OLD.account_id IS DISTINCT FROM NEW.account_id)",
    ),
    identities.name: _Tombstone(
        "'identity'",
        "OLD.entity_id",
        "OLD.entity || ':' || OLD.system",
        "(OLD.entity IS DISTINCT FROM NEW.entity OR OLD.entity_id IS DISTINCT FROM NEW.entity_id"
        " OR OLD.system IS DISTINCT FROM NEW.system)",
    ),
}
_MOVED = "OLD.parent_account_id IS DISTINCT FROM NEW.parent_account_id"
_T = store_tombstones.name
_INSERT_TOMBSTONE = f"INSERT INTO {_T} (entity, entity_key, other_key, change_seq)"


#: The users columns an account's record shows of its members (see the module docstring).
MEMBER_COLUMNS: tuple[str, ...] = ("email", "first_name", "last_name")
_SHOWN = "syncer_feed_users_shown"
_OTHER = "syncer_feed_users_other"
#: The users data columns besides the key and :data:`MEMBER_COLUMNS`: a change to one is ``+``.
OTHER_COLUMNS: tuple[str, ...] = tuple(
    c.name for c in data_columns(users) if c.name not in ("user_id", *MEMBER_COLUMNS)
)


def install_feed(conn: Connection) -> None:
    """Create the feed's triggers (and, on SQLite, the counter row) where they are missing."""
    # Triggers added after a store's feed leave a marker: a window that holds it cannot tell.
    missing = [
        marker
        for marker, trigger in (("member", _SHOWN), ("columns", _OTHER))
        if not _installed(conn, trigger)
    ]
    if is_postgres(conn):
        schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
        for statement in _postgres_ddl(schema):
            conn.exec_driver_sql(statement)
        q = _quote(schema)
        for marker in missing:
            conn.exec_driver_sql(
                f"INSERT INTO {q}.{_T} (entity, entity_key, other_key, change_seq) "
                f"VALUES ('feed', '{marker}', NULL, {q}.syncer_feed_xid())"
            )
        return
    conn.exec_driver_sql(f"INSERT OR IGNORE INTO {store_feed.name} (id, seq) VALUES (1, 0)")
    for statement in _sqlite_ddl():
        conn.exec_driver_sql(statement)
    for marker in missing:
        conn.exec_driver_sql(_NEXT)
        conn.exec_driver_sql(f"{_INSERT_TOMBSTONE} SELECT 'feed', '{marker}', NULL, {_SEQ}")


def member_feed_installed(conn: Connection) -> bool:
    """Whether the store has the trigger that writes ``member`` rows (a store initialised by
    an older syncer has not, until ``syncer init`` runs again)."""
    return _installed(conn, _SHOWN)


def columns_feed_installed(conn: Connection) -> bool:
    """Whether the store has the trigger that writes ``+`` ``member`` rows (the other columns
    of a user changed)."""
    return _installed(conn, _OTHER)


def _installed(conn: Connection, trigger: str) -> bool:
    if is_postgres(conn):
        query = (
            "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON t.tgrelid = c.oid "
            "JOIN pg_namespace n ON c.relnamespace = n.oid WHERE n.nspname = current_schema() "
            f"AND c.relname = '{users.name}' AND t.tgname = '{trigger}'"
        )
    else:
        query = f"SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name = '{trigger}'"
    return bool(conn.exec_driver_sql(query).scalar())


def drop_feed(conn: Connection) -> None:
    """Remove the feed's triggers (tests and benchmarks measure a store without them)."""
    for table in FEED_TABLES:
        for kind in ("insert", "update", "rekey", "delete", "truncate", "stamp", "shown", "other"):
            name = f"syncer_feed_{table.name}_{kind}"
            for extra in ("", "_insert") if kind == "shown" else ("",):
                _drop_trigger(conn, f"{name}{extra}", table.name)


def _drop_trigger(conn: Connection, name: str, table: str) -> None:
    if is_postgres(conn):
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    else:
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")


# --- SQLite --------------------------------------------------------------------------------------

_NEXT = f"UPDATE {store_feed.name} SET seq = seq + 1 WHERE id = 1;"
_COUNTER = f"SELECT seq FROM {store_feed.name} WHERE id = 1"
_SEQ = f"({_COUNTER})"


def sqlite_counter(conn: Connection) -> int:
    """The SQLite counter's value: the last stamp handed out. ConfigError if the store has no
    counter row (``syncer init`` creates it)."""
    seq = conn.exec_driver_sql(_COUNTER).scalar()
    if seq is None:
        raise ConfigError(
            "the store has no change feed counter (store_feed); run `syncer init --store …`"
        )
    return int(seq)


def _sqlite_ddl() -> list[str]:
    out: list[str] = []
    # A row a loader stamped itself (PreStamp: the counter's next value, taken under the write
    # lock) is left alone; any other value — none, an old stamp, a copied one — is restamped.
    fresh = f"NEW.change_seq IS NOT {_SEQ} + 1"
    for table in FEED_TABLES:
        name, t = table.name, _TOMBSTONES[table.name]
        stamp = f"change_seq = {_SEQ}"
        insert_stamp = stamp + (f", parent_seq = {_SEQ}" if table is accounts else "")
        moved = _MOVED.replace("IS DISTINCT FROM", "IS NOT")
        update_stamp = stamp + (
            f", parent_seq = CASE WHEN {moved} THEN {_SEQ} ELSE parent_seq END"
            if table is accounts
            else ""
        )
        key_changed = t.changed.replace("IS DISTINCT FROM", "IS NOT")
        gone = (
            f"{_INSERT_TOMBSTONE} SELECT {t.entity}, {t.entity_key}, {t.other_key}, {_SEQ} "
            f"WHERE {key_changed};"
        )
        if table is accounts:
            gone += (
                f" {_INSERT_TOMBSTONE} SELECT 'parent', NEW.account_id, OLD.parent_account_id, "
                f"{_SEQ} WHERE {moved};"
            )
            key_changed = f"({key_changed} OR {moved})"
        # The row is found by rowid (every store table has one): the cheapest lookup there is.
        # UPDATE OF the data columns only, so the trigger's own stamping never re-fires it.
        # Tombstones take a number of their own, whatever order the update triggers run in.
        columns = ", ".join(c.name for c in data_columns(table))
        out += [
            f"CREATE TRIGGER IF NOT EXISTS syncer_feed_{name}_insert AFTER INSERT ON {name} "
            f"WHEN {fresh} "
            f"BEGIN {_NEXT} UPDATE {name} SET {insert_stamp} WHERE rowid = NEW.rowid; END",
            f"CREATE TRIGGER IF NOT EXISTS syncer_feed_{name}_update "
            f"AFTER UPDATE OF {columns} ON {name} WHEN {fresh} "
            f"BEGIN {_NEXT} UPDATE {name} SET {update_stamp} WHERE rowid = NEW.rowid; END",
            f"CREATE TRIGGER IF NOT EXISTS syncer_feed_{name}_rekey "
            f"AFTER UPDATE OF {columns} ON {name} WHEN {key_changed} "
            f"BEGIN {_NEXT} {gone} END",
            f"CREATE TRIGGER IF NOT EXISTS syncer_feed_{name}_delete AFTER DELETE ON {name} "
            f"BEGIN {_NEXT} {_INSERT_TOMBSTONE} "
            f"VALUES ({t.entity}, {t.entity_key}, {t.other_key}, {_SEQ}); END",
        ]
    return out + _sqlite_member_ddl()


def _changed_columns(*, postgres: bool) -> str:
    """SQL: the member columns an UPDATE changed, joined by commas."""
    if postgres:
        parts = [
            f"CASE WHEN OLD.{c} IS DISTINCT FROM NEW.{c} THEN '{c}' END" for c in MEMBER_COLUMNS
        ]
        return f"concat_ws(',', {', '.join(parts)})"
    parts = [f"CASE WHEN OLD.{c} IS NOT NEW.{c} THEN '{c},' ELSE '' END" for c in MEMBER_COLUMNS]
    return f"rtrim({' || '.join(parts)}, ',')"


def _sqlite_member_ddl() -> list[str]:
    u, m = users.name, memberships.name
    watched = ", ".join(("user_id", *MEMBER_COLUMNS))
    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in ("user_id", *MEMBER_COLUMNS))
    columns = _changed_columns(postgres=False)
    return [
        f"CREATE TRIGGER IF NOT EXISTS {_SHOWN} AFTER UPDATE OF {watched} ON {u} "
        f"WHEN {changed} BEGIN {_NEXT} {_INSERT_TOMBSTONE} SELECT 'member', NEW.user_id, "
        f"CASE WHEN OLD.user_id IS NOT NEW.user_id THEN '*' ELSE {columns} END, {_SEQ}; END",
        # A user row arriving after memberships that name it: a new member of their accounts.
        f"CREATE TRIGGER IF NOT EXISTS {_SHOWN}_insert AFTER INSERT ON {u} "
        f"WHEN EXISTS (SELECT 1 FROM {m} WHERE user_id = NEW.user_id) "
        f"BEGIN {_NEXT} {_INSERT_TOMBSTONE} VALUES ('member', NEW.user_id, '*', {_SEQ}); END",
        f"CREATE TRIGGER IF NOT EXISTS {_OTHER} AFTER UPDATE OF {', '.join(OTHER_COLUMNS)} "
        f"ON {u} WHEN {_other_changed(postgres=False)} "
        f"BEGIN {_NEXT} {_INSERT_TOMBSTONE} VALUES ('member', NEW.user_id, '+', {_SEQ}); END",
    ]


def _other_changed(*, postgres: bool) -> str:
    """SQL: whether an UPDATE changed one of :data:`OTHER_COLUMNS` (compared as text: JSON has
    no equality on PostgreSQL)."""
    if postgres:
        return " OR ".join(f"OLD.{c}::text IS DISTINCT FROM NEW.{c}::text" for c in OTHER_COLUMNS)
    return " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in OTHER_COLUMNS)


class PreStamp:
    """A loader's own stamping on SQLite: the rows it writes carry the counter's next value,
    so the triggers skip them (two row writes fewer per row); :meth:`finish` moves the counter
    there before the loader commits.

    The value is read under the write lock (taken first), so no other writer can take it;
    a row whose value is not the counter's next one is restamped by the triggers as usual.
    On PostgreSQL (``active`` false) the triggers stamp every row, as they must.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.active = not is_postgres(conn)
        self.highest = 0
        if self.active:
            conn.exec_driver_sql(f"UPDATE {store_feed.name} SET seq = seq WHERE id = 1")

    def next(self) -> int | None:
        """The value to stamp the next batch with (``None``: leave it to the triggers)."""
        if not self.active:
            return None
        value = sqlite_counter(self.conn) + 1
        self.highest = max(self.highest, value)
        return value

    def finish(self) -> None:
        """Move the counter to the highest value handed out (call before committing)."""
        if self.active and self.highest:
            self.conn.exec_driver_sql(
                f"UPDATE {store_feed.name} SET seq = max(seq, {self.highest}) WHERE id = 1"
            )


# --- PostgreSQL ----------------------------------------------------------------------------------


def lock_key(schema: str) -> int:
    """The advisory lock that orders the commits of the store in ``schema`` (one per store, so
    stores in different schemas of one database do not wait for each other)."""
    return zlib.crc32(f"syncer store feed {schema}".encode())


def _postgres_ddl(schema: str) -> list[str]:
    # Everything the functions name is schema-qualified: they run under the search_path of
    # whoever writes (a product job's may differ from syncer's).
    q = _quote(schema)
    tomb = f"INSERT INTO {q}.{_T} (entity, entity_key, other_key, change_seq)"
    commits = f"{q}.{store_commits.name}"
    xid = f"{q}.syncer_feed_xid()"
    out: list[str] = [
        f"CREATE SEQUENCE IF NOT EXISTS {q}.store_commit_seq",
        # The stamp of this transaction's writes: its id. The first call in a transaction
        # registers it in store_commits, whose deferred trigger numbers it at commit. A
        # transaction-local setting remembers the registration (rolled back with a savepoint,
        # like the row). A restored store may hold the id already: the new row replaces it.
        f"CREATE OR REPLACE FUNCTION {xid} RETURNS bigint LANGUAGE plpgsql AS $$ "
        "DECLARE x bigint := pg_current_xact_id()::text::bigint; BEGIN "
        "IF current_setting('syncer.feed_xid', true) IS DISTINCT FROM x::text THEN "
        f"DELETE FROM {commits} WHERE xid = x; INSERT INTO {commits} (xid) VALUES (x); "
        "PERFORM set_config('syncer.feed_xid', x::text, true); END IF; RETURN x; END $$",
        # At commit, one at a time: the lock is held until the commit is visible, so commit
        # numbers are handed out in the order commits become visible.
        f"CREATE OR REPLACE FUNCTION {q}.syncer_feed_commit() RETURNS trigger "
        f"LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_advisory_xact_lock({lock_key(schema)}); "
        f"UPDATE {commits} SET seq = nextval('{q}.store_commit_seq') WHERE xid = NEW.xid; "
        "RETURN NULL; END $$",
        f"DROP TRIGGER IF EXISTS syncer_feed_commit ON {commits}",
        f"CREATE CONSTRAINT TRIGGER syncer_feed_commit AFTER INSERT ON {commits} "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
        f"EXECUTE FUNCTION {q}.syncer_feed_commit()",
        f"CREATE OR REPLACE FUNCTION {q}.syncer_feed_truncated() RETURNS trigger "
        f"LANGUAGE plpgsql AS $$ BEGIN {tomb} VALUES ('table', TG_TABLE_NAME, NULL, {xid}); "
        "RETURN NULL; END $$",
    ]
    for table in FEED_TABLES:
        name, t = table.name, _TOMBSTONES[table.name]
        accounts_part = ""
        # OLD is unassigned on INSERT and SQL's OR does not short-circuit: hence the nesting.
        if table is accounts:
            accounts_part = (
                "IF TG_OP = 'INSERT' THEN NEW.parent_seq := seq; "
                f"ELSIF {_MOVED} THEN NEW.parent_seq := seq; "
                f"{tomb} VALUES ('parent', NEW.account_id, OLD.parent_account_id, seq); "
                "END IF; "
            )
        out += [
            f"CREATE OR REPLACE FUNCTION {q}.syncer_feed_{name}_stamp() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$ DECLARE seq bigint := {xid}; BEGIN "
            "NEW.change_seq := seq; "
            + accounts_part
            + f"IF TG_OP = 'UPDATE' THEN IF {t.changed} THEN {tomb} VALUES "
            f"({t.entity}, {t.entity_key}, {t.other_key}, seq); END IF; END IF; "
            "RETURN NEW; END $$",
            f"CREATE OR REPLACE FUNCTION {q}.syncer_feed_{name}_delete() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$ BEGIN {tomb} VALUES "
            f"({t.entity}, {t.entity_key}, {t.other_key}, {xid}); RETURN NULL; END $$",
            f"CREATE OR REPLACE TRIGGER syncer_feed_{name}_stamp BEFORE INSERT OR UPDATE "
            f"ON {name} FOR EACH ROW EXECUTE FUNCTION {q}.syncer_feed_{name}_stamp()",
            f"CREATE OR REPLACE TRIGGER syncer_feed_{name}_delete AFTER DELETE ON {name} "
            f"FOR EACH ROW EXECUTE FUNCTION {q}.syncer_feed_{name}_delete()",
            f"CREATE OR REPLACE TRIGGER syncer_feed_{name}_truncate AFTER TRUNCATE ON {name} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {q}.syncer_feed_truncated()",
        ]
    return out + _postgres_member_ddl(q, tomb, xid)


def _postgres_member_ddl(q: str, tomb: str, xid: str) -> list[str]:
    u, m = users.name, memberships.name
    watched = ", ".join(("user_id", *MEMBER_COLUMNS))
    changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in ("user_id", *MEMBER_COLUMNS))
    return [
        f"CREATE OR REPLACE FUNCTION {q}.{_SHOWN}() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "DECLARE cols text; BEGIN "
        "IF TG_OP = 'INSERT' THEN "
        f"IF NOT EXISTS (SELECT 1 FROM {q}.{m} WHERE user_id = NEW.user_id) THEN RETURN NULL; "
        "END IF; cols := '*'; "
        "ELSIF OLD.user_id IS DISTINCT FROM NEW.user_id THEN cols := '*'; "
        f"ELSE cols := {_changed_columns(postgres=True)}; END IF; "
        f"{tomb} VALUES ('member', NEW.user_id, cols, {xid}); RETURN NULL; END $$",
        f"CREATE OR REPLACE TRIGGER {_SHOWN} AFTER UPDATE OF {watched} ON {u} FOR EACH ROW "
        f"WHEN ({changed}) EXECUTE FUNCTION {q}.{_SHOWN}()",
        f"CREATE OR REPLACE TRIGGER {_SHOWN}_insert AFTER INSERT ON {u} FOR EACH ROW "
        f"EXECUTE FUNCTION {q}.{_SHOWN}()",
        f"CREATE OR REPLACE FUNCTION {q}.{_OTHER}() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN {tomb} VALUES ('member', NEW.user_id, '+', {xid}); RETURN NULL; END $$",
        f"CREATE OR REPLACE TRIGGER {_OTHER} AFTER UPDATE OF {', '.join(OTHER_COLUMNS)} ON {u} "
        f"FOR EACH ROW WHEN ({_other_changed(postgres=True)}) EXECUTE FUNCTION {q}.{_OTHER}()",
    ]


def stamp_existing(conn: Connection) -> None:
    """Stamp every row of an upgraded store (triggers installed) as one change: a destination
    that has never read the feed reads them all."""
    if is_postgres(conn):
        schema = _quote(conn.exec_driver_sql("SELECT current_schema()").scalar_one())
        for table in FEED_TABLES:  # the stamp triggers fill the columns
            conn.exec_driver_sql(f"UPDATE {table.name} SET change_seq = NULL")
        conn.exec_driver_sql(f"UPDATE accounts SET parent_seq = {schema}.syncer_feed_xid()")
        return
    conn.exec_driver_sql(_NEXT)
    for table in FEED_TABLES:
        columns = [c.name for c in table.c if c.name in FEED_COLUMNS]
        assignments = ", ".join(f"{c} = {_SEQ}" for c in columns)
        conn.exec_driver_sql(f"UPDATE {table.name} SET {assignments}")


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
