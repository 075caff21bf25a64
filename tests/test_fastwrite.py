"""The fast write path: one transaction per unit, rolled back and retried like a Session write."""

from __future__ import annotations

import sqlite3
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, bindparam
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.interfaces import DBAPIConnection

from codex_state import DatabaseClock, StateRuntime
from codex_state.errors import DatabaseError, StateError
from codex_state.fastread import FastQuery
from codex_state.orm import memory_scope_dirty
from codex_state.repositories.jobs import ConsolidationRepository
from tests.conftest import Backend
from tests.memory_support import SCOPE, add_thread, claim_token
from tests.test_fastread import _hide

_dirty_flags = FastQuery(memory_scope_dirty.select().with_only_columns(memory_scope_dirty.c.dirty))


def _dirty_rows(runtime: StateRuntime) -> list[tuple[Any, ...]]:
    return runtime._fast_read("test", lambda c, d: _dirty_flags.all(c, d, {}))


def _mark_dirty(connection: DBAPIConnection, dialect: Dialect) -> None:
    ConsolidationRepository(connection, dialect).mark_scope_dirty(*SCOPE, True, 1)


def _retryable_error(backend: Backend) -> Exception:
    """What the driver raises when a write must be run again: busy SQLite, PostgreSQL 40001."""
    if backend.is_sqlite:
        return sqlite3.OperationalError("database is locked")
    import psycopg.errors

    return psycopg.errors.SerializationFailure("could not serialize access")


def test_an_exception_rolls_the_whole_unit_back(backend: Backend) -> None:
    runtime = backend.runtime()

    def fails_after_writing(connection: DBAPIConnection, dialect: Dialect) -> None:
        _mark_dirty(connection, dialect)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        runtime._fast_write("test", fails_after_writing)
    assert _dirty_rows(runtime) == []
    # No transaction was left open on a pooled connection (on SQLite it would hold the write
    # lock): Session writes and fast writes both still go through.
    thread_id = add_thread(runtime)
    runtime.mark_memory_scope_dirty(*SCOPE, True)
    assert _dirty_rows(runtime) == [(1,)]
    assert claim_token(runtime, thread_id)


def test_driver_error_is_a_database_error_and_the_connection_survives(backend: Backend) -> None:
    runtime = backend.runtime()
    thread_id = add_thread(runtime)
    _hide(runtime, "memory_phase1_jobs")
    dbapi_error = runtime.engine.dialect.loaded_dbapi.Error
    for _ in range(3):  # more than once: every failed connection went back to the pool usable
        with pytest.raises(DatabaseError, match="try_claim_phase1_job failed") as raised:
            runtime.try_claim_phase1_job(thread_id, *SCOPE, uuid.uuid4(), 100, 60)
        assert isinstance(raised.value.__cause__, dbapi_error)
    runtime.mark_memory_scope_dirty(*SCOPE, True)
    assert runtime.get_thread(thread_id) is not None
    assert _dirty_rows(runtime) == [(1,)]


def test_a_busy_database_error_retries_the_whole_unit(backend: Backend) -> None:
    runtime = backend.runtime()
    attempts = 0

    def busy_once(connection: DBAPIConnection, dialect: Dialect) -> str:
        nonlocal attempts
        attempts += 1
        _mark_dirty(connection, dialect)
        if attempts == 1:
            raise _retryable_error(backend)
        return "done"

    assert runtime._fast_write("test", busy_once) == "done"
    assert attempts == 2
    assert _dirty_rows(runtime) == [(1,)]


def test_other_driver_errors_are_not_retried(backend: Backend) -> None:
    runtime = backend.runtime()
    attempts = 0
    error_type = runtime.engine.dialect.loaded_dbapi.OperationalError

    def fails(connection: DBAPIConnection, dialect: Dialect) -> None:
        nonlocal attempts
        attempts += 1
        raise error_type("disk I/O error")

    with pytest.raises(DatabaseError, match="disk I/O error"):
        runtime._fast_write("test", fails)
    assert attempts == 1


def test_closed_runtime_refuses_fast_writes(backend: Backend) -> None:
    runtime = backend.runtime()
    thread_id = add_thread(runtime)
    runtime.close()
    writes = (
        lambda: runtime.try_claim_phase1_job(thread_id, *SCOPE, uuid.uuid4(), 100, 60),
        lambda: runtime.renew_phase1_job_lease(thread_id, *SCOPE, "token"),
        lambda: runtime.mark_memory_scope_dirty(*SCOPE, True),
        lambda: runtime.release_memory_consolidation_lock("/work", thread_id),
        lambda: runtime.get_thread_memory(thread_id),
    )
    for write in writes:
        with pytest.raises(StateError, match="closed"):
            write()


def test_rowcount_judges_dml(backend: Backend) -> None:
    runtime = backend.runtime()
    runtime.mark_memory_scope_dirty(*SCOPE, False)
    clear = FastQuery(
        memory_scope_dirty.update()
        .where(memory_scope_dirty.c.dirty == bindparam("p_from"))
        .values(dirty=bindparam("p_to"))
    )
    changed = [
        runtime._fast_write("test", lambda c, d: clear.rowcount(c, d, {"p_from": 0, "p_to": 1})),
        runtime._fast_write("test", lambda c, d: clear.rowcount(c, d, {"p_from": 0, "p_to": 1})),
    ]
    assert changed == [1, 0]


def test_statements_sqlalchemy_would_complete_at_execution_are_refused(backend: Backend) -> None:
    dialect = backend.runtime().engine.dialect
    metadata = MetaData()
    defaulted = Table(
        "d", metadata, Column("x", Integer, primary_key=True), Column("y", Integer, default=5)
    )
    with pytest.raises(ValueError, match="column defaults"):
        FastQuery(defaulted.insert().values(x=bindparam("x"))).prepare(dialect, {"x": 1})
    if backend.is_postgres:  # SQLite takes a new key from the cursor's lastrowid instead
        serial = Table("s", metadata, Column("x", Integer, primary_key=True), Column("y", Integer))
        with pytest.raises(ValueError, match="implicit RETURNING"):
            FastQuery(serial.insert().values(y=bindparam("y"))).prepare(dialect, {"y": 1})


def test_database_clock_reads_the_server_clock(backend: Backend) -> None:
    if not backend.is_postgres:
        pytest.skip("clock_timestamp() is PostgreSQL's")
    runtime = backend.runtime()
    connection = runtime.engine.raw_connection()
    try:
        server = DatabaseClock().now(connection)
    finally:
        connection.close()
    # Same machine here, so the clocks agree to well within a minute.
    assert abs(server - time.time()) < 60
