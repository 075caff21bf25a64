"""The fast read path: driver errors are wrapped, a closed runtime refuses, statements qualify."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import bindparam, select

from codex_state import LogEntry, LogQuery, StateRuntime
from codex_state.errors import DatabaseError, StateError
from codex_state.fastread import FastQuery, in_list, in_list_params
from codex_state.orm import logs, threads
from tests.conftest import Backend
from tests.test_threads import make_thread


def _hide(runtime: StateRuntime, table: str) -> None:
    """Make `table` missing (renamed: dropping `threads` would need its dependents gone)."""
    with runtime.engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {table} RENAME TO {table}_gone")


def test_driver_error_is_a_database_error_and_the_connection_survives(backend: Backend) -> None:
    runtime = backend.runtime()
    thread = make_thread()
    runtime.upsert_thread(thread)
    runtime.insert_logs([LogEntry(ts=1, level="INFO", target="t", message="m")])
    _hide(runtime, "logs")
    dbapi_error = runtime.engine.dialect.loaded_dbapi.Error
    for read in (lambda: runtime.query_logs(LogQuery()), lambda: runtime.max_log_id()):
        with pytest.raises(DatabaseError) as raised:
            read()
        assert isinstance(raised.value.__cause__, dbapi_error)
    # The failed connection went back to the pool usable (on PostgreSQL: rolled back).
    assert runtime.get_thread(thread.id) == thread
    assert runtime.list_threads(10).items == [thread]


def test_missing_threads_table_is_a_database_error(backend: Backend) -> None:
    runtime = backend.runtime()
    _hide(runtime, "threads")
    with pytest.raises(DatabaseError, match="get_thread failed"):
        runtime.get_thread(uuid.uuid4())
    with pytest.raises(DatabaseError, match="list_threads failed"):
        runtime.list_threads(10)


def test_closed_runtime_refuses_fast_reads(backend: Backend) -> None:
    runtime = backend.runtime()
    runtime.close()
    reads = (
        lambda: runtime.get_thread(uuid.uuid4()),
        lambda: runtime.list_threads(10),
        lambda: runtime.list_thread_ids(10),
        lambda: runtime.query_logs(LogQuery()),
        lambda: runtime.max_log_id(),
    )
    for read in reads:
        with pytest.raises(StateError, match="closed"):
            read()


def test_in_list_binds_one_parameter_per_element(backend: Backend) -> None:
    runtime = backend.runtime()
    runtime.insert_logs(
        [LogEntry(ts=i, level="INFO", target="t", thread_id=f"t{i}") for i in range(4)]
    )
    query = FastQuery(
        select(logs.c.thread_id)
        .where(in_list(logs.c.thread_id, "tid", 2), logs.c.level != "DEBUG")
        .order_by(logs.c.id)
    )
    connection = runtime.engine.raw_connection()
    try:
        rows = query.all(connection, runtime.engine.dialect, in_list_params("tid", ["t3", "t1"]))
    finally:
        connection.close()
    assert rows == [("t1",), ("t3",)]


def test_statements_the_driver_cannot_take_as_compiled_are_refused(backend: Backend) -> None:
    runtime = backend.runtime()
    ids = bindparam("ids", expanding=True)
    expanding = FastQuery(select(threads.c.id).where(threads.c.id.in_(ids)))
    connection = runtime.engine.raw_connection()
    try:
        with pytest.raises(ValueError, match="expanding"):
            expanding.all(connection, runtime.engine.dialect, {"ids": ["a"]})
    finally:
        connection.close()
