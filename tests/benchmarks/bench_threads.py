"""Thread pages, point reads and upserts beside the raw driver and the plain ORM.

Run: `.venv/bin/python -m tests.benchmarks.bench_threads` (PostgreSQL too when
`CODEX_STATE_BENCH_PG_URL` or `CODEX_STATE_TEST_PG_URL` is set).

For 1,000 and 200,000 threads (seeded with one executemany, or COPY on PostgreSQL), times
`list_threads(50)` from the start and from an anchor in the middle of the table, `get_thread`,
and `upsert_thread` of new threads one at a time. The raw baseline sends the seed's SQL (the
page with the keyset bound `created_at <= ts` the package adds, so all three variants send the
same SELECT ... ORDER BY created_at DESC, id DESC LIMIT 51) and builds the same pydantic
values; reads are one autocommit statement, a SQLite upsert is BEGIN IMMEDIATE/upsert/COMMIT.
The plain ORM is `tests.benchmarks.plain_orm`. Every variant's result is checked equal first.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from codex_state import Anchor, StateRuntime, ThreadMetadata, ThreadsPage
from tests.benchmarks.common import (
    ORM,
    PACKAGE,
    PG_NOTE,
    PG_SKIPPED,
    PG_URL,
    RAW,
    STORED_THREAD_COLUMNS,
    THREAD_SELECT,
    Figure,
    epoch,
    fresh_sqlite,
    make_thread,
    pg_schema,
    print_table,
    psycopg_connect,
    race,
    seed_threads_pg,
    seed_threads_sqlite,
    sqlite_connect,
    thread_from_row,
    thread_values,
)
from tests.benchmarks.plain_orm import PlainOrmState, plain_engine

SIZES = (1_000, 200_000)
PAGE = 50
UPSERTS = 200
TIMING = "best of 5 rounds, per call; ratio = baseline / package"

_FILTERS = "archived = 0 AND first_user_message <> ''"
_ORDER = "ORDER BY created_at DESC, id DESC LIMIT ?"
FIRST_PAGE_SQL = f"{THREAD_SELECT} WHERE {_FILTERS} {_ORDER}"
DEEP_PAGE_SQL = (
    f"{THREAD_SELECT} WHERE {_FILTERS} AND created_at <= ?"
    f" AND (created_at < ? OR (created_at = ? AND id < ?)) {_ORDER}"
)
GET_SQL = f"{THREAD_SELECT} WHERE id = ?"
UPSERT_SQL = (
    f"INSERT INTO threads ({', '.join(STORED_THREAD_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(STORED_THREAD_COLUMNS))})"
    " ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in STORED_THREAD_COLUMNS[1:])
)


class Raw:
    """One raw driver connection (`sqlite3` or `psycopg`, autocommit) and its SQL spelling."""

    def __init__(self, conn: Any, *, sqlite: bool) -> None:
        self.conn = conn
        self.sqlite = sqlite

    def execute(self, sql: str, params: tuple[Any, ...]) -> Any:
        return self.conn.execute(sql if self.sqlite else sql.replace("?", "%s"), params)


# ----------------------------------------------------------------------------------- variants


def package_page(runtime: StateRuntime, anchor: Anchor | None) -> ThreadsPage:
    """`StateRuntime.list_threads(50)`, from the start or from an anchor."""
    return runtime.list_threads(PAGE, anchor)


def raw_page(raw: Raw, anchor: Anchor | None) -> ThreadsPage:
    """The same SELECT of 51 rows, building the same `ThreadsPage`."""
    if anchor is None:
        rows = raw.execute(FIRST_PAGE_SQL, (PAGE + 1,)).fetchall()
    else:
        ts, anchor_id = epoch(anchor.ts), str(anchor.id)
        rows = raw.execute(DEEP_PAGE_SQL, (ts, ts, ts, anchor_id, PAGE + 1)).fetchall()
    items = [thread_from_row(row) for row in rows[:PAGE]]
    next_anchor = None
    if len(rows) > PAGE:
        next_anchor = Anchor(ts=items[-1].created_at, id=items[-1].id)
    return ThreadsPage(items=items, next_anchor=next_anchor, num_scanned_rows=len(rows))


def orm_page(orm: PlainOrmState, anchor: Anchor | None) -> ThreadsPage:
    """Plain ORM: `select(ThreadRow)` in a new Session, `model_validate` per row."""
    return orm.list_threads(PAGE, anchor)


def package_get(runtime: StateRuntime, thread_id: str) -> ThreadMetadata | None:
    """`StateRuntime.get_thread`."""
    return runtime.get_thread(thread_id)


def raw_get(raw: Raw, thread_id: str) -> ThreadMetadata | None:
    """The seed's SELECT ... WHERE id = ?, building the same `ThreadMetadata`."""
    row = raw.execute(GET_SQL, (thread_id,)).fetchone()
    return None if row is None else thread_from_row(row)


def orm_get(orm: PlainOrmState, thread_id: str) -> ThreadMetadata | None:
    """Plain ORM: `session.get(ThreadRow, id)` in a new Session."""
    return orm.get_thread(thread_id)


def package_upsert(runtime: StateRuntime, thread: ThreadMetadata) -> None:
    """`StateRuntime.upsert_thread`."""
    runtime.upsert_thread(thread)


