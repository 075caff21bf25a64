"""Query-plan guards: every thread page is an ordered index range, never a scan-then-sort.

The statements checked are the ones the runtime really sends (captured from the engine and from
the fast-read cursor), so a change to the query builder cannot slip past. PostgreSQL only
prefers an ordered index walk over a bitmap scan plus sort once the table is big enough and
analysed, hence 20,000 rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

from codex_state import Anchor, SortKey, StateRuntime
from codex_state.repositories.threads import ThreadRepository
from tests.conftest import Backend
from tests.sql_capture import captured_sql
from tests.test_threads import BASE, make_thread

ROWS = 20_000
ANCHOR = Anchor(ts=BASE + timedelta(seconds=ROWS // 3), id=uuid.uuid4())

PAGES: dict[str, Callable[[StateRuntime], object]] = {
    "first page": lambda r: r.list_threads(50),
    "anchor": lambda r: r.list_threads(50, ANCHOR),
    "updated": lambda r: r.list_threads(50, sort_key=SortKey.UPDATED_AT),
    "updated anchor": lambda r: r.list_threads(50, ANCHOR, SortKey.UPDATED_AT),
    "archived": lambda r: r.list_threads(50, archived_only=True),
    "archived anchor": lambda r: r.list_threads(50, ANCHOR, archived_only=True),
    "filters": lambda r: r.list_threads(
        50, ANCHOR, allowed_sources=["cli", "vscode"], model_providers=["test-provider"]
    ),
    "ids": lambda r: r.list_thread_ids(50, ANCHOR, SortKey.UPDATED_AT, ["cli"]),
}


def _seed(runtime: StateRuntime) -> None:
    rows = [
        make_thread(
            offset=n,
            source=("cli", "vscode", "exec")[n % 3],
            archived_at=BASE if n % 5 == 0 else None,
        )
        for n in range(ROWS)
    ]
    runtime.run_in_transaction(lambda s: ThreadRepository(s).upsert_threads(rows), write=True)


def _captured(runtime: StateRuntime) -> AbstractContextManager[list[tuple[str, Any]]]:
    return captured_sql(runtime.engine, lambda statement: "FROM threads" in statement)


def _plans(runtime: StateRuntime) -> dict[str, str]:
    """Each page's statement, explained by the backend."""
    sqlite = runtime.engine.dialect.name == "sqlite"
    sent: dict[str, tuple[str, Any]] = {}
    for name, call in PAGES.items():
        with _captured(runtime) as statements:
            call(runtime)
        assert len(statements) == 1, statements
        sent[name] = statements[0]
    plans = {}
    with runtime.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE" if sqlite else "ANALYZE threads")
        for name, (statement, parameters) in sent.items():
            prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
            rows = conn.exec_driver_sql(prefix + statement, parameters).all()
            plans[name] = "\n".join(str(row[-1]) for row in rows)
    return plans


def test_every_page_is_an_ordered_index_range(backend: Backend) -> None:
    runtime = backend.runtime()
    _seed(runtime)
    for name, plan in _plans(runtime).items():
        if backend.is_sqlite:
            # One SEARCH through a composite index whose order is the page order.
            assert plan.startswith("SEARCH threads USING INDEX ix_cs_threads_archived_"), (
                name,
                plan,
            )
            assert "(archived=?" in plan, (name, plan)
            assert "TEMP B-TREE" not in plan, (name, plan)
            assert "SCAN threads" not in plan, (name, plan)
        else:
            assert "Index Scan" in plan and "Bitmap" not in plan, (name, plan)
            assert "Sort" not in plan, (name, plan)
            assert "Seq Scan" not in plan, (name, plan)
            if "anchor" in name or name in ("filters", "ids"):
                # The keyset bound is an index condition: deep pages do not walk the prefix.
                assert "Index Cond" in plan and "_at <= " in plan, (name, plan)


def test_point_lookups_use_the_primary_key(backend: Backend) -> None:
    runtime = backend.runtime()
    runtime.upsert_thread(make_thread())
    with _captured(runtime) as statements:
        runtime.get_thread(uuid.uuid4())
        runtime.find_rollout_path_by_id(uuid.uuid4(), archived_only=True)
    sqlite = backend.is_sqlite
    with runtime.engine.connect() as conn:
        for statement, parameters in statements:
            prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
            plan = " ".join(
                str(row[-1]) for row in conn.exec_driver_sql(prefix + statement, parameters)
            )
            if sqlite:
                assert "USING INDEX sqlite_autoindex_threads_1 (id=?)" in plan, plan
            else:
                assert "Index" in plan and "Seq Scan" not in plan, plan
