"""Store revisions: a counter per table, moved on by triggers whenever a transaction that changed the table
commits, so that a reader can keep what it derived from the store until one of its tables changes
(``usm.manager.store.revisions``). Every table present is tracked from here on.

Revision ID: 0004
Revises: 0003
Created: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from usm.manager.store import revisions

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "store_revisions",
        sa.Column("table_name", sa.String(63), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False),
    )
    connection = op.get_bind()
    for table in _tables(connection):
        revisions.track(connection, table)


def downgrade() -> None:
    connection = op.get_bind()
    for table in _tables(connection):
        revisions.untrack(connection, table)
    if connection.dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {revisions.TRIGGER}()")
    op.drop_table("store_revisions")


def _tables(connection: sa.Connection) -> list[str]:
    return sorted(set(sa.inspect(connection).get_table_names()) - {"alembic_version", "store_revisions"})
