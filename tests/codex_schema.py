"""A database as Codex itself creates it: the seed's sqlx migrations 0001..0010, replayed.

The SQL follows seed-notes section 1 (the Rust crate's migrations folder), including the ALTERs
that put later columns last and the drop-and-recreate of the memory tables in 0010.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

CODEX_MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "threads",
        """
CREATE TABLE threads (
    id TEXT PRIMARY KEY,
    rollout_path TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    source TEXT NOT NULL,
    model_provider TEXT NOT NULL,
    cwd TEXT NOT NULL,
    title TEXT NOT NULL,
    sandbox_policy TEXT NOT NULL,
    approval_mode TEXT NOT NULL,
    tokens_used INTEGER NOT NULL DEFAULT 0,
    has_user_event INTEGER NOT NULL DEFAULT 0,
    archived INTEGER NOT NULL DEFAULT 0,
    archived_at INTEGER,
    git_sha TEXT,
    git_branch TEXT,
    git_origin_url TEXT
);
CREATE INDEX idx_threads_created_at ON threads(created_at DESC, id DESC);
CREATE INDEX idx_threads_updated_at ON threads(updated_at DESC, id DESC);
CREATE INDEX idx_threads_archived ON threads(archived);
CREATE INDEX idx_threads_source ON threads(source);
CREATE INDEX idx_threads_provider ON threads(model_provider);
""",
    ),
    (
        2,
        "logs",
        """
CREATE TABLE logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    ts_nanos INTEGER NOT NULL,
    level TEXT NOT NULL,
    target TEXT NOT NULL,
    message TEXT,
    module_path TEXT,
    file TEXT,
    line INTEGER
);
CREATE INDEX idx_logs_ts ON logs(ts DESC, ts_nanos DESC, id DESC);
""",
    ),
    (
        3,
        "logs thread id",
        """
ALTER TABLE logs ADD COLUMN thread_id TEXT;
CREATE INDEX idx_logs_thread_id ON logs(thread_id);
""",
    ),
    (
        4,
        "thread dynamic tools",
        """
CREATE TABLE thread_dynamic_tools (
    thread_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    input_schema TEXT NOT NULL,
    PRIMARY KEY(thread_id, position),
    FOREIGN KEY(thread_id) REFERENCES threads(id) ON DELETE CASCADE
);
CREATE INDEX idx_thread_dynamic_tools_thread ON thread_dynamic_tools(thread_id);
""",
    ),
    (
        5,
        "threads cli version",
        "ALTER TABLE threads ADD COLUMN cli_version TEXT NOT NULL DEFAULT '';",
    ),
    (
        6,
        "thread memory",
        """
CREATE TABLE thread_memory (
    thread_id TEXT PRIMARY KEY,
    trace_summary TEXT NOT NULL,
    memory_summary TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    FOREIGN KEY(thread_id) REFERENCES threads(id) ON DELETE CASCADE
);
CREATE INDEX idx_thread_memory_updated_at ON thread_memory(updated_at DESC, thread_id DESC);
""",
    ),
    (
        7,
        "threads first user message",
        """
ALTER TABLE threads ADD COLUMN first_user_message TEXT NOT NULL DEFAULT '';
UPDATE threads SET first_user_message = title
WHERE first_user_message = '' AND has_user_event = 1 AND title <> '';
""",
    ),
    (
        8,
        "backfill state",
        """
CREATE TABLE backfill_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    status TEXT NOT NULL,
    last_watermark TEXT,
    last_success_at INTEGER,
    updated_at INTEGER NOT NULL
);
INSERT INTO backfill_state (id, status, last_watermark, last_success_at, updated_at)
VALUES (1, 'pending', NULL, NULL, CAST(strftime('%s', 'now') AS INTEGER))
ON CONFLICT(id) DO NOTHING;
""",
    ),
    (
        9,
        "memory consolidation locks",
        """
