"""`Prepared` statements: compiled once, run through the Session's connection, loud when unfit."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, bindparam, select
from sqlalchemy.orm import Session

from codex_state import DatabaseClock, LogEntry, LogQuery, StateRuntime
from codex_state.errors import DatabaseError, StateError
from codex_state.orm import logs, memory_scope_dirty, threads
from codex_state.statements import Prepared, in_list, in_list_params
from tests.conftest import Backend
from tests.memory_support import SCOPE, add_thread
from tests.test_threads import make_thread


def hide_table(runtime: StateRuntime, table: str) -> None:
    """Make `table` missing (renamed: dropping `threads` would need its dependents gone)."""
    with runtime.engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {table} RENAME TO {table}_gone")


def test_driver_error_is_a_database_error_and_the_connection_survives(backend: Backend) -> None:
    runtime = backend.runtime()
    thread = make_thread()
    runtime.upsert_thread(thread)
    runtime.insert_logs([LogEntry(ts=1, level="INFO", target="t", message="m")])
    hide_table(runtime, "logs")
    dbapi_error = runtime.engine.dialect.loaded_dbapi.Error
    for _ in range(3):  # more than once: every failed connection went back to the pool usable
        for read in (lambda: runtime.query_logs(LogQuery()), lambda: runtime.max_log_id()):
            with pytest.raises(DatabaseError) as raised:
                read()
            assert isinstance(raised.value.__cause__.orig, dbapi_error)  # type: ignore[union-attr]
    assert runtime.get_thread(thread.id) == thread
    assert runtime.list_threads(10).items == [thread]


def test_missing_table_errors_name_the_method(backend: Backend) -> None:
    runtime = backend.runtime()
    thread_id = add_thread(runtime)
    hide_table(runtime, "memory_phase1_jobs")
    with pytest.raises(DatabaseError, match="try_claim_phase1_job failed"):
        runtime.try_claim_phase1_job(thread_id, *SCOPE, uuid.uuid4(), 100, 60)
    hide_table(runtime, "threads")
    with pytest.raises(DatabaseError, match="get_thread failed"):
        runtime.get_thread(uuid.uuid4())
    with pytest.raises(DatabaseError, match="list_threads failed"):
        runtime.list_threads(10)


def test_closed_runtime_refuses_every_call(backend: Backend) -> None:
    runtime = backend.runtime()
    thread_id = add_thread(runtime)
    runtime.close()
    calls = (
        lambda: runtime.get_thread(thread_id),
        lambda: runtime.list_threads(10),
        lambda: runtime.query_logs(LogQuery()),
        lambda: runtime.try_claim_phase1_job(thread_id, *SCOPE, uuid.uuid4(), 100, 60),
        lambda: runtime.mark_memory_scope_dirty(*SCOPE, True),
    )
    for call in calls:
        with pytest.raises(StateError, match="closed"):
            call()
    with pytest.raises(StateError, match="closed"), runtime.session():
        pass


def test_in_list_binds_one_parameter_per_element(runtime: StateRuntime) -> None:
    runtime.insert_logs(
        [LogEntry(ts=i, level="INFO", target="t", thread_id=f"t{i}") for i in range(4)]
    )
    query = Prepared(
        select(logs.c.thread_id)
        .where(in_list(logs.c.thread_id, "tid", 2), logs.c.level != "DEBUG")
        .order_by(logs.c.id)
    )
    with runtime.session() as session:
        rows = query.all(session, in_list_params("tid", ["t3", "t1"]))
    assert [tuple(row) for row in rows] == [("t1",), ("t3",)]


def test_rowcount_judges_dml(runtime: StateRuntime) -> None:
    runtime.mark_memory_scope_dirty(*SCOPE, False)
    clear = Prepared(
        memory_scope_dirty.update()
        .where(memory_scope_dirty.c.dirty == bindparam("p_from"))
        .values(dirty=bindparam("p_to"))
    )

    def flip(session: Session) -> int:
        return clear.rowcount(session, {"p_from": 0, "p_to": 1})

    assert [runtime.run_in_transaction(flip, write=True) for _ in range(2)] == [1, 0]


def test_statements_the_driver_cannot_take_as_compiled_are_refused(backend: Backend) -> None:
    runtime = backend.runtime()
    expanding = Prepared(
        select(threads.c.id).where(threads.c.id.in_(bindparam("ids", expanding=True)))
    )
    metadata = MetaData()
    defaulted = Table(
        "d", metadata, Column("x", Integer, primary_key=True), Column("y", Integer, default=5)
    )
    with_default = Prepared(defaulted.insert().values(x=bindparam("x")))
    with runtime.session() as session:
        with pytest.raises(ValueError, match="expanding"):
            expanding.all(session, {"ids": ["a"]})
        with pytest.raises(ValueError, match="column defaults"):
            with_default.execute(session, {"x": 1})


def test_database_clock_reads_the_server_clock_in_whole_seconds(backend: Backend) -> None:
    if not backend.is_postgres:
        pytest.skip("clock_timestamp() is PostgreSQL's")
    runtime = backend.runtime()
    with runtime.engine.connect() as connection:
        before = time.time()
        server = DatabaseClock().now(connection)
        # Truncated like SQLite's and Python's clocks, never rounded up past the real time.
        floor = connection.exec_driver_sql(
            "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS NUMERIC)"
        ).scalar_one()
    assert server <= float(floor)
    assert abs(server - before) < 60
