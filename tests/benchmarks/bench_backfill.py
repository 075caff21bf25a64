"""Backfill of 2,000 synthetic rollouts into a fresh SQLite file, beside sqlite3 and the plain ORM.

Run: `.venv/bin/python -m tests.benchmarks.bench_backfill`.

Every variant walks the same files (`find_rollout_files`) and extracts each with
`extract_metadata_from_rollout`, then writes batches of 200 in one transaction each: the package
is `backfill_codex_home` (plus its lease); raw is sqlite3 running the seed's thread upsert and
tool insert with `executemany` and the seed's checkpoint UPDATE in BEGIN IMMEDIATE; the plain ORM
is a Session per batch with an ORM bulk upsert (`session.execute(upsert, list_of_dicts)`). The
stored threads and tools are checked equal. Extraction alone (the parsing that has to happen
anyway) is printed as the floor, with the package's share of it (target: at least 0.5).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from codex_state import StateRuntime, ThreadMetadata
from codex_state.backfill import RolloutFile, backfill_codex_home, find_rollout_files
from codex_state.rollout import extract_metadata_from_rollout
from tests.benchmarks.common import (
    ORM,
    PACKAGE,
    RAW,
    STORED_THREAD_COLUMNS,
    Figure,
    Timing,
    fresh_sqlite,
    print_table,
    race_fresh,
    sqlite_connect,
    thread_values,
)
from tests.benchmarks.plain_orm import PlainOrmState, plain_engine
from tests.rollout_files import START, TOOL_SPECS, write_rollout

FILES = 2_000
BATCH = 200
ROUNDS = 3

UPSERT_SQL = (
    f"INSERT INTO threads ({', '.join(STORED_THREAD_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(STORED_THREAD_COLUMNS))})"
    " ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in STORED_THREAD_COLUMNS[1:])
)
TOOLS_SQL = (
    "INSERT INTO thread_dynamic_tools (thread_id, position, name, description, input_schema)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT(thread_id, position) DO NOTHING"
)
RUNNING_SQL = "UPDATE backfill_state SET status = 'running', updated_at = ? WHERE id = 1"
CHECKPOINT_SQL = (
    "UPDATE backfill_state SET status = 'running', last_watermark = ?, updated_at = ? WHERE id = 1"
)
COMPLETE_SQL = (
    "UPDATE backfill_state SET status = 'complete', last_watermark = COALESCE(?, last_watermark),"
    " last_success_at = ?, updated_at = ? WHERE id = 1"
)

Tools = list[tuple[Any, Sequence[Any]]]


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


def extract(batch: Sequence[RolloutFile]) -> tuple[list[ThreadMetadata], Tools]:
    """What every backfill does per file: extraction, archived_at from the mtime if archived."""
    threads: list[ThreadMetadata] = []
    tools: Tools = []
    for rollout in batch:
        outcome = extract_metadata_from_rollout(rollout.path, "openai")
        metadata = outcome.metadata
        if rollout.archived and metadata.archived_at is None:
            metadata = metadata.model_copy(update={"archived_at": metadata.updated_at})
        threads.append(metadata)
        if outcome.dynamic_tools:
            tools.append((metadata.id, outcome.dynamic_tools))
    return threads, tools


def extraction_alone(files: Sequence[RolloutFile]) -> None:
    """`extract_metadata_from_rollout` on every file: the floor."""
    extract(files)


def package_backfill(runtime: StateRuntime, home: Path) -> None:
    """`backfill_codex_home` (walk, lease, extraction, a transaction and checkpoint per batch)."""
    stats = backfill_codex_home(runtime, home)
    assert stats.upserted == FILES, stats


def raw_backfill(conn: Any, home: Path) -> None:
    """sqlite3: the seed's upsert, tool insert and checkpoint per batch in BEGIN IMMEDIATE."""
    files = find_rollout_files(home)
    conn.execute(RUNNING_SQL, (int(time.time()),))
    for start in range(0, len(files), BATCH):
        batch = files[start : start + BATCH]
        threads, tools = extract(batch)
        tool_rows = [
            (str(thread_id), position, t.name, t.description, _schema(t.input_schema))
            for thread_id, specs in tools
            for position, t in enumerate(specs)
        ]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(UPSERT_SQL, [thread_values(thread) for thread in threads])
        conn.executemany(TOOLS_SQL, tool_rows)
        conn.execute(CHECKPOINT_SQL, (batch[-1].watermark, int(time.time())))
        conn.execute("COMMIT")
    now = int(time.time())
    conn.execute(COMPLETE_SQL, (files[-1].watermark, now, now))


