"""Opening, creating, migrating and closing a state database."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from codex_state import (
    BackfillStatus,
    SchemaMismatchError,
    StateDbOpenError,
    StateError,
    StateRuntime,
    state_db_path,
)
from codex_state import migrations as migrations_module
from tests.conftest import Backend


class RecordingMetrics:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, dict[str, str]]] = []

    def counter(self, name: str, value: int, tags: dict[str, str]) -> None:
        self.calls.append((name, value, tags))

    def statuses(self) -> list[str]:
        return [tags["status"] for name, _, tags in self.calls if name == "codex.db.init"]


def test_init_creates_home_and_database(tmp_path: Path) -> None:
    home = tmp_path / "nested" / "home"
    metrics = RecordingMetrics()
    with StateRuntime.init(home, "openai", metrics=metrics) as runtime:
        assert runtime.codex_home == home
        assert runtime.default_provider == "openai"
        assert state_db_path(home).is_file()
    assert metrics.statuses() == ["opened", "created"]

    metrics = RecordingMetrics()
    with StateRuntime.init(home, "openai", metrics=metrics):
        pass
    assert metrics.statuses() == ["opened"]


def test_from_url_has_no_codex_home_and_reports_creation(backend: Backend) -> None:
    metrics = RecordingMetrics()
    runtime = backend.runtime(metrics=metrics)
    assert runtime.codex_home is None
    assert metrics.statuses() == ["opened", "created"]
    if backend.name != "sqlite_memory":
        again = RecordingMetrics()
        backend.runtime(metrics=again)
        assert again.statuses() == ["opened"]


def test_sqlite_file_connection_settings(tmp_path: Path) -> None:
    with StateRuntime.init(tmp_path, "p") as runtime, runtime.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert runtime.engine.pool.size() == 5  # type: ignore[attr-defined]


def test_write_transactions_take_the_lock_up_front(tmp_path: Path) -> None:
    """While a write unit of work runs, another connection cannot even begin a write."""
    import sqlite3

    with StateRuntime.init(tmp_path, "p") as runtime:
        other = sqlite3.connect(state_db_path(tmp_path), timeout=0, isolation_level=None)
        observed: list[str] = []

        def work(session: Session) -> None:
            session.execute(text("SELECT COUNT(*) FROM threads"))  # a read comes first
            try:
                other.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as err:
                observed.append(str(err))
            else:
                other.execute("ROLLBACK")
                observed.append("acquired")

        runtime.run_in_transaction(work, write=True)
        # A read transaction does not hold the write lock.
        runtime.run_in_transaction(work)
        other.close()
    assert observed == ["database is locked", "acquired"]


def test_opening_at_head_does_not_run_migrations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    StateRuntime.init(tmp_path, "p").close()

    def forbidden(*args: object) -> None:
        raise AssertionError("migrations ran on a database already at head")

    monkeypatch.setattr(migrations_module, "run_alembic", forbidden)
    with StateRuntime.init(tmp_path, "p") as runtime:
        assert runtime.get_backfill_state().status is BackfillStatus.PENDING


def test_close_and_context_manager(tmp_path: Path) -> None:
    runtime = StateRuntime.init(tmp_path, "p")
    with runtime as entered:
        assert entered is runtime
    with pytest.raises(StateError, match="closed"):
        runtime.get_backfill_state()
    runtime.close()  # idempotent


def test_in_memory_runtime_is_shared_between_threads() -> None:
    with StateRuntime.from_url("sqlite://", "p") as runtime:
        errors: list[BaseException] = []

        def worker(n: int) -> None:
            try:
                for i in range(50):
                    runtime.checkpoint_backfill(f"w{n}-{i}")
                    runtime.get_backfill_state()
            except BaseException as err:  # pragma: no cover - reported below
                errors.append(err)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert runtime.get_backfill_state().last_watermark is not None


def _open_and_report(url: str, barrier: object, results: object) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    try:
        with StateRuntime.from_url(url, "p") as runtime:
            runtime.mark_backfill_running()
        results.put("ok")  # type: ignore[attr-defined]
    except BaseException as err:  # report, never hang the parent
        results.put(f"{type(err).__name__}: {err}")  # type: ignore[attr-defined]


def test_processes_opening_a_new_database_at_once_all_succeed(shared_backend: Backend) -> None:
    ctx = multiprocessing.get_context("spawn")
    workers = 8
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    processes = [
        ctx.Process(target=_open_and_report, args=(shared_backend.url, barrier, results))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert outcomes == ["ok"] * workers
    runtime = shared_backend.runtime()
    with runtime.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM alembic_version")).scalar() == 1
        assert conn.execute(text("SELECT COUNT(*) FROM backfill_state")).scalar() == 1


# ---------------------------------------------------------------------------- open errors


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_file_that_is_not_sqlite_is_left_untouched(tmp_path: Path) -> None:
    path = state_db_path(tmp_path)
    path.write_bytes(b"this is not a database, it is a user's file\n" * 100)
    before = _digest(path)
    metrics = RecordingMetrics()
    with pytest.raises(StateDbOpenError, match=str(path)):
        StateRuntime.init(tmp_path, "p", metrics=metrics)
    assert _digest(path) == before
    assert metrics.statuses() == ["open_error"]


def test_codex_home_that_is_a_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("keep me")
    with pytest.raises(StateDbOpenError, match=str(home)):
        StateRuntime.init(home, "p")
    assert home.read_text() == "keep me"


@pytest.mark.parametrize(
    "url",
    ["not a url", "mysql://user@host/db", "sqlite:////nonexistent-dir/sub/state.sqlite"],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(StateDbOpenError) as info:
        StateRuntime.from_url(url, "p")
    assert url.split("://")[-1].split("/")[0] in str(info.value) or url in str(info.value)


def _init_as_unprivileged(home: str, results: object) -> None:
    if os.geteuid() == 0:
        os.setgid(65534)
        os.setuid(65534)  # nobody: the directory below is not writable for this user
    try:
        StateRuntime.init(home, "p")
    except StateDbOpenError as err:
        results.put(f"StateDbOpenError: {err}")  # type: ignore[attr-defined]
    except BaseException as err:
        results.put(f"{type(err).__name__}: {err}")  # type: ignore[attr-defined]
    else:
        results.put("opened")  # type: ignore[attr-defined]


def test_unwritable_directory() -> None:
    # Outside pytest's private tmp tree, which other users cannot even traverse.
    parent = Path(tempfile.mkdtemp(prefix="codex-state-ro-"))
    parent.chmod(0o755)
    home = parent / "locked"
    home.mkdir()
    home.chmod(0o555)
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    process = ctx.Process(target=_init_as_unprivileged, args=(str(home), results))
    process.start()
    outcome = results.get(timeout=60)
    process.join(timeout=30)
    home.chmod(0o755)
    left_behind = list(home.iterdir())
    shutil.rmtree(parent)
    assert outcome.startswith("StateDbOpenError: "), outcome
    assert str(home) in outcome
    assert left_behind == []


def test_unknown_newer_revision_is_refused(tmp_path: Path) -> None:
    StateRuntime.init(tmp_path, "p").close()
    import sqlite3

    conn = sqlite3.connect(state_db_path(tmp_path))
    conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaMismatchError, match="9999"):
        StateRuntime.init(tmp_path, "p")
