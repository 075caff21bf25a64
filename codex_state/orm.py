"""SQLAlchemy tables of the state database: the seed's nine tables at sqlx migration 0010.

Column order, types, defaults, keys and index names follow the Rust crate so a database Codex
created and one this package created are interchangeable. Indexes added for our own queries
carry names that start with ``ix_cs_`` (see revisions 0002 and 0003).
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# 64-bit on PostgreSQL; plain INTEGER (already 64-bit, and required for AUTOINCREMENT) on SQLite.
Int64 = BigInteger().with_variant(Integer(), "sqlite")

ONLY_ON = "codex_state_only_on"
"""`Index.info` key naming the one backend an index exists on (read by the migration diff)."""

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


CANDIDATE_THREADS = "first_user_message <> ''"
"""The threads phase-1 candidate selection considers (the partial index of revision 0003)."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _thread_fk() -> ForeignKey:
    return ForeignKey("threads.id", ondelete="CASCADE")


class ThreadRow(Base):
    __tablename__ = "threads"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    rollout_path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(Int64)
    updated_at: Mapped[int] = mapped_column(Int64)
    source: Mapped[str] = mapped_column(Text)
    model_provider: Mapped[str] = mapped_column(Text)
    cwd: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text)
    sandbox_policy: Mapped[str] = mapped_column(Text)
    approval_mode: Mapped[str] = mapped_column(Text)
    tokens_used: Mapped[int] = mapped_column(Int64, server_default=text("0"))
    has_user_event: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    archived: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    archived_at: Mapped[int | None] = mapped_column(Int64)
    git_sha: Mapped[str | None] = mapped_column(Text)
    git_branch: Mapped[str | None] = mapped_column(Text)
    git_origin_url: Mapped[str | None] = mapped_column(Text)
    cli_version: Mapped[str] = mapped_column(Text, server_default=text("''"))
    first_user_message: Mapped[str] = mapped_column(Text, server_default=text("''"))

    __table_args__ = (
        Index("idx_threads_created_at", created_at.desc(), id.desc()),
        Index("idx_threads_updated_at", updated_at.desc(), id.desc()),
        Index("idx_threads_archived", "archived"),
        Index("idx_threads_source", "source"),
        Index("idx_threads_provider", "model_provider"),
        # Ours (revision 0002): every page filters on `archived` and orders by a time column,
        # so the keyset walk must be one index range scan, not a scan-then-sort.
        Index("ix_cs_threads_archived_created", "archived", created_at.desc(), id.desc()),
        Index("ix_cs_threads_archived_updated", "archived", updated_at.desc(), id.desc()),
        # Ours (revision 0003): phase-1 candidate selection walks these threads in this order,
        # reading only these columns (an index-only walk on PostgreSQL).
        Index(
            "ix_cs_threads_memory_candidates",
            "archived",
            updated_at.desc(),
            id.desc(),
            "source",
            "cwd",
            sqlite_where=text(CANDIDATE_THREADS),
            postgresql_where=text(CANDIDATE_THREADS),
        ),
    )


class LogRowRecord(Base):
    __tablename__ = "logs"

    id: Mapped[int] = mapped_column(Int64, primary_key=True, autoincrement=True)
    ts: Mapped[int] = mapped_column(Int64)
    ts_nanos: Mapped[int] = mapped_column(Int64)
    level: Mapped[str] = mapped_column(Text)
    target: Mapped[str] = mapped_column(Text)
    message: Mapped[str | None] = mapped_column(Text)
    module_path: Mapped[str | None] = mapped_column(Text)
    file: Mapped[str | None] = mapped_column(Text)
    line: Mapped[int | None] = mapped_column(Int64)
    thread_id: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("idx_logs_ts", ts.desc(), ts_nanos.desc(), id.desc()),
        Index("idx_logs_thread_id", "thread_id"),
        # Ours (revision 0002), PostgreSQL only: a thread's page in id order is one ordered
        # index read that stops at the limit. SQLite's idx_logs_thread_id already ends in the
        # rowid (= id), so there the extra index would only cost writes and space.
        Index("ix_cs_logs_thread_id_id", "thread_id", "id", info={ONLY_ON: "postgresql"}).ddl_if(
            dialect="postgresql"
        ),
        {"sqlite_autoincrement": True},
    )


class ThreadDynamicToolRow(Base):
    __tablename__ = "thread_dynamic_tools"

    thread_id: Mapped[str] = mapped_column(Text, _thread_fk(), primary_key=True)
    position: Mapped[int] = mapped_column(Int64, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text)
    input_schema: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("idx_thread_dynamic_tools_thread", "thread_id"),)


class ThreadMemoryRow(Base):
    __tablename__ = "thread_memory"

    thread_id: Mapped[str] = mapped_column(Text, _thread_fk(), primary_key=True)
    scope_kind: Mapped[str] = mapped_column(Text, primary_key=True)
    scope_key: Mapped[str] = mapped_column(Text, primary_key=True)
    raw_memory: Mapped[str] = mapped_column(Text)
    memory_summary: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[int] = mapped_column(Int64)
    last_used_at: Mapped[int | None] = mapped_column(Int64)
    used_count: Mapped[int] = mapped_column(Int64, server_default=text("0"))
    invalidated_at: Mapped[int | None] = mapped_column(Int64)
    invalid_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index(
            "idx_thread_memory_scope_last_used_at",
            "scope_kind",
            "scope_key",
            last_used_at.desc(),
            thread_id.desc(),
        ),
        Index(
            "idx_thread_memory_scope_updated_at",
            "scope_kind",
            "scope_key",
            updated_at.desc(),
            thread_id.desc(),
        ),
    )


