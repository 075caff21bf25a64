"""Log hot paths beside the standard library doing the same work; prints ratios.

Run: `python tests/benchmarks/bench_logs.py` (or `pytest -s tests/benchmarks/bench_logs.py`).
`BENCH_LOG_ROWS` scales the query table (default 1,000,000 rows).
Targets: insert_logs >= 0.8x of sqlite3.executemany; handler < 2x a NullHandler per call;
query_logs within 1.5x of sqlite3 running the same SQL.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import TypeAdapter

from codex_state import LogEntry, LogQuery, LogRow, StateRuntime
from codex_state.logging import StateLogHandler
from codex_state.repositories.logs import INSERT_COLUMNS

INSERT_ROWS = 100_000
INSERT_BATCH = 1_000
HANDLER_CALLS = 50_000
QUERY_ROWS = int(os.environ.get("BENCH_LOG_ROWS", "1000000"))
ROWS = TypeAdapter(list[LogRow])
ROW_FIELDS = tuple(LogRow.model_fields)
THREADS = [str(uuid.UUID(int=i)) for i in range(1, 201)]
ROW_SQL = "SELECT id, ts, ts_nanos, level, target, message, thread_id, file, line FROM logs"
_PLACEHOLDERS = ", ".join("?" * len(INSERT_COLUMNS))
INSERT_SQL = f"INSERT INTO logs ({', '.join(INSERT_COLUMNS)}) VALUES ({_PLACEHOLDERS})"


def make_entries(count: int) -> list[LogEntry]:
    base = 1_770_000_000
    return [
        LogEntry(
            ts=base + i // 100,
            ts_nanos=(i % 100) * 10_000_000,
            level=("INFO", "DEBUG", "WARN", "ERROR", "TRACE")[i % 5],
            target="codex_core::codex",
            message=f"turn {i}: tool call finished in {i % 997} ms",
            thread_id=THREADS[i % len(THREADS)] if i % 10 else None,
            module_path="codex_core::codex",
            file="core/src/codex.rs",
            line=i % 2000,
        )
        for i in range(count)
    ]


@contextmanager
def fresh_db(name: str) -> Iterator[Path]:
    """A migrated, empty state database file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        StateRuntime.from_url(f"sqlite:///{path}", "bench").close()
        yield path


