"""Alembic's entry point for the store's migrations.

``usm.manager.store.database`` runs it with an open connection in ``config.attributes["connection"]`` (so SQLite
gets the same pragmas as everywhere else); the ``alembic`` command line works too, given ``-x url=...``.
"""

from __future__ import annotations

from alembic import context

import usm.manager.store  # noqa: F401 - registers every model in the metadata
from usm.manager.store.base import Base
from usm.manager.store.database import open_engine


def run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters a table by rebuilding it
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("the store's migrations run against a database: give it (usm db upgrade --db ...)")

connection = context.config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    engine = open_engine(context.get_x_argument(as_dictionary=True)["url"])
    with engine.begin() as opened:
        run(opened)
    engine.dispose()