class Phase1JobRow(Base):
    __tablename__ = "memory_phase1_jobs"

    thread_id: Mapped[str] = mapped_column(Text, _thread_fk(), primary_key=True)
    scope_kind: Mapped[str] = mapped_column(Text, primary_key=True)
    scope_key: Mapped[str] = mapped_column(Text, primary_key=True)
    status: Mapped[str] = mapped_column(Text)
    owner_session_id: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[int | None] = mapped_column(Int64)
    finished_at: Mapped[int | None] = mapped_column(Int64)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    source_updated_at: Mapped[int] = mapped_column(Int64)
    raw_memory_path: Mapped[str | None] = mapped_column(Text)
    summary_hash: Mapped[str | None] = mapped_column(Text)
    ownership_token: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("idx_memory_phase1_jobs_status_started_at", "status", started_at.desc()),
        Index("idx_memory_phase1_jobs_scope", "scope_kind", "scope_key"),
    )


class MemoryScopeDirtyRow(Base):
    __tablename__ = "memory_scope_dirty"

    scope_kind: Mapped[str] = mapped_column(Text, primary_key=True)
    scope_key: Mapped[str] = mapped_column(Text, primary_key=True)
    dirty: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[int] = mapped_column(Int64)

    __table_args__ = (Index("idx_memory_scope_dirty_dirty", "dirty", updated_at.desc()),)


class Phase2JobRow(Base):
    """Created by the seed's migration 0010 but not used by any code at the seed."""

    __tablename__ = "memory_phase2_jobs"

    scope_kind: Mapped[str] = mapped_column(Text, primary_key=True)
    scope_key: Mapped[str] = mapped_column(Text, primary_key=True)
    status: Mapped[str] = mapped_column(Text)
    owner_session_id: Mapped[str | None] = mapped_column(Text)
    agent_thread_id: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[int | None] = mapped_column(Int64)
    last_heartbeat_at: Mapped[int | None] = mapped_column(Int64)
    finished_at: Mapped[int | None] = mapped_column(Int64)
    attempt: Mapped[int] = mapped_column(Int64, server_default=text("0"))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    ownership_token: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("idx_memory_phase2_jobs_status_heartbeat", "status", last_heartbeat_at.desc()),
    )


class ConsolidationLockRow(Base):
    __tablename__ = "memory_consolidation_locks"

    cwd: Mapped[str] = mapped_column(Text, primary_key=True)
    working_thread_id: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[int] = mapped_column(Int64)

    __table_args__ = (Index("idx_memory_consolidation_locks_updated_at", updated_at.desc()),)


class BackfillStateRow(Base):
    __tablename__ = "backfill_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    status: Mapped[str] = mapped_column(Text)
    last_watermark: Mapped[str | None] = mapped_column(Text)
    last_success_at: Mapped[int | None] = mapped_column(Int64)
    updated_at: Mapped[int] = mapped_column(Int64)
    # Ours (revision 0002): who holds the backfill lease; `updated_at` is its heartbeat.
    lease_owner: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (CheckConstraint("id = 1", name="singleton"),)


class RolloutFileRow(Base):
    """Ours (revision 0003): what the index last read of each rollout file, for the sync.

    `size` and `mtime_ns` are the file's as stat'ed just before it was read, so a file whose
    pair still matches is not read again. `indexed_size` is the byte offset up to which its
    lines were applied (the end of its last complete line), where `--watch` resumes reading
    an appended file. `thread_id` is NULL for a file that could not be read or parsed.
    """

    __tablename__ = "rollout_files"

    path: Mapped[str] = mapped_column(Text, primary_key=True)
    size: Mapped[int] = mapped_column(Int64)
    mtime_ns: Mapped[int] = mapped_column(Int64)
    indexed_size: Mapped[int] = mapped_column(Int64)
    thread_id: Mapped[str | None] = mapped_column(Text)
    indexed_at: Mapped[int] = mapped_column(Int64)


threads = cast(Table, ThreadRow.__table__)
logs = cast(Table, LogRowRecord.__table__)
thread_dynamic_tools = cast(Table, ThreadDynamicToolRow.__table__)
thread_memory = cast(Table, ThreadMemoryRow.__table__)
memory_phase1_jobs = cast(Table, Phase1JobRow.__table__)
memory_scope_dirty = cast(Table, MemoryScopeDirtyRow.__table__)
memory_phase2_jobs = cast(Table, Phase2JobRow.__table__)
memory_consolidation_locks = cast(Table, ConsolidationLockRow.__table__)
backfill_state = cast(Table, BackfillStateRow.__table__)
rollout_files = cast(Table, RolloutFileRow.__table__)

SEED_TABLES = (
    "threads",
    "logs",
    "thread_dynamic_tools",
    "thread_memory",
    "memory_phase1_jobs",
    "memory_scope_dirty",
    "memory_phase2_jobs",
    "memory_consolidation_locks",
    "backfill_state",
)