def orm_backfill(orm: PlainOrmState, home: Path) -> None:
    """Plain ORM: a Session per batch with a bulk upsert, a bulk tool insert, the checkpoint."""
    files = find_rollout_files(home)
    orm.mark_backfill_running()
    for start in range(0, len(files), BATCH):
        batch = files[start : start + BATCH]
        threads, tools = extract(batch)
        orm.write_backfill_batch(threads, tools, batch[-1].watermark)
    orm.mark_backfill_complete(files[-1].watermark)


def _schema(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _stored(path: Path) -> tuple[list[Any], list[Any]]:
    conn = sqlite_connect(path)
    try:
        threads = conn.execute("SELECT * FROM threads ORDER BY id").fetchall()
        tools = conn.execute("SELECT * FROM thread_dynamic_tools ORDER BY 1, 2").fetchall()
    finally:
        conn.close()
    return threads, tools


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        home = _home(folder)
        files = find_rollout_files(home)
        databases: dict[str, list[Path]] = {PACKAGE: [], RAW: [], ORM: []}
        opened: list[Callable[[], None]] = []

        def fresh(variant: str, index: int) -> Path:
            path = fresh_sqlite(folder, f"{variant.replace(' ', '_')}_{index}.sqlite")
            databases[variant].append(path)
            return path

        def package(index: int) -> Callable[[], None]:
            runtime = StateRuntime.from_url(f"sqlite:///{fresh(PACKAGE, index)}", "openai")
            opened.append(runtime.close)
            return lambda: package_backfill(runtime, home)

        def raw(index: int) -> Callable[[], None]:
            conn = sqlite_connect(fresh(RAW, index))
            opened.append(conn.close)
            return lambda: raw_backfill(conn, home)

        def orm(index: int) -> Callable[[], None]:
            state = PlainOrmState(plain_engine(f"sqlite:///{fresh(ORM, index)}"))
            opened.append(state.close)
            return lambda: orm_backfill(state, home)

        def floor(_index: int) -> Callable[[], None]:
            return lambda: extraction_alone(files)

        try:
            timings = race_fresh(
                {PACKAGE: package, RAW: raw, ORM: orm, "floor": floor}, rounds=ROUNDS
            )
        finally:
            for close in opened:
                close()
        stored = {variant: _stored(paths[0]) for variant, paths in databases.items()}
        # updated_at of the backfill_state differs, the threads and tools must not.
        assert stored[PACKAGE] == stored[RAW] == stored[ORM], "variants stored different rows"
        assert len(stored[PACKAGE][0]) == FILES
    title = (
        f"backfill of {FILES:,} rollouts, batches of {BATCH}, SQLite file: best of {ROUNDS} runs;"
        " ratio = baseline / package"
    )
    print_table(title, [Figure.of("backfill_codex_home (whole run)", timings)])
    extraction: Timing = timings["floor"]
    package_s = timings[PACKAGE].best
    print(
        f"  extraction alone {FILES / extraction.best:,.0f} files/s, package backfill "
        f"{FILES / package_s:,.0f} files/s: {extraction.best / package_s:.2f} of the floor "
        "(target >= 0.5)"
    )


if __name__ == "__main__":
    main()
