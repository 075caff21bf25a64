"""Opening a database read-only: reads work at head, nothing is ever created or migrated."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import URL, create_engine, inspect, make_url

from codex_state import LogEntry, LogQuery, StateRuntime
from codex_state.engine import is_read_only, postgresql_read_only_url, sqlite_read_only_url
from codex_state.errors import DatabaseError, ReadOnlyDatabaseError, StateDbOpenError
from tests.codex_schema import create_codex_database


def _ready(path: Path) -> None:
    with StateRuntime.from_url(URL.create("sqlite", database=str(path)), "p") as runtime:
        runtime.insert_log(LogEntry(ts=1, level="INFO", target="t", message="kept"))


@pytest.mark.parametrize("name", ["state_4.sqlite", "odd ?#%& naïve name.sqlite"])
def test_a_database_at_head_reads_and_refuses_writes(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    _ready(path)
    with StateRuntime.from_url(sqlite_read_only_url(path), "p") as runtime:
        assert [row.message for row in runtime.query_logs(LogQuery())] == ["kept"]
        with pytest.raises(DatabaseError) as raised:
            runtime.insert_log(LogEntry(ts=2, level="INFO", target="t", message="secret"))
    assert str(raised.value) == "insert_log failed: attempt to write a readonly database"


def test_a_rollback_journal_database_opens_read_only(tmp_path: Path) -> None:
    # Switching it to WAL would be a write: the read-only engine must not try.
    path = tmp_path / "state_4.sqlite"
    _ready(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode = DELETE").fetchone() == ("delete",)
    conn.close()
    with StateRuntime.from_url(sqlite_read_only_url(path), "p") as runtime:
        assert len(runtime.query_logs(LogQuery())) == 1
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    conn.close()


def test_immutable_reads_without_creating_wal_files(tmp_path: Path) -> None:
    path = tmp_path / "state_4.sqlite"
    _ready(path)
    with StateRuntime.from_url(sqlite_read_only_url(path, immutable=True), "p") as runtime:
        assert len(runtime.query_logs(LogQuery())) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state_4.sqlite"]


def test_nothing_is_created_or_migrated(tmp_path: Path) -> None:
    missing = tmp_path / "missing.sqlite"
    with pytest.raises(StateDbOpenError, match="unable to open database file"):
        StateRuntime.from_url(sqlite_read_only_url(missing), "p")
    assert not missing.exists()

    empty = tmp_path / "empty.sqlite"
    empty.touch()
    with pytest.raises(ReadOnlyDatabaseError, match="no codex-state schema yet"):
        StateRuntime.from_url(sqlite_read_only_url(empty), "p")
    assert empty.stat().st_size == 0

    codex = tmp_path / "codex.sqlite"
    create_codex_database(codex)
    before = codex.read_bytes()
    with pytest.raises(ReadOnlyDatabaseError, match="created by Codex and is adopted on its"):
        StateRuntime.from_url(sqlite_read_only_url(codex), "p")
    assert codex.read_bytes() == before


def test_postgresql_read_only(pg_schema_url: str) -> None:
    url = postgresql_read_only_url(make_url(pg_schema_url))
    assert "search_path" in str(url.query["options"])  # the schema choice is kept
    with pytest.raises(ReadOnlyDatabaseError, match="no codex-state schema yet"):
        StateRuntime.from_url(url, "p")
    engine = create_engine(pg_schema_url)
    assert inspect(engine).get_table_names() == []  # nothing was created
    engine.dispose()
    with StateRuntime.from_url(pg_schema_url, "p") as runtime:
        runtime.insert_log(LogEntry(ts=1, level="INFO", target="t", message="kept"))
    with StateRuntime.from_url(url, "p") as runtime:
        assert [row.message for row in runtime.query_logs(LogQuery())] == ["kept"]
        with pytest.raises(DatabaseError, match="read-only transaction"):
            runtime.insert_log(LogEntry(ts=2, level="INFO", target="t"))


def test_read_only_urls_are_recognised() -> None:
    assert is_read_only(sqlite_read_only_url(Path("/x.sqlite")))
    assert is_read_only(make_url("sqlite:///file:/x.sqlite?immutable=1&uri=true"))
    assert not is_read_only(make_url("sqlite:////x.sqlite"))
    assert is_read_only(postgresql_read_only_url(make_url("postgresql+psycopg://h/db")))
    assert not is_read_only(make_url("postgresql+psycopg://h/db?options=-csearch_path%3Dx"))
