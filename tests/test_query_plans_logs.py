"""Query-plan guards: the viewer's tail query and thread filter are index searches, not scans.

The statements checked are the ones `query_logs` really sends (captured from the engine's
cursor events), so a change to how the repository builds SQL cannot slip past.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from codex_state import LogEntry, LogQuery, StateRuntime
from tests.conftest import Backend
from tests.sql_capture import captured_sql

THREADS = [str(uuid.UUID(int=i)) for i in range(1, 201)]
ROWS = 20_000


def fill(runtime: StateRuntime) -> None:
    batch = [
        LogEntry(
            ts=1_770_000_000 + i // 10,
            level="INFO",
            target="codex_core::codex",
            message=f"m{i}",
            thread_id=THREADS[i % len(THREADS)] if i % 10 else None,
        )
        for i in range(ROWS)
    ]
    for start in range(0, ROWS, 2000):
        runtime.insert_logs(batch[start : start + 2000])
    with runtime.engine.begin() as conn:
        conn.execute(text("ANALYZE"))


def plan(runtime: StateRuntime, query: LogQuery) -> str:
    """The database's plan for the SELECT that `query_logs(query)` executes."""
    selects = captured_sql(runtime.engine, lambda sql: sql.lstrip().upper().startswith("SELECT"))
    with selects as captured:
        runtime.query_logs(query)
    (statement, params) = captured[-1]
    explain = "EXPLAIN QUERY PLAN " if runtime.engine.dialect.name == "sqlite" else "EXPLAIN "
    with runtime.engine.connect() as conn:
        rows = conn.exec_driver_sql(explain + statement, params).all()
    return "\n".join(str(row[-1]) for row in rows)


QUERIES = {
    "tail": LogQuery(after_id=ROWS - 300, limit=200),
    "backfill": LogQuery(limit=200, descending=True),
    "thread": LogQuery(thread_ids=(THREADS[3],), limit=200, descending=True),
    "thread_tail": LogQuery(thread_ids=(THREADS[3],), after_id=ROWS - 3000, limit=200),
    "threads_or_threadless": LogQuery(
        thread_ids=(THREADS[3], THREADS[4]), include_threadless=True, limit=200
    ),
}


@pytest.fixture
def filled(shared_backend: Backend) -> StateRuntime:
    runtime = shared_backend.runtime()
    fill(runtime)
    return runtime


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_log_queries_use_an_index(filled: StateRuntime, name: str) -> None:
    shown = plan(filled, QUERIES[name])
    if filled.engine.dialect.name == "sqlite":
        # The page is read in a subquery (aggregated into JSON outside it): the lines about
        # the logs table are the plan of the read.
        lines = [
            line.strip()
            for line in shown.splitlines()
            if line.strip().endswith(" logs") or " logs " in line
        ]
        if name == "backfill":
            # No filter: walking the rowid b-tree backwards and stopping at the limit is ideal.
            assert lines == ["SCAN logs"], shown
        else:
            # "SCAN logs" alone would read every row; SEARCH is a range or point lookup.
            assert "SCAN logs" not in lines, shown
            assert any(line.startswith("SEARCH logs") for line in lines), shown
        if name in ("tail", "thread", "thread_tail"):
            assert "TEMP B-TREE" not in shown, shown  # the index already yields id order
    else:
        assert "Seq Scan" not in shown, shown
        assert "Index" in shown, shown
