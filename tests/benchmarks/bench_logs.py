"""Log inserts, the logging handler and log tails beside sqlite3 and the plain ORM.

Run: `.venv/bin/python -m tests.benchmarks.bench_logs`. `BENCH_LOG_ROWS` scales the query table
(default 1,000,000 rows, filled with raw executemany, then opened with the runtime).

- insert: `insert_logs` of 100k rows in batches of 1,000, each variant into a fresh file; raw is
  `executemany` of the seed's INSERT in BEGIN IMMEDIATE per batch, the plain ORM
  `session.execute(insert(LogRowRecord), list_of_dicts)` per batch.
- tails: `query_logs` newest 200, a thread's newest 200 and 200 after an id; raw runs the
  seed's SELECT and builds the same `LogRow` values, the plain ORM `select(LogRowRecord)`.
- handler: cost per `logger.info` of `StateLogHandler` beside a `NullHandler` (no SQL of its own
  on the calling thread, so no sqlite3 or ORM counterpart).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codex_state import LogEntry, LogQuery, LogRow, StateLogHandler, StateRuntime
from tests.benchmarks.common import (
    ORM,
    PACKAGE,
    RAW,
    Figure,
    fresh_sqlite,
    print_table,
    race,
    race_fresh,
    sqlite_connect,
)
from tests.benchmarks.plain_orm import PlainOrmState, plain_engine

INSERT_ROWS = 100_000
INSERT_BATCH = 1_000
HANDLER_CALLS = 50_000
QUERY_ROWS = int(os.environ.get("BENCH_LOG_ROWS", "1000000"))
THREADS = [str(uuid.UUID(int=i)) for i in range(1, 201)]

INSERT_COLUMNS = (
    "ts",
    "ts_nanos",
    "level",
    "target",
    "message",
    "thread_id",
    "module_path",
    "file",
    "line",
)
_PLACEHOLDERS = ", ".join("?" * len(INSERT_COLUMNS))
INSERT_SQL = f"INSERT INTO logs ({', '.join(INSERT_COLUMNS)}) VALUES ({_PLACEHOLDERS})"
ROW_SQL = "SELECT id, ts, ts_nanos, level, target, message, thread_id, file, line FROM logs"


def log_values(i: int) -> tuple[Any, ...]:
    """The i-th synthetic record in `INSERT_COLUMNS` order; a tenth have no thread."""
    return (
        1_770_000_000 + i // 100,
        (i % 100) * 10_000_000,
        ("INFO", "DEBUG", "WARN", "ERROR", "TRACE")[i % 5],
        "codex_core::codex",
        f"turn {i}: tool call finished in {i % 997} ms",
        THREADS[i % len(THREADS)] if i % 10 else None,
        "codex_core::codex",
        "core/src/codex.rs",
        i % 2000,
    )


def make_entries(count: int) -> list[LogEntry]:
    return [LogEntry(**dict(zip(INSERT_COLUMNS, log_values(i), strict=True))) for i in range(count)]


# ------------------------------------------------------------------------------------- insert


def package_insert(runtime: StateRuntime, batches: list[list[LogEntry]]) -> None:
    """`StateRuntime.insert_logs` per batch."""
    for batch in batches:
        runtime.insert_logs(batch)


def raw_insert(conn: Any, batches: list[list[tuple[Any, ...]]]) -> None:
    """sqlite3: BEGIN IMMEDIATE, `executemany` of the seed's INSERT, COMMIT per batch."""
    for batch in batches:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT_SQL, batch)
        conn.execute("COMMIT")


def orm_insert(orm: PlainOrmState, batches: list[list[LogEntry]]) -> None:
    """Plain ORM: `session.execute(insert(LogRowRecord), dicts)` in a new Session per batch."""
    for batch in batches:
        orm.insert_logs(batch)


def bench_insert() -> Figure:
    """100k rows in batches of 1,000; each variant and round writes a fresh database file."""
    entries = make_entries(INSERT_ROWS)
    batches = [entries[i : i + INSERT_BATCH] for i in range(0, INSERT_ROWS, INSERT_BATCH)]
    # The raw variant gets its tuples ready-made: the package has to read them off LogEntry.
    tuples = [[tuple(getattr(e, c) for c in INSERT_COLUMNS) for e in b] for b in batches]
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        opened: list[Callable[[], None]] = []

        def package(index: int) -> Callable[[], None]:
            path = fresh_sqlite(folder, f"package_{index}.sqlite")
            runtime = StateRuntime.from_url(f"sqlite:///{path}", "bench")
            opened.append(runtime.close)
            return lambda: package_insert(runtime, batches)

        def raw(index: int) -> Callable[[], None]:
            conn = sqlite_connect(fresh_sqlite(folder, f"raw_{index}.sqlite"))
            opened.append(conn.close)
            return lambda: raw_insert(conn, tuples)

        def orm(index: int) -> Callable[[], None]:
            path = fresh_sqlite(folder, f"orm_{index}.sqlite")
            state = PlainOrmState(plain_engine(f"sqlite:///{path}"))
            opened.append(state.close)
            return lambda: orm_insert(state, batches)

        try:
            timings = race_fresh({PACKAGE: package, RAW: raw, ORM: orm}, rounds=3)
        finally:
            for close in opened:
                close()
    return Figure.of(
        f"insert_logs {INSERT_ROWS // 1000}k rows, batches of {INSERT_BATCH:,}", timings
    )


# -------------------------------------------------------------------------------------- tails