CREATE TABLE memory_consolidation_locks (
    cwd TEXT PRIMARY KEY,
    working_thread_id TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX idx_memory_consolidation_locks_updated_at
    ON memory_consolidation_locks(updated_at DESC);
""",
    ),
    (
        10,
        "memory workflow v2",
        """
DROP TABLE IF EXISTS thread_memory;
DROP TABLE IF EXISTS memory_consolidation_locks;
DROP TABLE IF EXISTS memory_phase1_jobs;
DROP TABLE IF EXISTS memory_scope_dirty;
DROP TABLE IF EXISTS memory_phase2_jobs;
CREATE TABLE thread_memory (
    thread_id TEXT NOT NULL,
    scope_kind TEXT NOT NULL,
    scope_key TEXT NOT NULL,
    raw_memory TEXT NOT NULL,
    memory_summary TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    last_used_at INTEGER,
    used_count INTEGER NOT NULL DEFAULT 0,
    invalidated_at INTEGER,
    invalid_reason TEXT,
    PRIMARY KEY (thread_id, scope_kind, scope_key),
    FOREIGN KEY(thread_id) REFERENCES threads(id) ON DELETE CASCADE
);
CREATE INDEX idx_thread_memory_scope_last_used_at
    ON thread_memory(scope_kind, scope_key, last_used_at DESC, thread_id DESC);
CREATE INDEX idx_thread_memory_scope_updated_at
    ON thread_memory(scope_kind, scope_key, updated_at DESC, thread_id DESC);
CREATE TABLE memory_phase1_jobs (
    thread_id TEXT NOT NULL,
    scope_kind TEXT NOT NULL,
    scope_key TEXT NOT NULL,
    status TEXT NOT NULL,
    owner_session_id TEXT,
    started_at INTEGER,
    finished_at INTEGER,
    failure_reason TEXT,
    source_updated_at INTEGER NOT NULL,
    raw_memory_path TEXT,
    summary_hash TEXT,
    ownership_token TEXT,
    PRIMARY KEY (thread_id, scope_kind, scope_key),
    FOREIGN KEY(thread_id) REFERENCES threads(id) ON DELETE CASCADE
);
CREATE INDEX idx_memory_phase1_jobs_status_started_at
    ON memory_phase1_jobs(status, started_at DESC);
CREATE INDEX idx_memory_phase1_jobs_scope ON memory_phase1_jobs(scope_kind, scope_key);
CREATE TABLE memory_scope_dirty (
    scope_kind TEXT NOT NULL,
    scope_key TEXT NOT NULL,
    dirty INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (scope_kind, scope_key)
);
CREATE INDEX idx_memory_scope_dirty_dirty ON memory_scope_dirty(dirty, updated_at DESC);
CREATE TABLE memory_phase2_jobs (
    scope_kind TEXT NOT NULL,
    scope_key TEXT NOT NULL,
    status TEXT NOT NULL,
    owner_session_id TEXT,
    agent_thread_id TEXT,
    started_at INTEGER,
    last_heartbeat_at INTEGER,
    finished_at INTEGER,
    attempt INTEGER NOT NULL DEFAULT 0,
    failure_reason TEXT,
    ownership_token TEXT,
    PRIMARY KEY (scope_kind, scope_key)
);
CREATE INDEX idx_memory_phase2_jobs_status_heartbeat
    ON memory_phase2_jobs(status, last_heartbeat_at DESC);
CREATE TABLE memory_consolidation_locks (
    cwd TEXT PRIMARY KEY,
    working_thread_id TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX idx_memory_consolidation_locks_updated_at
    ON memory_consolidation_locks(updated_at DESC);
""",
    ),
]

SQLX_TABLE = """
CREATE TABLE _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL,
    execution_time BIGINT NOT NULL
)
"""


def create_codex_database(path: Path, *, upto: int = 10) -> None:
    """Write a state database the way Codex's sqlx migrator would (WAL, migrations in order)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(SQLX_TABLE)
        for version, description, sql in CODEX_MIGRATIONS[:upto]:
            conn.executescript(f"BEGIN; {sql} COMMIT;")
            conn.execute(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, "
                "execution_time) VALUES (?, ?, 1, ?, 1000)",
                (version, description, hashlib.sha384(sql.encode()).digest()),
            )
    finally:
        conn.close()


# A synthetic stand-in for the memory tables of Codex builds from 10 February 2026 on (and of
# its state_5.sqlite): codex-state only looks at which tables exist, not at their columns.
NEWER_CODEX_MEMORY_SQL = """
CREATE TABLE stage1_outputs (thread_id TEXT PRIMARY KEY, raw_memory TEXT NOT NULL);
CREATE TABLE jobs (kind TEXT NOT NULL, job_key TEXT NOT NULL, status TEXT NOT NULL,
                   PRIMARY KEY (kind, job_key));
"""


def create_newer_codex_database(path: Path) -> None:
    """A database as a Codex build of 10-12 February 2026 left it: the seed's threads, logs,
    tools and backfill tables, and other memory tables in place of the seed's 0006, 0009, 0010.
    """
    by_version = {version: (description, sql) for version, description, sql in CODEX_MIGRATIONS}
    steps = [by_version[v] for v in (1, 2, 3, 4, 5)]
    steps += [("memories", NEWER_CODEX_MEMORY_SQL), by_version[7], by_version[8]]
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(SQLX_TABLE)
        for version, (description, sql) in enumerate(steps, 1):
            conn.executescript(f"BEGIN; {sql} COMMIT;")
            conn.execute(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, "
                "execution_time) VALUES (?, ?, 1, ?, 1000)",
                (version, description, hashlib.sha384(sql.encode()).digest()),
            )
    finally:
        conn.close()
