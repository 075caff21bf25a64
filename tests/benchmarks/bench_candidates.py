"""Phase-1 candidate selection at 200,000 threads and 100,000 jobs (target: < 5 ms a call).

Run: `.venv/bin/python -m tests.benchmarks.bench_candidates` (PostgreSQL too when
`CODEX_STATE_BENCH_PG_URL` or `CODEX_STATE_TEST_PG_URL` is set).

The data is `tests.candidate_data` (Codex's steady state: the newest 100,000 threads have a
`user` job, 90% of them up to date). Each figure is `list_phase1_candidates` as Codex's start-up
would call it (30 days, cli/vscode, 64 candidates), best and median of 20 calls, beside the raw
driver running the same SQL with the same parameters (so the difference is the package's
overhead), and, for scale, Codex's own way at the seed: `list_threads(5000, UPDATED_AT,
[cli, vscode])` alone, before any of its claims. Printed, never asserted.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codex_state import ManualClock, SortKey, StateRuntime
from tests import candidate_data
from tests.benchmarks.common import PG_NOTE, PG_SKIPPED, PG_URL, pg_schema
from tests.sql_capture import captured_sql

CALLS = 20
MONTH = 30 * 86_400
SOURCES = ["cli", "vscode"]


def _variants(runtime: StateRuntime) -> dict[str, Callable[[], object]]:
    def select(scope: tuple[str, str | None], **more: Any) -> Callable[[], object]:
        arguments: dict[str, Any] = {
            "max_age_seconds": MONTH,
            "sources": SOURCES,
            "limit": 64,
            "lease_seconds": candidate_data.LEASE,
        }
        arguments.update(more)
        return lambda: runtime.list_phase1_candidates(*scope, **arguments)

    return {
        "user scope, 64 candidates": select(("user", "user")),
        "user scope, 64, scan_limit=5000 (Codex's window)": select(
            ("user", "user"), scan_limit=5000
        ),
        "each thread's cwd scope (no jobs yet), 64": select(("cwd", None)),
        "user scope, every candidate in 30 days (full walk)": select(
            ("user", "user"), limit=1_000_000
        ),
    }


def _time(call: Callable[[], object]) -> tuple[float, float]:
    samples = []
    for _ in range(CALLS):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return min(samples), statistics.median(samples)


def _raw(runtime: StateRuntime, call: Callable[[], object]) -> Callable[[], object]:
    """The statement `call` sends, run on the raw driver connection with the same parameters."""
    with captured_sql(runtime.engine, lambda s: "FROM threads" in s) as statements:
        call()
    ((statement, parameters),) = statements
    raw = runtime.engine.raw_connection()
    driver: Any = raw.driver_connection

    def run() -> object:
        cursor = driver.cursor()
        cursor.execute(statement, parameters)
        rows = cursor.fetchall()
        cursor.close()
        if runtime.engine.dialect.name == "postgresql":
            driver.rollback()
        return rows

    return run


def bench(name: str, url: str) -> None:
    with StateRuntime.from_url(url, "bench", clock=ManualClock(candidate_data.NOW)) as runtime:
        began = time.perf_counter()
        candidate_data.seed(runtime.engine)
        print(
            f"\n{name}: {candidate_data.THREADS:,} threads, {candidate_data.JOBS:,} jobs"
            f" (seeded in {time.perf_counter() - began:.1f} s); best / median of {CALLS} calls"
        )
        for label, call in _variants(runtime).items():
            found = call()
            best, median = _time(call)
            raw_best, raw_median = _time(_raw(runtime, call))
            count = len(found) if isinstance(found, list) else 0
            print(
                f"  {label}: {best * 1e3:.2f} / {median * 1e3:.2f} ms ({count:,} found);"
                f" raw driver {raw_best * 1e3:.2f} / {raw_median * 1e3:.2f} ms"
            )
        codex = lambda: runtime.list_threads(  # noqa: E731
            5000, sort_key=SortKey.UPDATED_AT, allowed_sources=SOURCES
        )
        best, median = _time(codex)
        print(
            f"  for scale, the seed's selection step alone (list_threads(5000), no claims):"
            f" {best * 1e3:.2f} / {median * 1e3:.2f} ms"
        )


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        bench("SQLite file", f"sqlite:///{Path(folder) / 'candidates.sqlite'}")
    if PG_URL:
        with pg_schema(PG_URL) as url:
            bench(f"PostgreSQL ({PG_NOTE})", url)
    else:
        print(PG_SKIPPED)


if __name__ == "__main__":
    main()
