"""Adopting a database that Codex (the Rust sqlx migrator) created."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from codex_state import BackfillStatus, SchemaMismatchError, StateRuntime, state_db_path
from codex_state.errors import NewerCodexDatabaseError
from codex_state.migrations import HEAD_REVISION
from tests.codex_schema import create_codex_database, create_newer_codex_database

THREAD_ID = "019c8a4c-ed82-79a1-aa28-7738fc5ab61a"


def _fill(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO threads (id, rollout_path, created_at, updated_at, source, model_provider, "
        "cwd, title, sandbox_policy, approval_mode, tokens_used, first_user_message) VALUES "
        "(?, '/r.jsonl', 1700000000, 1700000100, 'cli', 'openai', '/w', 'hello', "
        "'{\"type\":\"read-only\"}', 'on-request', 42, 'hello')",
        (THREAD_ID,),
    )
    conn.execute(
        "INSERT INTO logs (ts, ts_nanos, level, target, message) VALUES (1, 2, 'INFO', 't', 'm')"
    )
    conn.execute(
        "INSERT INTO thread_dynamic_tools VALUES (?, 0, 'tool', 'desc', '{}')", (THREAD_ID,)
    )
    conn.execute(
        "UPDATE backfill_state SET status = 'complete', last_watermark = 'sessions/x.jsonl'"
    )
    conn.commit()
    conn.close()


def _count(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def test_codex_database_is_adopted_with_every_row(codex_home: Path) -> None:
    path = state_db_path(codex_home)
    create_codex_database(path)
    _fill(path)

    with StateRuntime.init(codex_home, "openai") as runtime:
        state = runtime.get_backfill_state()
        assert state.status is BackfillStatus.COMPLETE
        assert state.last_watermark == "sessions/x.jsonl"
        with runtime.engine.connect() as conn:
            version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
            tables = {
                row[0]
                for row in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='index'")
            }
        assert version == HEAD_REVISION
        assert "ix_cs_threads_archived_created" in tables
        assert (
            runtime.run_in_transaction(  # our own table, added by revision 0003
                lambda s: s.execute(text("SELECT COUNT(*) FROM rollout_files")).scalar()
            )
            == 0
        )

    assert _count(path, "threads") == 1
    assert _count(path, "logs") == 1
    assert _count(path, "thread_dynamic_tools") == 1
    assert _count(path, "_sqlx_migrations") == 10  # Codex's own bookkeeping is left alone

    with StateRuntime.init(codex_home, "openai"):  # and it opens again on the fast path
        pass


def test_mismatching_codex_schema_is_refused_and_kept(codex_home: Path) -> None:
    path = state_db_path(codex_home)
    create_codex_database(path, upto=9)  # an older Codex: memory tables are still v1
    before = sqlite3.connect(path)
    tables_before = sorted(
        row[0] for row in before.execute("SELECT name FROM sqlite_master WHERE type='table'")
    )
    before.close()

    with pytest.raises(SchemaMismatchError) as info:
        StateRuntime.init(codex_home, "openai")
    message = str(info.value)
    assert "memory_phase1_jobs is missing" in message
    assert "thread_memory" in message

    after = sqlite3.connect(path)
    tables_after = sorted(
        row[0] for row in after.execute("SELECT name FROM sqlite_master WHERE type='table'")
    )
    after.close()
    assert tables_after == tables_before


def test_column_difference_is_named(codex_home: Path) -> None:
    path = state_db_path(codex_home)
    create_codex_database(path)
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE threads ADD COLUMN extra TEXT NOT NULL DEFAULT ''")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaMismatchError, match=r"threads\.column extra"):
        StateRuntime.init(codex_home, "openai")


def test_unmanaged_tables_are_refused(codex_home: Path) -> None:
    path = state_db_path(codex_home)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE threads (id TEXT PRIMARY KEY)")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaMismatchError, match="no migration history"):
        StateRuntime.init(codex_home, "openai")
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM threads").fetchone()[0] == 0
    conn.close()


def test_a_newer_codex_database_is_refused_by_name_and_kept(codex_home: Path) -> None:
    path = state_db_path(codex_home)
    create_newer_codex_database(path)
    _fill_newer(path)
    before = path.read_bytes()
    with pytest.raises(NewerCodexDatabaseError) as info:
        StateRuntime.init(codex_home, "openai")
    message = str(info.value)
    assert "created by a Codex of 10 February 2026 or later" in message
    assert "stage1_outputs, jobs" in message and "\n" not in message
    assert path.read_bytes() == before  # not stamped, not migrated, not even locked for it
    assert not path.with_name(path.name + "-journal").exists()


def _fill_newer(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO stage1_outputs VALUES (?, 'memory')", (THREAD_ID,))
    conn.commit()
    conn.close()
