"""The Rust crate's schema at sqlx migration 0010 (codex-rs/state at the seed), table for table.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Int64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _thread_fk() -> sa.ForeignKey:
    return sa.ForeignKey("threads.id", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "threads",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("rollout_path", sa.Text(), nullable=False),
        sa.Column("created_at", Int64, nullable=False),
        sa.Column("updated_at", Int64, nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("model_provider", sa.Text(), nullable=False),
        sa.Column("cwd", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("sandbox_policy", sa.Text(), nullable=False),
        sa.Column("approval_mode", sa.Text(), nullable=False),
        sa.Column("tokens_used", Int64, nullable=False, server_default=sa.text("0")),
        sa.Column("has_user_event", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("archived", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("archived_at", Int64),
        sa.Column("git_sha", sa.Text()),
        sa.Column("git_branch", sa.Text()),
        sa.Column("git_origin_url", sa.Text()),
        sa.Column("cli_version", sa.Text(), nullable=False, server_default=sa.text("''")),
        sa.Column("first_user_message", sa.Text(), nullable=False, server_default=sa.text("''")),
        sa.PrimaryKeyConstraint("id", name="pk_threads"),
    )
    op.create_index(
        "idx_threads_created_at", "threads", [sa.text("created_at DESC"), sa.text("id DESC")]
    )
    op.create_index(
        "idx_threads_updated_at", "threads", [sa.text("updated_at DESC"), sa.text("id DESC")]
    )
    op.create_index("idx_threads_archived", "threads", ["archived"])
    op.create_index("idx_threads_source", "threads", ["source"])
    op.create_index("idx_threads_provider", "threads", ["model_provider"])

    op.create_table(
        "logs",
        sa.Column("id", Int64, primary_key=True, autoincrement=True),
        sa.Column("ts", Int64, nullable=False),
        sa.Column("ts_nanos", Int64, nullable=False),
        sa.Column("level", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("message", sa.Text()),
        sa.Column("module_path", sa.Text()),
        sa.Column("file", sa.Text()),
        sa.Column("line", Int64),
        sa.Column("thread_id", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_logs"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "idx_logs_ts", "logs", [sa.text("ts DESC"), sa.text("ts_nanos DESC"), sa.text("id DESC")]
    )
    op.create_index("idx_logs_thread_id", "logs", ["thread_id"])

    op.create_table(
        "thread_dynamic_tools",
        sa.Column("thread_id", sa.Text(), _thread_fk(), nullable=False),
        sa.Column("position", Int64, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("input_schema", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("thread_id", "position", name="pk_thread_dynamic_tools"),
    )
    op.create_index("idx_thread_dynamic_tools_thread", "thread_dynamic_tools", ["thread_id"])

    op.create_table(
        "thread_memory",
        sa.Column("thread_id", sa.Text(), _thread_fk(), nullable=False),
        sa.Column("scope_kind", sa.Text(), nullable=False),
        sa.Column("scope_key", sa.Text(), nullable=False),
        sa.Column("raw_memory", sa.Text(), nullable=False),
        sa.Column("memory_summary", sa.Text(), nullable=False),
        sa.Column("updated_at", Int64, nullable=False),
        sa.Column("last_used_at", Int64),
        sa.Column("used_count", Int64, nullable=False, server_default=sa.text("0")),
        sa.Column("invalidated_at", Int64),
        sa.Column("invalid_reason", sa.Text()),
        sa.PrimaryKeyConstraint("thread_id", "scope_kind", "scope_key", name="pk_thread_memory"),
    )
    op.create_index(
        "idx_thread_memory_scope_last_used_at",
        "thread_memory",
        ["scope_kind", "scope_key", sa.text("last_used_at DESC"), sa.text("thread_id DESC")],
    )
    op.create_index(
        "idx_thread_memory_scope_updated_at",
        "thread_memory",
        ["scope_kind", "scope_key", sa.text("updated_at DESC"), sa.text("thread_id DESC")],
    )

    op.create_table(
        "memory_phase1_jobs",
        sa.Column("thread_id", sa.Text(), _thread_fk(), nullable=False),
        sa.Column("scope_kind", sa.Text(), nullable=False),
        sa.Column("scope_key", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("owner_session_id", sa.Text()),
        sa.Column("started_at", Int64),
        sa.Column("finished_at", Int64),
        sa.Column("failure_reason", sa.Text()),
        sa.Column("source_updated_at", Int64, nullable=False),
        sa.Column("raw_memory_path", sa.Text()),
        sa.Column("summary_hash", sa.Text()),
        sa.Column("ownership_token", sa.Text()),
        sa.PrimaryKeyConstraint(
            "thread_id", "scope_kind", "scope_key", name="pk_memory_phase1_jobs"
        ),
    )
    op.create_index(
        "idx_memory_phase1_jobs_status_started_at",
        "memory_phase1_jobs",
        ["status", sa.text("started_at DESC")],
    )
    op.create_index(
        "idx_memory_phase1_jobs_scope", "memory_phase1_jobs", ["scope_kind", "scope_key"]
    )

    op.create_table(
        "memory_scope_dirty",
        sa.Column("scope_kind", sa.Text(), nullable=False),
        sa.Column("scope_key", sa.Text(), nullable=False),
        sa.Column("dirty", sa.Integer(), nullable=False),
        sa.Column("updated_at", Int64, nullable=False),
        sa.PrimaryKeyConstraint("scope_kind", "scope_key", name="pk_memory_scope_dirty"),
    )
    op.create_index(
        "idx_memory_scope_dirty_dirty", "memory_scope_dirty", ["dirty", sa.text("updated_at DESC")]
    )

    op.create_table(
        "memory_phase2_jobs",
        sa.Column("scope_kind", sa.Text(), nullable=False),
        sa.Column("scope_key", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("owner_session_id", sa.Text()),
        sa.Column("agent_thread_id", sa.Text()),
        sa.Column("started_at", Int64),
        sa.Column("last_heartbeat_at", Int64),
        sa.Column("finished_at", Int64),
        sa.Column("attempt", Int64, nullable=False, server_default=sa.text("0")),
        sa.Column("failure_reason", sa.Text()),
        sa.Column("ownership_token", sa.Text()),
        sa.PrimaryKeyConstraint("scope_kind", "scope_key", name="pk_memory_phase2_jobs"),
    )
    op.create_index(
        "idx_memory_phase2_jobs_status_heartbeat",
        "memory_phase2_jobs",
        ["status", sa.text("last_heartbeat_at DESC")],
    )

    op.create_table(
        "memory_consolidation_locks",
        sa.Column("cwd", sa.Text(), nullable=False),
        sa.Column("working_thread_id", sa.Text(), nullable=False),
        sa.Column("updated_at", Int64, nullable=False),
        sa.PrimaryKeyConstraint("cwd", name="pk_memory_consolidation_locks"),
    )
    op.create_index(
        "idx_memory_consolidation_locks_updated_at",
        "memory_consolidation_locks",
        [sa.text("updated_at DESC")],
    )

    op.create_table(
        "backfill_state",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("last_watermark", sa.Text()),
        sa.Column("last_success_at", Int64),
        sa.Column("updated_at", Int64, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_backfill_state"),
        sa.CheckConstraint("id = 1", name="ck_backfill_state_singleton"),
    )
    now = (
        "CAST(strftime('%s','now') AS INTEGER)"
        if op.get_bind().dialect.name == "sqlite"
        else "CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)"
    )
    op.execute(
        "INSERT INTO backfill_state (id, status, last_watermark, last_success_at, updated_at) "
        f"VALUES (1, 'pending', NULL, NULL, {now}) ON CONFLICT (id) DO NOTHING"
    )


def downgrade() -> None:
    for table in (
        "backfill_state",
        "memory_consolidation_locks",
        "memory_phase2_jobs",
        "memory_scope_dirty",
        "memory_phase1_jobs",
        "thread_memory",
        "thread_dynamic_tools",
        "logs",
        "threads",
    ):
        op.drop_table(table)
