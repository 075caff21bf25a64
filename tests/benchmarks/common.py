"""What every benchmark module shares: timing, the results table, databases and seed data.

Each figure is printed beside the same work done by the raw driver (`sqlite3` or `psycopg`
running the same SQL and building the same pydantic values) and by the plain SQLAlchemy ORM
implementation in `tests.benchmarks.plain_orm`, as `ratio = baseline_time / package_time`:
1.0 is as fast as the baseline, higher is faster than it, lower is slower.

Only the public API of `codex_state` is used (`StateRuntime`, its `engine`, the pydantic
values) plus the declarative tables of `codex_state.orm`; the baselines build their own SQL and
rows here, so the benchmarks keep working while the package internals change.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, make_url, text

from codex_state import StateRuntime, ThreadMetadata

PG_URL = os.environ.get("CODEX_STATE_BENCH_PG_URL") or os.environ.get("CODEX_STATE_TEST_PG_URL")
"""PostgreSQL figures run when set, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test."""

PG_SKIPPED = "PostgreSQL skipped: set CODEX_STATE_BENCH_PG_URL (or CODEX_STATE_TEST_PG_URL)"

# ------------------------------------------------------------------------------------ timing


def per_call(work: Callable[[], object], number: int) -> float:
    """Mean seconds per call of `number` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(number):
        work()
    return (time.perf_counter() - start) / number


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one variant: the best and the median of its rounds."""

    best: float
    median: float


def race(
    variants: Mapping[str, Callable[[], object]], *, rounds: int = 5, number: int = 100
) -> dict[str, Timing]:
    """Time each variant, rounds interleaved so load from other processes hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, work in variants.items():
            samples[name].append(per_call(work, number))
    return {
        name: Timing(min(values), statistics.median(values)) for name, values in samples.items()
    }


def race_fresh(
    variants: Mapping[str, Callable[[int], Callable[[], object]]], *, rounds: int = 3
) -> dict[str, Timing]:
    """Like `race` for work that needs fresh state: `setup(round)` returns one timed call."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for index in range(rounds):
        for name, setup in variants.items():
            work = setup(index)
            start = time.perf_counter()
            work()
            samples[name].append(time.perf_counter() - start)
    return {
        name: Timing(min(values), statistics.median(values)) for name, values in samples.items()
    }


# ------------------------------------------------------------------------------------- table

PACKAGE = "package"
RAW = "raw"
ORM = "plain ORM"


@dataclass(frozen=True)
class Figure:
    """One line of a table: the package and its two baselines doing the same work."""

    name: str
    package: Timing
    raw: Timing
    orm: Timing | None = None

    @classmethod
    def of(cls, name: str, timings: Mapping[str, Timing]) -> Figure:
        return cls(name, timings[PACKAGE], timings[RAW], timings.get(ORM))


def _duration(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:,.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:,.2f} ms"
    return f"{seconds:,.2f} s"


def print_table(title: str, figures: Sequence[Figure], *, raw: str = "sqlite3") -> None:
    """Best-of-rounds times (median in the note) and ratio = baseline / package per figure."""
    width = max(len(figure.name) for figure in figures)
    print(f"\n{title}")
    print(
        f"{'':<{width}}  {'package':>11}  {raw:>11}  {'plain ORM':>11}"
        f"  {raw + '/pkg':>12}  {'ORM/pkg':>8}  medians (pkg / {raw} / ORM)"
    )
    for figure in figures:
        orm_best = "-" if figure.orm is None else _duration(figure.orm.best)
        orm_ratio = "-" if figure.orm is None else f"{figure.orm.best / figure.package.best:.2f}"
        orm_median = "-" if figure.orm is None else _duration(figure.orm.median)
        print(
            f"{figure.name:<{width}}  {_duration(figure.package.best):>11}"
            f"  {_duration(figure.raw.best):>11}  {orm_best:>11}"
            f"  {figure.raw.best / figure.package.best:>12.2f}  {orm_ratio:>8}"
            f"  {_duration(figure.package.median)} / {_duration(figure.raw.median)}"
            f" / {orm_median}"
        )


# ---------------------------------------------------------------------------------- databases


def fresh_sqlite(folder: Path, name: str) -> Path:
    """A migrated, empty state database file."""
    path = folder / name
    StateRuntime.from_url(f"sqlite:///{path}", "bench").close()
    return path


def sqlite_connect(path: Path) -> sqlite3.Connection:
    """A stdlib connection in autocommit mode with the package's pragmas."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


PG_NOTE = "synchronous_commit=off"
"""How every PostgreSQL connection of the benchmarks runs (see `pg_schema`)."""


