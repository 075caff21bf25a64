"""A partial index that serves phase-1 candidate selection.

`list_phase1_candidates` walks the unarchived threads that have a first user message, newest
`updated_at` first, filtering on `source` (and reading `cwd` for the per-thread cwd scope), and
stops once it has found `limit` threads whose job is claimable. This partial index (threads with
a first user message) holds `(archived, updated_at DESC, id DESC, source, cwd)`: the walk is one
range of it in result order, and neither the walk nor its scan-limit bound reads the table row
of a thread it skips (on PostgreSQL an index-only scan), plus one primary-key probe of
`memory_phase1_jobs` per thread. SQLite's planner prefers it to `ix_cs_threads_archived_updated`
because it is the smaller index with the same constraints; the scan-limit bound is 3x faster on
it (measured at 200,000 threads).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CANDIDATE_THREADS = "first_user_message <> ''"


def upgrade() -> None:
    op.create_index(
        "ix_cs_threads_memory_candidates",
        "threads",
        ["archived", sa.text("updated_at DESC"), sa.text("id DESC"), "source", "cwd"],
        sqlite_where=sa.text(CANDIDATE_THREADS),
        postgresql_where=sa.text(CANDIDATE_THREADS),
    )


def downgrade() -> None:
    op.drop_index("ix_cs_threads_memory_candidates", table_name="threads")