def raw_connection(path: Path) -> sqlite3.Connection:
    """A stdlib connection with the pragmas the package uses (WAL, synchronous NORMAL)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def best_of(repeat: int, work: Callable[[], object]) -> float:
    return min(timed(work) for _ in range(repeat))


def bench_insert() -> float:
    """insert_logs: 100k rows in batches of 1,000 vs sqlite3.executemany of the same rows."""
    entries = make_entries(INSERT_ROWS)
    batches = [entries[i : i + INSERT_BATCH] for i in range(0, INSERT_ROWS, INSERT_BATCH)]
    tuples = [[tuple(getattr(e, c) for c in INSERT_COLUMNS) for e in b] for b in batches]

    def raw(path: Path) -> None:
        conn = raw_connection(path)
        for batch in tuples:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT_SQL, batch)
            conn.execute("COMMIT")
        conn.close()

    def ours(path: Path) -> None:
        runtime = StateRuntime.from_url(f"sqlite:///{path}", "bench")
        for batch in batches:
            runtime.insert_logs(batch)
        runtime.close()

    raw_times, our_times = [], []
    for _ in range(3):
        with fresh_db("raw.sqlite") as path:
            raw_times.append(timed(lambda p=path: raw(p)))  # type: ignore[misc]
        with fresh_db("ours.sqlite") as path:
            our_times.append(timed(lambda p=path: ours(p)))  # type: ignore[misc]
    ratio = min(raw_times) / min(our_times)
    print(
        f"insert_logs 100k/1k batches: sqlite3 {min(raw_times) * 1e3:.0f} ms, "
        f"codex_state {min(our_times) * 1e3:.0f} ms -> {ratio:.2f}x of raw (target >= 0.8x)"
    )
    return ratio


def bench_handler() -> float:
    """Cost per logger.info on the calling thread: StateLogHandler vs NullHandler."""
    logger = logging.getLogger("bench.handler")
    logger.propagate = False
    logger.setLevel(logging.INFO)

    def calls() -> None:
        for i in range(HANDLER_CALLS):
            logger.info("turn %d finished in %d ms", i, i % 997)

    def cpu(work: Callable[[], object]) -> float:
        start = time.thread_time()
        work()
        return time.thread_time() - start

    null = logging.NullHandler()
    logger.addHandler(null)
    null_time = best_of(3, calls)
    null_cpu = min(cpu(calls) for _ in range(3))
    logger.removeHandler(null)

    with fresh_db("handler.sqlite") as path:
        runtime = StateRuntime.from_url(f"sqlite:///{path}", "bench")
        handler = StateLogHandler(runtime, queue_capacity=HANDLER_CALLS * 8)
        logger.addHandler(handler)
        ours_time = best_of(3, calls)
        ours_cpu = min(cpu(calls) for _ in range(3))
        logger.removeHandler(handler)
        handler.close()
        written = runtime.max_log_id(LogQuery())
        runtime.close()
    ratio = ours_time / null_time
    print(
        f"logger.info: NullHandler {null_time / HANDLER_CALLS * 1e6:.2f} us/call, "
        f"StateLogHandler {ours_time / HANDLER_CALLS * 1e6:.2f} us/call -> {ratio:.2f}x "
        f"(target < 2x); {written} rows written, {handler.dropped} dropped; calling thread's "
        f"CPU only (no GIL waits for the writer): {ours_cpu / null_cpu:.2f}x"
    )
    return ratio


def fill(path: Path, count: int) -> None:
    conn = raw_connection(path)
    chunk = 100_000
    for start in range(0, count, chunk):
        rows = [
            tuple(getattr(e, c) for c in INSERT_COLUMNS)
            for e in make_entries(min(chunk, count - start))
        ]
        conn.execute("BEGIN")
        conn.executemany(INSERT_SQL, rows)
        conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


def to_rows(cursor: sqlite3.Cursor) -> list[LogRow]:
    return ROWS.validate_python([dict(zip(ROW_FIELDS, row, strict=True)) for row in cursor])


def bench_queries() -> dict[str, float]:
    """query_logs tail (after_id, limit 200) and a thread page vs sqlite3 with the same SQL."""
    ratios: dict[str, float] = {}
    with fresh_db("query.sqlite") as path:
        fill(path, QUERY_ROWS)
        runtime = StateRuntime.from_url(f"sqlite:///{path}", "bench")
        conn = raw_connection(path)
        after = QUERY_ROWS - 500
        cases: list[tuple[str, LogQuery, str, tuple[object, ...]]] = [
            (
                "tail after_id limit 200",
                LogQuery(after_id=after, limit=200),
                f"{ROW_SQL} WHERE id > ? ORDER BY id ASC LIMIT ?",
                (after, 200),
            ),
            (
                "thread page limit 200 desc",
                LogQuery(thread_ids=(THREADS[7],), limit=200, descending=True),
                f"{ROW_SQL} WHERE thread_id IN (?) ORDER BY id DESC LIMIT ?",
                (THREADS[7], 200),
            ),
        ]
        for name, query, sql, params in cases:
            assert len(runtime.query_logs(query)) == len(conn.execute(sql, params).fetchall())
            raw = best_of(200, lambda s=sql, p=params: conn.execute(s, p).fetchall())  # type: ignore[misc]
            # The API returns validated pydantic rows; this shows what that alone costs.
            raw_rows = best_of(200, lambda s=sql, p=params: to_rows(conn.execute(s, p)))  # type: ignore[misc]
            ours = best_of(200, lambda q=query: runtime.query_logs(q))  # type: ignore[misc]
            ratios[name] = ours / raw
            print(
                f"query_logs {name} at {QUERY_ROWS:,} rows: sqlite3 {raw * 1e6:.0f} us, "
                f"codex_state {ours * 1e6:.0f} us -> {ours / raw:.2f}x (target within 1.5x); "
                f"sqlite3 + LogRow validation {raw_rows * 1e6:.0f} us -> {ours / raw_rows:.2f}x"
            )
        conn.close()
        runtime.close()
    return ratios


def test_bench_insert() -> None:
    bench_insert()


def test_bench_handler() -> None:
    bench_handler()


def test_bench_queries() -> None:
    bench_queries()


if __name__ == "__main__":
    bench_insert()
    bench_handler()
    bench_queries()
