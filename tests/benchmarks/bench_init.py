"""`StateRuntime.init` on an existing, up-to-date database, beside raw `sqlite3` doing the same.

Run: `python -m tests.benchmarks.bench_init` (or `pytest tests/benchmarks/bench_init.py -s`).
Target: under 5 ms median and within 5x of raw, imports done.
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from codex_state import StateRuntime, state_db_path


def _median_ms(fn: Callable[[], None], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def raw_open(path: Path) -> None:
    """Connect, set the same pragmas, read the schema version, close."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    conn.execute("SELECT version_num FROM alembic_version").fetchone()
    conn.close()


def runtime_open(home: Path) -> None:
    """`StateRuntime.init` + `close` on a database already at head."""
    StateRuntime.init(home, "openai").close()


def run(rounds: int = 200) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix="bench-init-"))
    StateRuntime.init(home, "openai").close()
    path = state_db_path(home)
    for _ in range(10):  # warm caches and imports
        raw_open(path)
        runtime_open(home)
    raw = _median_ms(lambda: raw_open(path), rounds)
    ours = _median_ms(lambda: runtime_open(home), rounds)
    result = {"raw_ms": raw, "runtime_ms": ours, "ratio": ours / raw}
    print(
        f"init on an up-to-date database: runtime {ours:.2f} ms, raw sqlite3 {raw:.2f} ms, "
        f"ratio {ours / raw:.2f}x (target < 5 ms and < 5x)"
    )
    return result


def test_bench_init() -> None:
    run(rounds=50)


if __name__ == "__main__":
    run()