@contextmanager
def pg_schema(base: str) -> Iterator[str]:
    """A URL whose connections use a new, empty schema; the schema is dropped afterwards.

    Its connections run with `synchronous_commit=off`: here a commit's WAL flush takes 0.5 to
    10 ms (4 ms median, measured), the same for every variant, and would drown the differences
    this benchmark is about. Every variant connects with this URL.
    """
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        separator = "&" if "?" in base else "?"
        options = f"-csearch_path%3D{schema}%20-csynchronous_commit%3Doff"
        yield f"{base}{separator}options={options}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def psycopg_connect(url: str, *, autocommit: bool = False) -> Any:
    """A raw psycopg connection to a SQLAlchemy `postgresql+psycopg://` URL."""
    import psycopg

    parsed = make_url(url)
    params: dict[str, Any] = parsed.translate_connect_args(username="user", database="dbname")
    params.update(parsed.query)
    return psycopg.connect(autocommit=autocommit, **params)


# -------------------------------------------------------------------------------------- threads

BASE_TIME = datetime(2025, 1, 1, tzinfo=UTC)

THREAD_COLUMNS = (
    "id",
    "rollout_path",
    "created_at",
    "updated_at",
    "source",
    "model_provider",
    "cwd",
    "cli_version",
    "title",
    "sandbox_policy",
    "approval_mode",
    "tokens_used",
    "first_user_message",
    "archived_at",
    "git_sha",
    "git_branch",
    "git_origin_url",
)
"""The seed's selected columns of `threads`, in its order."""

THREAD_SELECT = f"SELECT {', '.join(THREAD_COLUMNS)} FROM threads"
STORED_THREAD_COLUMNS = (*THREAD_COLUMNS, "archived")
"""What an upsert writes: the selected columns and the `archived` flag."""


def make_thread(n: int, *, cwd: str = "/home/u/project") -> ThreadMetadata:
    """The n-th synthetic thread: one second apart, all with a first user message."""
    return ThreadMetadata(
        id=uuid.uuid4(),
        rollout_path=Path(f"/home/u/.codex/sessions/2025/01/01/rollout-{n}.jsonl"),
        created_at=BASE_TIME + timedelta(seconds=n),
        updated_at=BASE_TIME + timedelta(seconds=n + 30),
        source=("cli", "vscode", "exec")[n % 3],
        model_provider="openai",
        cwd=Path(cwd),
        cli_version="0.99.0",
        title=f"Fix the flaky test number {n}",
        tokens_used=n * 10,
        first_user_message=f"Fix the flaky test number {n}",
        git_sha="0123456789abcdef",
        git_branch="main",
        git_origin_url="https://example.com/repo.git",
    )


def epoch(value: datetime) -> int:
    return int(value.timestamp())


def thread_values(thread: ThreadMetadata) -> tuple[Any, ...]:
    """A thread as stored, in `STORED_THREAD_COLUMNS` order (the seed's storage mapping)."""
    archived_at = thread.archived_at
    return (
        str(thread.id),
        str(thread.rollout_path),
        epoch(thread.created_at),
        epoch(thread.updated_at),
        thread.source,
        thread.model_provider,
        str(thread.cwd),
        thread.cli_version,
        thread.title,
        thread.sandbox_policy,
        thread.approval_mode,
        thread.tokens_used,
        thread.first_user_message or "",
        None if archived_at is None else epoch(archived_at),
        thread.git_sha,
        thread.git_branch,
        thread.git_origin_url,
        int(archived_at is not None),
    )


def thread_from_row(row: Sequence[Any]) -> ThreadMetadata:
    """A `ThreadMetadata` from a row of `THREAD_COLUMNS`, as the seed converts it."""
    archived_at = row[13]
    return ThreadMetadata(
        id=uuid.UUID(row[0]),
        rollout_path=Path(row[1]),
        created_at=datetime.fromtimestamp(row[2], tz=UTC),
        updated_at=datetime.fromtimestamp(row[3], tz=UTC),
        source=row[4],
        model_provider=row[5],
        cwd=Path(row[6]),
        cli_version=row[7],
        title=row[8],
        sandbox_policy=row[9],
        approval_mode=row[10],
        tokens_used=row[11],
        first_user_message=row[12] or None,
        archived_at=None if archived_at is None else datetime.fromtimestamp(archived_at, tz=UTC),
        git_sha=row[14],
        git_branch=row[15],
        git_origin_url=row[16],
    )


def _insert_threads_sql(placeholder: str) -> str:
    values = ", ".join([placeholder] * len(STORED_THREAD_COLUMNS))
    return f"INSERT INTO threads ({', '.join(STORED_THREAD_COLUMNS)}) VALUES ({values})"


def seed_threads_sqlite(path: Path, threads: Sequence[ThreadMetadata]) -> None:
    """Insert threads with one executemany (much faster than upserting them one by one)."""
    conn = sqlite_connect(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_insert_threads_sql("?"), [thread_values(t) for t in threads])
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
    finally:
        conn.close()


def seed_threads_pg(url: str, threads: Sequence[ThreadMetadata]) -> None:
    """COPY threads into the (migrated) PostgreSQL schema of `url`."""
    with psycopg_connect(url) as conn:
        with conn.cursor() as cursor:
            columns = ", ".join(STORED_THREAD_COLUMNS)
            with cursor.copy(f"COPY threads ({columns}) FROM STDIN") as copy:
                for thread in threads:
                    copy.write_row(thread_values(thread))
        conn.commit()
        conn.execute("ANALYZE threads")
