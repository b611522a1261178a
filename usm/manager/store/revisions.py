"""Revisions of the store's tables: a counter per table that moves on whenever a transaction that changed the
table's rows commits, whoever wrote (the hub, a manager, another process, psql), kept by the database itself.

A reader that caches what it derived from some tables (the hub's listings, its token check) reads their counters
with one small query; the same counters mean none of those tables changed since. The counters are kept by
triggers, not by the code that writes, so no write path can forget them:

- SQLite: a trigger per table and operation adds one to the table's counter in the writing transaction (SQLite
  has one writer at a time, so the counter's row is never contended).
- PostgreSQL: a deferred constraint trigger moves the counters on at commit, once per table and transaction
  (``usm.revised``, a transaction-local setting, remembers which were done), after locking every counter row in
  one order. A transaction therefore holds a counter only while it commits (a manager's long step under its
  region's lease holds none), and two committing writers never wait on each other crosswise. ``TRUNCATE`` moves
  the counter at once.

Counters start at a random number, so that two stores (another file, a new database) do not show the same
revisions for different rows. Reading the counters first and then the data in one transaction gives data at
least as new as the counters, and a cached result kept under those counters is served only while they are
unchanged. Every table of the store is tracked; a migration that creates a table, or rebuilds one (SQLite's batch
mode drops its triggers), calls :func:`track` for it. :func:`untracked` lists the tables that lost their
tracking, so that a reader can refuse to cache rather than risk serving stale data.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterable
from typing import Any

from sqlalchemy import BigInteger, Column, Connection, Engine, String, Table, inspect, select, text
from sqlalchemy.orm import Mapper

from usm.manager.store.base import Base

REVISIONS = Table(
    "store_revisions", Base.metadata,
    Column("table_name", String(63), primary_key=True),
    Column("value", BigInteger, nullable=False),
)
"""One row per tracked table: its name and its counter (a random start plus one per committed transaction that
changed it on PostgreSQL, per changed row on SQLite)."""

TRIGGER = "usm_revision"
"""The PostgreSQL trigger's name on every tracked table; on SQLite, the prefix of the three per table."""

_SQLITE_OPERATIONS = ("insert", "update", "delete")

_POSTGRES_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    done text := coalesce(current_setting('usm.revised', true), '');
BEGIN
    IF position(',' || TG_TABLE_NAME || ',' IN ',' || done || ',') = 0 THEN
        PERFORM 1 FROM store_revisions ORDER BY table_name FOR UPDATE;
        UPDATE store_revisions SET value = value + 1 WHERE table_name = TG_TABLE_NAME;
        PERFORM set_config('usm.revised', done || ',' || TG_TABLE_NAME, true);
    END IF;
    RETURN NULL;