def package_query(runtime: StateRuntime, query: LogQuery) -> list[LogRow]:
    """`StateRuntime.query_logs`."""
    return runtime.query_logs(query)


def raw_query(conn: Any, sql: str, params: tuple[Any, ...]) -> list[LogRow]:
    """sqlite3: the seed's SELECT, building the same `LogRow` values."""
    return [
        LogRow(
            id=row[0],
            ts=row[1],
            ts_nanos=row[2],
            level=row[3],
            target=row[4],
            message=row[5],
            thread_id=row[6],
            file=row[7],
            line=row[8],
        )
        for row in conn.execute(sql, params)
    ]


def orm_query(orm: PlainOrmState, query: LogQuery) -> list[LogRow]:
    """Plain ORM: `select(LogRowRecord)` in a new Session, `model_validate` per row."""
    return orm.query_logs(query)


def fill(path: Path, count: int) -> None:
    """`count` rows by raw executemany (far faster than any API), then ANALYZE."""
    conn = sqlite_connect(path)
    chunk = 100_000
    for start in range(0, count, chunk):
        conn.execute("BEGIN")
        conn.executemany(
            INSERT_SQL, [log_values(i) for i in range(start, min(start + chunk, count))]
        )
        conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


def bench_queries() -> list[Figure]:
    figures = []
    with tempfile.TemporaryDirectory() as name:
        path = fresh_sqlite(Path(name), "query.sqlite")
        fill(path, QUERY_ROWS)
        runtime = StateRuntime.from_url(f"sqlite:///{path}", "bench")
        orm = PlainOrmState(plain_engine(f"sqlite:///{path}"))
        conn = sqlite_connect(path)
        after = QUERY_ROWS - 500
        cases: list[tuple[str, LogQuery, str, tuple[Any, ...]]] = [
            (
                "tail: newest 200",
                LogQuery(limit=200, descending=True),
                f"{ROW_SQL} ORDER BY id DESC LIMIT ?",
                (200,),
            ),
            (
                "thread page: newest 200 of one thread",
                LogQuery(thread_ids=(THREADS[7],), limit=200, descending=True),
                f"{ROW_SQL} WHERE (thread_id = ?) ORDER BY id DESC LIMIT ?",
                (THREADS[7], 200),
            ),
            (
                "tail: 200 after an id",
                LogQuery(after_id=after, limit=200),
                f"{ROW_SQL} WHERE id > ? ORDER BY id ASC LIMIT ?",
                (after, 200),
            ),
        ]
        try:
            for label, query, sql, params in cases:
                variants: dict[str, Callable[[], object]] = {
                    PACKAGE: lambda q=query: package_query(runtime, q),  # type: ignore[misc]
                    RAW: lambda s=sql, p=params: raw_query(conn, s, p),  # type: ignore[misc]
                    ORM: lambda q=query: orm_query(orm, q),  # type: ignore[misc]
                }
                results = [work() for work in variants.values()]
                assert all(result == results[0] for result in results), label
                assert len(package_query(runtime, query)) == 200, label
                timings = race(variants, number=40)
                figures.append(Figure.of(f"{label}, {QUERY_ROWS:,} rows", timings))
        finally:
            conn.close()
            orm.close()
            runtime.close()
    return figures


# ------------------------------------------------------------------------------------ handler


def bench_handler() -> None:
    """Cost per logger.info on the calling thread: StateLogHandler vs NullHandler."""
    logger = logging.getLogger("bench.handler")
    logger.propagate = False
    logger.setLevel(logging.INFO)

    def calls() -> None:
        for i in range(HANDLER_CALLS):
            logger.info("turn %d finished in %d ms", i, i % 997)

    def wall(work: Callable[[], object]) -> float:
        start = time.perf_counter()
        work()
        return time.perf_counter() - start

    def cpu(work: Callable[[], object]) -> float:
        start = time.thread_time()
        work()
        return time.thread_time() - start

    null = logging.NullHandler()
    logger.addHandler(null)
    null_time = min(wall(calls) for _ in range(3))
    null_cpu = min(cpu(calls) for _ in range(3))
    logger.removeHandler(null)

    with tempfile.TemporaryDirectory() as name:
        path = fresh_sqlite(Path(name), "handler.sqlite")
        runtime = StateRuntime.from_url(f"sqlite:///{path}", "bench")
        handler = StateLogHandler(runtime, queue_capacity=HANDLER_CALLS * 8)
        logger.addHandler(handler)
        ours_time = min(wall(calls) for _ in range(3))
        ours_cpu = min(cpu(calls) for _ in range(3))
        logger.removeHandler(handler)
        handler.close()
        written = runtime.max_log_id(LogQuery())
        runtime.close()
    print(
        f"\nlogger.info: NullHandler {null_time / HANDLER_CALLS * 1e6:.2f} us/call, "
        f"StateLogHandler {ours_time / HANDLER_CALLS * 1e6:.2f} us/call -> "
        f"{ours_time / null_time:.2f}x the time; {written} rows written, {handler.dropped} "
        f"dropped; calling thread's CPU only (no GIL waits for the writer): "
        f"{ours_cpu / null_cpu:.2f}x"
    )


def main() -> None:
    insert = bench_insert()
    print_table(
        "log insert, SQLite file: best of 3 rounds, whole run; ratio = baseline / package",
        [insert],
    )
    print_table(
        "log tails, SQLite file: best of 5 rounds, per call; ratio = baseline / package",
        bench_queries(),
    )
    bench_handler()


if __name__ == "__main__":
    main()
