"""Backfill of 2,000 synthetic rollouts into a fresh SQLite file, beside extraction alone.

Run: `.venv/bin/python -m tests.benchmarks.bench_backfill` (or with pytest -s).

Extraction alone is `extract_metadata_from_rollout` over every file (the floor: parsing has to
happen anyway). The backfill adds the walk, the lease, one write transaction per batch of 200
and the checkpoints. Prints files per second of both and their ratio (target: at least 0.5).
"""

from __future__ import annotations

import tempfile
import time
from datetime import timedelta
from pathlib import Path

from codex_state import StateRuntime
from codex_state.backfill import backfill_codex_home, find_rollout_files
from codex_state.rollout import extract_metadata_from_rollout
from tests.rollout_files import START, TOOL_SPECS, write_rollout

FILES = 2_000


def _home(folder: Path) -> Path:
    home = folder / "home"
    for n in range(FILES):
        write_rollout(
            home,
            created=START + timedelta(minutes=37 * n),
            archived=n % 10 == 0,
            tools=TOOL_SPECS if n % 4 == 0 else None,
            message=f"Please fix issue {n}",
            tokens=n,
        )
    return home


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        home = _home(folder)
        paths = [rollout.path for rollout in find_rollout_files(home)]
        extract_s = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for path in paths:
                extract_metadata_from_rollout(path, "openai")
            extract_s = min(extract_s, time.perf_counter() - start)
        backfill_s = float("inf")
        for attempt in range(3):
            db = folder / f"state_{attempt}.sqlite"
            with StateRuntime.from_url(f"sqlite:///{db}", "openai") as runtime:
                start = time.perf_counter()
                stats = backfill_codex_home(runtime, home)
                backfill_s = min(backfill_s, time.perf_counter() - start)
            assert stats.upserted == FILES, stats
    print(f"extraction alone: {FILES / extract_s:8.0f} files/s")
    print(f"backfill:         {FILES / backfill_s:8.0f} files/s")
    print(f"ratio {extract_s / backfill_s:5.2f}  (target >= 0.5)")


def test_bench_backfill() -> None:
    main()


if __name__ == "__main__":
    main()