END
$$
"""


def track(connection: Connection, table: str) -> None:
    """Keep ``table``'s revision from now on: its counter row (if missing) and its triggers (made again)."""
    _check_name(connection, table)
    if connection.scalar(select(REVISIONS.c.table_name).where(REVISIONS.c.table_name == table)) is None:
        connection.execute(REVISIONS.insert().values(table_name=table, value=secrets.randbits(40)))
    _drop_triggers(connection, table)
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(_POSTGRES_FUNCTION)
        connection.exec_driver_sql(
            f'CREATE CONSTRAINT TRIGGER {TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON "{table}" '
            f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {TRIGGER}()")
        connection.exec_driver_sql(f'CREATE TRIGGER {TRIGGER}_truncate AFTER TRUNCATE ON "{table}" '
                                   f"FOR EACH STATEMENT EXECUTE FUNCTION {TRIGGER}()")
    else:
        for operation in _SQLITE_OPERATIONS:
            connection.exec_driver_sql(
                f'CREATE TRIGGER {TRIGGER}_{table}_{operation} AFTER {operation.upper()} ON "{table}" BEGIN '
                f"UPDATE store_revisions SET value = value + 1 WHERE table_name = '{table}'; END")


def untrack(connection: Connection, table: str) -> None:
    """Stop keeping ``table``'s revision (before dropping the table, or going back to a store without them)."""
    _check_name(connection, table)
    _drop_triggers(connection, table)
    connection.execute(REVISIONS.delete().where(REVISIONS.c.table_name == table))


def read(connection: Connection) -> dict[str, int]:
    """Every tracked table's revision, as of the transaction's snapshot (read it before the data it guards)."""
    return {name: value for name, value in connection.execute(select(REVISIONS.c.table_name, REVISIONS.c.value))}


class Latest:
    """The revisions as last committed, for readers that check their caches at every request, cheaply: ~50 µs a
    read through a pooled connection's DBAPI cursor (a SQLAlchemy connection takes ~300 µs). On SQLite each thread
    keeps a connection of its own and asks ``PRAGMA data_version`` first (~10 µs), reading the counters again only
    when another connection has committed since its last read (SQLite's documented meaning of that value; the
    thread's connection never writes)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._threads = threading.local()

    def __call__(self) -> dict[str, int]:
        if self.engine.dialect.name != "sqlite" or self.engine.url.database in (None, "", ":memory:"):
            connection = self.engine.raw_connection()
            try:
                return _counters(connection)
            finally:
                connection.close()  # back to the pool, rolled back
        mine = self._threads
        if getattr(mine, "connection", None) is None:
            pooled = self.engine.raw_connection()  # set up as the engine's are (WAL, autocommit)
            mine.connection = pooled.driver_connection
            pooled.detach()  # the thread's own from now on, out of the pool
            mine.version, mine.counters = None, {}
        version = mine.connection.execute("PRAGMA data_version").fetchone()[0]
        if version != mine.version:
            mine.counters, mine.version = _counters(mine.connection), version
        return mine.counters


def _counters(connection: Any) -> dict[str, int]:
    cursor = connection.cursor()
    try:
        cursor.execute(f"SELECT table_name, value FROM {REVISIONS.name}")
        return dict(cursor.fetchall())
    finally:
        cursor.close()


def untracked(connection: Connection, tables: Iterable[str] | None = None) -> list[str]:
    """The tables among ``tables`` (default: every table of the store's models) whose changes would not move a
    revision: no counter row, or a trigger missing."""
    wanted = sorted(set(tables) if tables is not None else set(Base.metadata.tables) - {REVISIONS.name})
    counted = set(read(connection))
    if connection.dialect.name == "postgresql":
        rows = connection.execute(text(
            "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgname = :name AND c.relnamespace = to_regnamespace(current_schema())::oid"), {"name": TRIGGER})
        triggered = {name for (name,) in rows}
    else:
        names = set(connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'").scalars())
        triggered = {table for table in wanted
                     if all(f"{TRIGGER}_{table}_{operation}" in names for operation in _SQLITE_OPERATIONS)}
    return [table for table in wanted if table not in counted or table not in triggered]


def tables_near(model: type[Base], hops: int = 2) -> frozenset[str]:
    """The tables of ``model`` and of the models its relationships reach in at most ``hops`` steps (with their
    subclasses' and the association tables on the way): what a listing that shows a row's fields, the keys of the
    rows it refers to and its related rows' keys can read (the hub's tests check that each listing reads no
    other)."""
    found: set[str] = set()
    frontier: list[Mapper] = [inspect(model)]
    seen: set[Mapper] = set()
    for _ in range(hops + 1):
        following: list[Mapper] = []
        for mapper in frontier:
            if mapper in seen:
                continue
            seen.add(mapper)
            for kind in mapper.self_and_descendants:  # a polymorphic load joins the subclasses' tables
                found.update(table.name for table in kind.tables)
            for relationship in mapper.relationships:
                if relationship.secondary is not None:
                    found.add(relationship.secondary.name)
                following.append(relationship.mapper)
        frontier = following
    return frozenset(found)


def _drop_triggers(connection: Connection, table: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f'DROP TRIGGER IF EXISTS {TRIGGER} ON "{table}"')
        connection.exec_driver_sql(f'DROP TRIGGER IF EXISTS {TRIGGER}_truncate ON "{table}"')
    else:
        for operation in _SQLITE_OPERATIONS:
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {TRIGGER}_{table}_{operation}")


def _check_name(connection: Connection, table: str) -> None:
    """Refuse what is not an existing table's plain name (names are put into DDL)."""
    if not table.replace("_", "").isalnum() or not table.isascii():
        raise ValueError(f"{table!r} is not a plain table name (letters, digits and _)")
    if not inspect(connection).has_table(table):
        raise ValueError(f"there is no table {table!r} in the store")


__all__ = ["REVISIONS", "TRIGGER", "Latest", "read", "tables_near", "track", "untrack", "untracked"]
