"""Thread reads beside the standard library's sqlite3 running the same SQL.

Run: `.venv/bin/python -m tests.benchmarks.bench_threads` (or with pytest -s).

For 1,000 and 200,000 threads in a SQLite file, times `list_threads(50)` (a first page and a
page deep in the table) and `get_thread`, and a baseline that sends the very statements the
runtime sent (captured from its cursor) through `sqlite3`, as the one autocommit statement
the runtime runs too, and builds the same pydantic values with the same row conversion. Prints
each ratio (target: at most 1.5) and the 200k/1k ratio of a page (target: at most 1.2).
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from codex_state import Anchor, StateRuntime, ThreadMetadata, ThreadsPage
from codex_state.repositories.threads import ThreadRepository, _to_metadata
from tests.sql_capture import captured_sql

BASE = datetime(2025, 1, 1, tzinfo=UTC)
SIZES = (1_000, 200_000)
PAGE = 50


def _thread(n: int) -> ThreadMetadata:
    return ThreadMetadata(
        id=uuid.uuid4(),
        rollout_path=Path(f"/home/u/.codex/sessions/2025/01/01/rollout-{n}.jsonl"),
        created_at=BASE + timedelta(seconds=n),
        updated_at=BASE + timedelta(seconds=n + 30),
        source=("cli", "vscode", "exec")[n % 3],
        model_provider="openai",
        cwd=Path("/home/u/project"),
        cli_version="0.99.0",
        title=f"Fix the flaky test number {n}",
        tokens_used=n * 10,
        first_user_message=f"Fix the flaky test number {n}",
        git_sha="0123456789abcdef",
        git_branch="main",
        git_origin_url="https://example.com/repo.git",
    )


def _best(work: Callable[[], object], repeat: int = 7, number: int = 200) -> float:
    """Best mean seconds per call over `repeat` runs of `number` calls."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            work()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def _captured_sql(runtime: StateRuntime, call: Callable[[], object]) -> tuple[str, Any]:
    with captured_sql(runtime.engine, lambda statement: "FROM threads" in statement) as sent:
        call()
    assert len(sent) == 1
    return sent[0]


def _raw_page(conn: sqlite3.Connection, sql: str, params: Any) -> ThreadsPage:
    rows = conn.execute(sql, params).fetchall()
    items = [_to_metadata(row) for row in rows[:PAGE]]
    anchor = None
    if len(rows) > PAGE:
        anchor = Anchor(ts=items[-1].created_at, id=items[-1].id)
    return ThreadsPage(items=items, next_anchor=anchor, num_scanned_rows=len(rows))


def _raw_get(conn: sqlite3.Connection, sql: str, params: Any) -> ThreadMetadata | None:
    row = conn.execute(sql, params).fetchone()
    return None if row is None else _to_metadata(row)


def bench(size: int, folder: Path) -> dict[str, float]:
    path = folder / f"threads_{size}.sqlite"
    runtime = StateRuntime.from_url(f"sqlite:///{path}", "openai")
    threads = [_thread(n) for n in range(size)]
    for start in range(0, size, 10_000):
        chunk = threads[start : start + 10_000]
        runtime._write("seed", lambda s, chunk=chunk: ThreadRepository(s).upsert_many(chunk))
    middle = threads[size // 2]
    deep = Anchor(ts=middle.created_at, id=middle.id)
    target = threads[size // 3].id

    calls: dict[str, tuple[Callable[[], object], Callable[[sqlite3.Connection, str, Any], object]]]
    calls = {
        "first page": (lambda: runtime.list_threads(PAGE), _raw_page),
        "deep page": (lambda: runtime.list_threads(PAGE, deep), _raw_page),
        "get_thread": (lambda: runtime.get_thread(target), _raw_get),
    }
    raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    raw.execute("PRAGMA busy_timeout = 5000")
    raw.execute("PRAGMA foreign_keys = ON")
    raw.execute("PRAGMA synchronous = NORMAL")
    results: dict[str, float] = {}
    try:
        for name, (ours, baseline) in calls.items():
            sql, params = _captured_sql(runtime, ours)
            assert baseline(raw, sql, params) == ours()  # the same values, or the race is unfair
            ours_s = _best(ours)
            raw_s = _best(
                lambda baseline=baseline, sql=sql, params=params: baseline(raw, sql, params)
            )
            results[name] = ours_s
            print(
                f"{size:>8,} threads  {name:<11} ours {ours_s * 1e6:8.1f} us"
                f"   sqlite3 {raw_s * 1e6:8.1f} us   ratio {ours_s / raw_s:5.2f}  (target <= 1.5)"
            )
    finally:
        raw.close()
        runtime.close()
    return results


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        timings = {size: bench(size, Path(folder)) for size in SIZES}
    small, large = timings[SIZES[0]], timings[SIZES[-1]]
    for name in ("first page", "deep page", "get_thread"):
        print(
            f"{name:<11} {SIZES[-1]:,} vs {SIZES[0]:,} threads: ratio "
            f"{large[name] / small[name]:5.2f}  (target <= 1.2 for pages)"
        )


def test_bench_threads() -> None:
    main()


if __name__ == "__main__":
    main()
