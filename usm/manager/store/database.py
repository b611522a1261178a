"""Opening the store and migrating its schema.

A store is a SQLite file by default (a path: one manager, nothing to run) or a PostgreSQL database (a URL: the
master and its regional workers share it). The code above this module cannot tell which: the same models,
queries and migrations serve both. Credentials never sit in the URL kept in files: for PostgreSQL, libpq reads
the password from ``PGPASSWORD`` or the ``~/.pgpass`` file (``PGPASSFILE``), as every PostgreSQL tool does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from usm.manager.store.errors import Invalid, NotMigrated

MIGRATIONS = "usm.manager.store:migrations"
"""Where Alembic finds the migration scripts (a package resource: works from an installed wheel too)."""


def database_url(target: str | Path) -> URL:
    """The URL of a store given as a file path (SQLite) or a URL (``sqlite:///...``, ``postgresql://...``).

    A PostgreSQL URL without a driver uses psycopg 3 (``postgresql+psycopg``).
    """
    text = str(target)
    if "://" not in text:
        return URL.create("sqlite", database=str(Path(text).expanduser().resolve()))
    try:
        url = make_url(text)
    except ArgumentError:
        raise Invalid(f"{text!r} is neither a file path nor a database URL such as "
                      "postgresql://usm@127.0.0.1:5432/usm") from None
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise Invalid(f"the store runs on SQLite or PostgreSQL, not {url.get_backend_name()!r}")
    return url


def open_engine(target: str | Path | URL, **options: Any) -> Engine:
    """An engine for the store at ``target`` (see ``database_url``).

    SQLite connections enforce foreign keys (SQLite's default is not to), use write-ahead logging (readers go
    on while a writer commits), and leave transactions to SQLAlchemy so that savepoints work.
    """
    url = target if isinstance(target, URL) else database_url(target)
    engine = create_engine(url, **options)
    if url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_connection)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def sessions(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose rows stay readable after commit (the hub serialises them after its transaction ends)."""
    return sessionmaker(engine, expire_on_commit=False)


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate the store to ``revision``; return the revisions before and after."""
    return _migrate(engine, lambda config: command.upgrade(config, revision))


def downgrade(engine: Engine, revision: str) -> tuple[str | None, str | None]:
    """Migrate the store back to ``revision`` (``"base"``: empty)."""
    return _migrate(engine, lambda config: command.downgrade(config, revision))


def current_revision(engine: Engine) -> str | None:
    """The revision the store's schema is at; ``None`` for an empty database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The revision this code's models correspond to."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def require_current(engine: Engine) -> None:
    """Refuse a store whose schema is not the one this code expects (before a query fails obscurely)."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        where = engine.url.render_as_string(hide_password=True)
        raise NotMigrated(f"the store at {where} is at revision {current or 'none (empty)'}, this usm needs "
                          f"{head}; run `usm db upgrade`")


def _migrate(engine: Engine, run: Any) -> tuple[str | None, str | None]:
    before = current_revision(engine)
    with engine.begin() as connection:
        config = _config()
        config.attributes["connection"] = connection
        run(config)
    return before, current_revision(engine)


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    return config


def _sqlite_connection(connection: Any, record: Any) -> None:
    connection.isolation_level = None  # no implicit BEGIN from the driver: SQLAlchemy's own, below
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "memory":  # an in-memory database has no log
        cursor.execute("PRAGMA journal_mode = WAL")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN")


__all__ = ["current_revision", "database_url", "downgrade", "head_revision", "open_engine", "require_current",
           "sessions", "upgrade"]
