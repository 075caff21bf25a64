"""Indexes that serve thread pages, and the backfill lease owner.

The seed's indexes cannot serve `WHERE archived = ? ORDER BY created_at DESC, id DESC`: SQLite
picks `idx_threads_archived` and sorts every row. A composite index per sort column makes a page
one range scan whatever the table size. `backfill_state.lease_owner` names the process that holds
the backfill (its heartbeat is `updated_at`), so a killed backfill can be taken over. On
PostgreSQL, `(thread_id, id)` on `logs` serves a thread's log page in id order.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_cs_threads_archived_created",
        "threads",
        ["archived", sa.text("created_at DESC"), sa.text("id DESC")],
    )
    op.create_index(
        "ix_cs_threads_archived_updated",
        "threads",
        ["archived", sa.text("updated_at DESC"), sa.text("id DESC")],
    )
    if op.get_bind().dialect.name == "postgresql":
        # SQLite's idx_logs_thread_id already ends in the rowid, which is logs.id.
        op.create_index("ix_cs_logs_thread_id_id", "logs", ["thread_id", "id"])
    op.add_column("backfill_state", sa.Column("lease_owner", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("backfill_state") as batch:
        batch.drop_column("lease_owner")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_cs_logs_thread_id_id", table_name="logs")
    op.drop_index("ix_cs_threads_archived_updated", table_name="threads")
    op.drop_index("ix_cs_threads_archived_created", table_name="threads")