def raw_upsert(raw: Raw, thread: ThreadMetadata) -> None:
    """The seed's INSERT ... ON CONFLICT(id) DO UPDATE (SQLite: in BEGIN IMMEDIATE)."""
    if raw.sqlite:
        raw.conn.execute("BEGIN IMMEDIATE")
        raw.conn.execute(UPSERT_SQL, thread_values(thread))
        raw.conn.execute("COMMIT")
    else:
        raw.execute(UPSERT_SQL, thread_values(thread))


def orm_upsert(orm: PlainOrmState, thread: ThreadMetadata) -> None:
    """Plain ORM: one ORM upsert statement in a new Session."""
    orm.upsert_thread(thread)


# ------------------------------------------------------------------------------------ figures


def _same(variants: Mapping[str, Callable[[], object]]) -> None:
    results = [work() for work in variants.values()]
    assert all(result == results[0] for result in results), "variants disagree"


def _next_of(items: Iterator[ThreadMetadata], call: Callable[[ThreadMetadata], None]) -> Any:
    return lambda: call(next(items))


def bench(size: int, url: str, raw: Raw, threads: list[ThreadMetadata]) -> list[Figure]:
    """Every figure on one database of `size` threads."""
    runtime = StateRuntime.from_url(url, "openai")
    orm = PlainOrmState(plain_engine(url))
    middle = threads[size // 2]
    deep = Anchor(ts=middle.created_at, id=middle.id)
    target = str(threads[size // 3].id)
    figures = []
    try:
        for name, anchor in (("first page", None), ("deep page", deep)):
            pages: dict[str, Callable[[], object]] = {
                PACKAGE: lambda a=anchor: package_page(runtime, a),  # type: ignore[misc]
                RAW: lambda a=anchor: raw_page(raw, a),  # type: ignore[misc]
                ORM: lambda a=anchor: orm_page(orm, a),  # type: ignore[misc]
            }
            _same(pages)
            figures.append(Figure.of(f"{name}, {size:,} threads", race(pages, number=40)))
        gets: dict[str, Callable[[], object]] = {
            PACKAGE: lambda: package_get(runtime, target),
            RAW: lambda: raw_get(raw, target),
            ORM: lambda: orm_get(orm, target),
        }
        _same(gets)
        figures.append(Figure.of(f"get_thread, {size:,} threads", race(gets, number=300)))
        if size == SIZES[0]:
            rounds = 5
            fresh = {
                name: iter([make_thread(size + n) for n in range(rounds * UPSERTS)])
                for name in (PACKAGE, RAW, ORM)
            }
            upserts = {
                PACKAGE: _next_of(fresh[PACKAGE], lambda t: package_upsert(runtime, t)),
                RAW: _next_of(fresh[RAW], lambda t: raw_upsert(raw, t)),
                ORM: _next_of(fresh[ORM], lambda t: orm_upsert(orm, t)),
            }
            timings = race(upserts, rounds=rounds, number=UPSERTS)
            figures.append(Figure.of(f"upsert_thread (new), {size:,} threads", timings))
    finally:
        orm.close()
        runtime.close()
    return figures


def bench_sqlite(threads: list[ThreadMetadata]) -> list[Figure]:
    figures = []
    with tempfile.TemporaryDirectory() as folder:
        for size in SIZES:
            path = fresh_sqlite(Path(folder), f"threads_{size}.sqlite")
            seed_threads_sqlite(path, threads[:size])
            conn = sqlite_connect(path)
            try:
                figures += bench(size, f"sqlite:///{path}", Raw(conn, sqlite=True), threads[:size])
            finally:
                conn.close()
    return figures


def bench_pg(base: str, threads: list[ThreadMetadata]) -> list[Figure]:
    figures = []
    for size in SIZES:
        with pg_schema(base) as url:
            StateRuntime.from_url(url, "openai").close()
            seed_threads_pg(url, threads[:size])
            with psycopg_connect(url, autocommit=True) as conn:
                figures += bench(size, url, Raw(conn, sqlite=False), threads[:size])
    return figures


def _scaling(figures: list[Figure]) -> None:
    """The package's 200k/1k time ratio of each read (the pages should not slow with size)."""
    by_name = {figure.name: figure.package.best for figure in figures}
    for name in ("first page", "deep page", "get_thread"):
        small = by_name[f"{name}, {SIZES[0]:,} threads"]
        large = by_name[f"{name}, {SIZES[-1]:,} threads"]
        print(f"  package {name} at {SIZES[-1]:,} / at {SIZES[0]:,} threads: {large / small:.2f}")


def main() -> None:
    threads = [make_thread(n) for n in range(SIZES[-1])]
    sqlite_figures = bench_sqlite(threads)
    title = f"threads, SQLite file: {TIMING}"
    print_table(title, sqlite_figures)
    _scaling(sqlite_figures)
    if PG_URL:
        pg_figures = bench_pg(PG_URL, threads)
        title = f"threads, PostgreSQL ({PG_NOTE}): {TIMING}"
        print_table(title, pg_figures, raw="psycopg")
        _scaling(pg_figures)
    else:
        print(PG_SKIPPED)


if __name__ == "__main__":
    main()
