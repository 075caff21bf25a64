"""The migrations and the ORM models describe the same schema, on every backend."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from codex_state import StateRuntime
from codex_state.migrations import (
    HEAD_REVISION,
    KNOWN_REVISIONS,
    alembic_config,
    migration_connection,
    run_alembic,
)
from codex_state.orm import SEED_TABLES
from tests.conftest import Backend

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_revision_constants_match_the_script_directory() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_current_head() == HEAD_REVISION
    walked = [rev.revision for rev in script.walk_revisions("base", "heads")]
    assert tuple(reversed(walked)) == KNOWN_REVISIONS


def test_models_and_migrations_agree(backend: Backend) -> None:
    """`alembic check`: upgrading from empty gives exactly the models' schema."""
    from alembic import command

    runtime = backend.runtime()
    with runtime.engine.connect() as conn:
        command.check(alembic_config(conn))


def test_upgrade_downgrade_upgrade_round_trip(backend: Backend) -> None:
    runtime = backend.runtime()
    engine = runtime.engine
    with migration_connection(engine) as conn:
        run_alembic(conn, "downgrade", "base")
    with engine.connect() as conn:
        remaining = set(inspect(conn).get_table_names()) & set(SEED_TABLES)
    assert remaining == set()
    with migration_connection(engine) as conn:
        run_alembic(conn, "upgrade", "head")
    with engine.connect() as conn:
        assert set(SEED_TABLES) <= set(inspect(conn).get_table_names())
        assert (
            conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD_REVISION
        )
    assert runtime.get_backfill_state().status == "pending"


def test_downgrade_of_our_revision_keeps_data(backend: Backend) -> None:
    runtime = backend.runtime()
    runtime.checkpoint_backfill("sessions/2026/01/01/rollout-a.jsonl")
    with migration_connection(runtime.engine) as conn:
        run_alembic(conn, "downgrade", "0001")
        run_alembic(conn, "upgrade", "head")
    assert runtime.get_backfill_state().last_watermark == "sessions/2026/01/01/rollout-a.jsonl"


def test_seed_tables_indexes_and_backfill_row(runtime: StateRuntime) -> None:
    inspector = inspect(runtime.engine)
    assert set(SEED_TABLES) <= set(inspector.get_table_names())
    index_names = {index["name"] for index in inspector.get_indexes("threads")}
    assert {
        "idx_threads_created_at",
        "idx_threads_updated_at",
        "idx_threads_archived",
        "idx_threads_source",
        "idx_threads_provider",
        "ix_cs_threads_archived_created",
        "ix_cs_threads_archived_updated",
    } <= index_names
    fks = inspector.get_foreign_keys("thread_memory")
    assert fks[0]["referred_table"] == "threads"
    assert fks[0]["options"].get("ondelete") == "CASCADE"
    with runtime.engine.connect() as conn:
        row = conn.execute(text("SELECT id, status FROM backfill_state")).one()
    assert tuple(row) == (1, "pending")


def test_postgres_uses_64_bit_integers(backend: Backend) -> None:
    if not backend.is_postgres:
        pytest.skip("64-bit column types are a PostgreSQL concern")
    runtime = backend.runtime()
    columns = {c["name"]: c for c in inspect(runtime.engine).get_columns("threads")}
    for name in ("created_at", "updated_at", "tokens_used", "archived_at"):
        assert str(columns[name]["type"]) == "BIGINT"
    log_columns = {c["name"]: c for c in inspect(runtime.engine).get_columns("logs")}
    assert str(log_columns["id"]["type"]) == "BIGINT"
    assert str(log_columns["ts"]["type"]) == "BIGINT"
    indexes = inspect(runtime.engine).get_indexes("logs")
    log_indexes = {index["name"]: index["column_names"] for index in indexes}
    assert log_indexes["ix_cs_logs_thread_id_id"] == ["thread_id", "id"]


def test_log_ids_autoincrement(runtime: StateRuntime) -> None:
    with runtime.engine.begin() as conn:
        for message in ("a", "b"):
            conn.execute(
                text(
                    "INSERT INTO logs (ts, ts_nanos, level, target, message) "
                    "VALUES (1, 0, 'INFO', 't', :m)"
                ),
                {"m": message},
            )
        ids = conn.execute(text("SELECT id FROM logs ORDER BY id")).scalars().all()
    assert ids == [ids[0], ids[0] + 1]


def test_cli_alembic_upgrade_from_repo_root(tmp_path: Path) -> None:
    """`alembic -x codex_home=DIR upgrade head` works from the repository root."""
    import subprocess
    import sys

    home = tmp_path / "home"
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"codex_home={home}", "upgrade", "head"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    with StateRuntime.init(home, "p") as runtime:
        assert runtime.get_backfill_state().status == "pending"


def test_rollout_files_revision_round_trip_keeps_the_rest(backend: Backend) -> None:
    runtime = backend.runtime()
    runtime.checkpoint_backfill("sessions/2026/01/01/rollout-a.jsonl")
    with migration_connection(runtime.engine) as conn:
        run_alembic(conn, "downgrade", "0002")
    with runtime.engine.connect() as conn:
        assert "rollout_files" not in set(inspect(conn).get_table_names())
    with migration_connection(runtime.engine) as conn:
        run_alembic(conn, "upgrade", "head")
    with runtime.engine.connect() as conn:
        columns = {c["name"] for c in inspect(conn).get_columns("rollout_files")}
        key = inspect(conn).get_pk_constraint("rollout_files")["constrained_columns"]
    assert columns == {"path", "size", "mtime_ns", "indexed_size", "thread_id", "indexed_at"}
    assert key == ["path"]
    assert runtime.get_backfill_state().last_watermark == "sessions/2026/01/01/rollout-a.jsonl"
