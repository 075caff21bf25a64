"""Incremental sync of a 2,000-file home, beside a backfill of only the new files and a re-index.

Run: `.venv/bin/python -m tests.benchmarks.bench_sync`.

The home is the backfill benchmark's, 2,000 synthetic rollouts (a tenth archived, a quarter with
dynamic tools), in two sizes: as written (about 2 KB each, so reading a file costs little
beside opening it) and padded with 40 assistant messages of about 1 KB (about 45 KB each,
nearer a short real session; the six real ones of February 2026 average 300 KB). The home is
synced once into a SQLite file; each round copies that database, adds 10 new rollouts (of the
same size) to the home and times:

- `sync 10 new of 2,010`: `sync_codex_home` on the copy (stats every file, loads the records in
  one query, reads the 10 new files);
- `backfill of the 10 alone`: `backfill_codex_home` of a home holding only those 10 files into a
  fresh database (the floor: the same reads and writes, without the 2,000 others);
- `reindex of 2,010`: `sync_codex_home(reindex=True)`, which reads every file (what
  `--reindex` costs, and what a backfill that cannot tell what changed has to do);
- `sync, nothing changed`: the stats and the one query, no write.

Printed, never asserted. Targets (issue 9): the sync within 2x of the backfill of the 10 alone,
and at least 50x faster than the re-index.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from codex_state import StateRuntime
from codex_state.backfill import backfill_codex_home
from codex_state.sync import sync_codex_home
from tests.benchmarks.common import Timing, fresh_sqlite, race, race_fresh
from tests.rollout_files import START, TOOL_SPECS, write_rollout

FILES = 2_000
NEW = 10
ROUNDS = 3
PADDING = 40


def _rollout(home: Path, n: int, padding: int, *, archived: bool | None = None) -> Path:
    path = write_rollout(
        home,
        created=START + timedelta(minutes=37 * n),
        archived=n % 10 == 0 if archived is None else archived,
        tools=TOOL_SPECS if n % 4 == 0 else None,
        message=f"Please fix issue {n}",
        tokens=n,
    )
    if padding:
        mtime = path.stat().st_mtime_ns
        text = f"Here is what I changed for issue {n}, and why. " * 20
        content = [{"type": "output_text", "text": text}]
        item = {"type": "message", "role": "assistant", "content": content}
        line = json.dumps(
            {"timestamp": "2026-02-10T10:00:00.000Z", "type": "response_item", "payload": item}
        )
        with path.open("a") as file:
            file.write((line + "\n") * padding)
        os.utime(path, ns=(mtime, mtime))
    return path


def _duration(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f} ms" if seconds < 1 else f"{seconds:,.2f} s"


def main() -> None:
    for padding in (0, PADDING):
        _run(padding)


def _run(padding: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        home = folder / "home"
        for n in range(FILES):
            _rollout(home, n, padding)
        size = sum(path.stat().st_size for path in home.rglob("rollout-*")) / FILES
        base = fresh_sqlite(folder, "base.sqlite")
        with StateRuntime.from_url(f"sqlite:///{base}", "bench") as runtime:
            sync_codex_home(runtime, home)
        opened: list[StateRuntime] = []
        added: dict[int, list[Path]] = {}

        def open_copy(name: str) -> StateRuntime:
            path = folder / name
            shutil.copy(base, path)
            runtime = StateRuntime.from_url(f"sqlite:///{path}", "bench")
            opened.append(runtime)
            return runtime

        def incremental(index: int) -> Callable[[], object]:
            for previous in added.get(index - 1, []):
                previous.unlink()
            added[index] = [
                _rollout(home, FILES + index * NEW + n, padding, archived=False) for n in range(NEW)
            ]
            runtime = open_copy(f"incremental{index}.sqlite")
            return lambda: sync_codex_home(runtime, home)

        def alone(index: int) -> Callable[[], object]:
            small = folder / f"alone{index}"
            for path in added[index]:
                target = small / path.relative_to(home)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
            database = fresh_sqlite(folder, f"alone{index}.sqlite")
            runtime = StateRuntime.from_url(f"sqlite:///{database}", "bench")
            opened.append(runtime)
            return lambda: backfill_codex_home(runtime, small)

        def reindex(index: int) -> Callable[[], object]:
            runtime = open_copy(f"reindex{index}.sqlite")
            return lambda: sync_codex_home(runtime, home, reindex=True)

        timings = race_fresh(
            {"sync": incremental, "alone": alone, "reindex": reindex}, rounds=ROUNDS
        )
        for runtime in opened:
            runtime.close()
        for previous in added.get(ROUNDS - 1, []):
            previous.unlink()
        with StateRuntime.from_url(f"sqlite:///{base}", "bench") as runtime:
            unchanged = race({"noop": lambda: sync_codex_home(runtime, home)}, rounds=5, number=5)

    sync, floor, full = timings["sync"], timings["alone"], timings["reindex"]
    rows: list[tuple[str, Timing, str]] = [
        (f"sync {NEW} new of {FILES + NEW:,}", sync, ""),
        (
            f"backfill of the {NEW} alone",
            floor,
            f"sync / this = {sync.best / floor.best:.2f}x (target <= 2)",
        ),
        (
            f"reindex of {FILES + NEW:,}",
            full,
            f"this / sync = {full.best / sync.best:.0f}x (target >= 50)",
        ),
        ("sync, nothing changed", unchanged["noop"], ""),
    ]
    print(
        f"\nIncremental sync, SQLite file, rollouts of {size / 1024:,.1f} KB on average,"
        f" best of {ROUNDS} (median)"
    )
    width = max(len(name) for name, _, _ in rows)
    for name, timing, note in rows:
        times = f"{_duration(timing.best):>10} ({_duration(timing.median)})"
        print(f"{name:<{width}}  {times}  {note}".rstrip())


if __name__ == "__main__":
    main()
