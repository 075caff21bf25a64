"""Units of work: one transaction per call, the write lock up front, every statement visible.

Surface-wide tests walk every declared operation (`codex_state.operations`) with a sample call
from `tests.operation_calls`, so an operation added later is covered or fails here.
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, event, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from codex_state import Phase1ClaimKind, StateRuntime
from codex_state.engine import write_session
from codex_state.errors import DatabaseError
from codex_state.operations import operations
from codex_state.orm import memory_phase1_jobs, memory_scope_dirty
from codex_state.repositories import ConsolidationRepository, Phase1JobRepository
from tests.conftest import Backend
from tests.memory_support import SCOPE, add_thread, claim_token
from tests.operation_calls import sample_calls

_TRANSACTION_CONTROL = re.compile(r"(BEGIN|COMMIT|ROLLBACK|PRAGMA)\b", re.IGNORECASE)


def test_every_operation_has_a_sample_call(tmp_path: Path) -> None:
    with StateRuntime.from_url("sqlite://", "p") as runtime:
        assert set(sample_calls(runtime, tmp_path)) == set(operations())


class _Trace:
    """What SQLite itself executed on the runtime's connections (`set_trace_callback`)."""

    def __init__(self, engine: Engine) -> None:
        self.executed: list[str] = []
        self.seen: list[str] = []
        event.listen(engine, "checkout", self._on_checkout)
        event.listen(engine, "before_cursor_execute", self._on_cursor)
        engine.dispose()  # pooled connections predate the listener: start afresh

    def _on_checkout(self, dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.set_trace_callback(self.executed.append)

    def _on_cursor(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.seen.append(statement)
        self.executed.append(f"-- seen: {statement}")

    def clear(self) -> None:
        self.executed.clear()
        self.seen.clear()


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[StateRuntime, _Trace]]:
    with StateRuntime.init(tmp_path / "home", "p") as runtime:
        yield runtime, _Trace(runtime.engine)


def test_writes_take_the_write_lock_up_front_and_reads_do_not(
    traced: tuple[StateRuntime, _Trace], tmp_path: Path
) -> None:
    runtime, trace = traced
    calls = sample_calls(runtime, tmp_path)
    for name, operation in operations().items():
        trace.clear()
        calls[name]()
        begins = [s for s in trace.executed if s.upper().startswith("BEGIN")]
        expected = "BEGIN IMMEDIATE" if operation.write else "BEGIN"
        assert begins == [expected], (name, trace.executed)


def test_every_statement_goes_through_sqlalchemy(
    traced: tuple[StateRuntime, _Trace], tmp_path: Path
) -> None:
    """Each statement SQLite ran follows a `before_cursor_execute` of its template."""
    runtime, trace = traced
    calls = sample_calls(runtime, tmp_path)
    for name in operations():
        trace.clear()
        calls[name]()
        assert trace.seen, name
        template: re.Pattern[str] | None = None
        for executed in trace.executed:
            if executed.startswith("-- seen: "):
                sql = executed.removeprefix("-- seen: ")
                template = re.compile(
                    ".*?".join(re.escape(part) for part in sql.split("?")), re.DOTALL
                )
            elif not _TRANSACTION_CONTROL.match(executed):
                assert template is not None and template.fullmatch(executed), (name, executed)


def test_echo_logs_every_statement(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with StateRuntime.init(tmp_path / "home", "p") as runtime:
        calls = sample_calls(runtime, tmp_path)
        runtime.engine.echo = True
        try:
            with caplog.at_level("INFO", logger="sqlalchemy.engine"):
                calls["get_thread"]()
                calls["try_claim_phase1_job"]()
        finally:
            runtime.engine.echo = False
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "FROM threads" in logged
    assert "INSERT INTO memory_phase1_jobs" in logged


def _dirty_rows(runtime: StateRuntime) -> list[int]:
    with runtime.session() as session:
        return list(session.execute(select(memory_scope_dirty.c.dirty)).scalars())


def test_an_exception_rolls_the_whole_unit_back(runtime: Any) -> None:
    def fails_after_writing(session: Session) -> None:
        ConsolidationRepository(session).mark_memory_scope_dirty(*SCOPE, True)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        runtime.run_in_transaction(fails_after_writing, write=True)
    assert _dirty_rows(runtime) == []
    with pytest.raises(RuntimeError, match="boom"), runtime.session(write=True) as session:
        fails_after_writing(session)
    assert _dirty_rows(runtime) == []
    # No transaction was left open (on SQLite it would hold the write lock).
    thread_id = add_thread(runtime)
    runtime.mark_memory_scope_dirty(*SCOPE, True)
    assert _dirty_rows(runtime) == [1]
    assert claim_token(runtime, thread_id)


def _retryable_error(backend: Backend) -> Exception:
    """What the driver raises when a write must be run again: busy SQLite, PostgreSQL 40001."""
    if backend.is_sqlite:
        return sqlite3.OperationalError("database is locked")
    import psycopg.errors

    return psycopg.errors.SerializationFailure("could not serialize access")


def test_a_busy_database_reruns_the_whole_unit(backend: Backend) -> None:
    runtime = backend.runtime()
    attempts = 0

    def busy_once(session: Session) -> str:
        nonlocal attempts
        attempts += 1
        ConsolidationRepository(session).mark_memory_scope_dirty(*SCOPE, True)
        if attempts == 1:
            # As the driver raises it inside a statement: translated with its cause.
            raise DatabaseError("mark failed") from _wrapped(_retryable_error(backend))
        return "done"

    assert runtime.run_in_transaction(busy_once, write=True) == "done"
    assert attempts == 2
    assert _dirty_rows(runtime) == [1]


def _wrapped(error: Exception) -> Exception:
    from sqlalchemy.exc import OperationalError

    return OperationalError("statement", {}, error)


def test_other_database_errors_are_not_rerun(backend: Backend) -> None:
    runtime = backend.runtime()
    attempts = 0

    def fails(session: Session) -> None:
        nonlocal attempts
        attempts += 1
        session.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises(DBAPIError, match="no_such_table"):  # the caller's own statement, raw
        runtime.run_in_transaction(fails, write=True)
    assert attempts == 1


# --- the caller's own Session ------------------------------------------------------------


def _own_table(engine: Engine) -> Table:
    """A table of the caller's application, in the same database."""
    table = Table(
        f"agent_events_{uuid.uuid4().hex[:8]}",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("what", String(50)),
    )
    table.create(engine)
    return table


def _job_count(runtime: StateRuntime) -> int:
    with runtime.session() as session:
        return len(session.execute(select(memory_phase1_jobs.c.thread_id)).all())


def test_a_callers_rollback_undoes_a_claim(backend: Backend) -> None:
    runtime = backend.runtime()
    thread_id = add_thread(runtime)
    with write_session(runtime.engine) as session:
        outcome = runtime.repository(Phase1JobRepository, session).try_claim_phase1_job(
            thread_id, *SCOPE, uuid.uuid4(), 100, 60
        )
        assert outcome.kind is Phase1ClaimKind.CLAIMED
        session.rollback()
    assert _job_count(runtime) == 0


def test_a_claim_and_the_callers_own_row_commit_together(backend: Backend) -> None:
    runtime = backend.runtime()
    events = _own_table(runtime.engine)
    thread_id = add_thread(runtime)
    with runtime.session(write=True) as session:
        Phase1JobRepository(session).try_claim_phase1_job(thread_id, *SCOPE, uuid.uuid4(), 100, 60)
        session.execute(events.insert().values(what="claimed"))
    with runtime.session() as session:
        assert session.execute(select(events.c.what)).scalars().all() == ["claimed"]
    assert _job_count(runtime) == 1


def test_repositories_work_in_a_joined_external_transaction(backend: Backend) -> None:
    """SQLAlchemy's "join a Session into an external transaction" recipe (test suites use it)."""
    runtime = backend.runtime()
    thread_id = add_thread(runtime)
    with runtime.engine.connect() as connection:
        outer = connection.begin()
        session = Session(bind=connection, join_transaction_mode="create_savepoint")
        jobs = Phase1JobRepository(session)
        assert jobs.try_claim_phase1_job(thread_id, *SCOPE, uuid.uuid4(), 100, 60).claimed
        session.commit()  # releases the savepoint only
        assert jobs.try_claim_phase1_job(thread_id, *SCOPE, uuid.uuid4(), 100, 60).kind is (
            Phase1ClaimKind.SKIPPED_RUNNING
        )
        session.close()
        outer.rollback()
    assert _job_count(runtime) == 0


def test_a_savepoint_rollback_keeps_the_outer_work(backend: Backend) -> None:
    runtime = backend.runtime()
    first, second = add_thread(runtime), add_thread(runtime)
    with runtime.session(write=True) as session:
        jobs = Phase1JobRepository(session)
        assert jobs.try_claim_phase1_job(first, *SCOPE, uuid.uuid4(), 100, 60).claimed
        savepoint = session.begin_nested()
        assert jobs.try_claim_phase1_job(second, *SCOPE, uuid.uuid4(), 100, 60).claimed
        savepoint.rollback()
    assert _job_count(runtime) == 1


def test_repositories_refuse_what_is_not_a_session() -> None:
    from codex_state.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="Session"):
        Phase1JobRepository("not a session")  # type: ignore[arg-type]
