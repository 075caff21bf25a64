"""The per-file record of the rollout index, `rollout_files` (ours, not Codex's).

One row per rollout file the backfill or the sync read: its size and mtime (nanoseconds) as
stat'ed just before the read, the byte offset its complete lines were applied up to, and the
thread it holds (NULL when it could not be read or parsed). A sync reads only the files whose
size or mtime differ from their row, and `--watch` reads an appended file from its offset.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Int64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rollout_files",
        sa.Column("path", sa.Text(), primary_key=True),
        sa.Column("size", Int64, nullable=False),
        sa.Column("mtime_ns", Int64, nullable=False),
        sa.Column("indexed_size", Int64, nullable=False),
        sa.Column("thread_id", sa.Text()),
        sa.Column("indexed_at", Int64, nullable=False),
        sa.PrimaryKeyConstraint("path", name="pk_rollout_files"),
    )


def downgrade() -> None:
    op.drop_table("rollout_files")
