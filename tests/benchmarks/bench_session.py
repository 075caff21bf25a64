"""What an empty `Session` unit of work costs on the package's engine, on each backend.

Run: `.venv/bin/python -m tests.benchmarks.bench_session` (PostgreSQL too when
`CODEX_STATE_BENCH_PG_URL` or `CODEX_STATE_TEST_PG_URL` is set).

The package column is `with Session(runtime.engine) as s, s.begin(): s.connection()` (and the same
with one `s.execute(text("SELECT 1"))`) on the engine `StateRuntime` configured; the plain ORM
column is the same code on `plain_orm.plain_engine` (`create_engine` and the pragmas only, so
pysqlite's default of not sending BEGIN before a SELECT); raw is the driver sending BEGIN
(SELECT 1) COMMIT on a connection it keeps open. This is the floor under every call of a
Session-per-call implementation.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from codex_state import StateRuntime
from tests.benchmarks.common import (
    ORM,
    PACKAGE,
    PG_NOTE,
    PG_SKIPPED,
    PG_URL,
    RAW,
    Figure,
    fresh_sqlite,
    pg_schema,
    print_table,
    psycopg_connect,
    race,
    sqlite_connect,
)
from tests.benchmarks.plain_orm import plain_engine

_SELECT_1 = text("SELECT 1")


def session_empty(engine: Engine) -> None:
    """`with Session(engine) as s, s.begin(): s.connection()`."""
    with Session(engine) as session, session.begin():
        session.connection()


def session_select_1(engine: Engine) -> None:
    """The same unit running one `SELECT 1`."""
    with Session(engine) as session, session.begin():
        session.execute(_SELECT_1).scalar()


def raw_empty(conn: Any) -> None:
    """The driver: BEGIN, COMMIT."""
    conn.execute("BEGIN")
    conn.execute("COMMIT")


def raw_select_1(conn: Any) -> None:
    """The driver: BEGIN, SELECT 1, COMMIT."""
    conn.execute("BEGIN")
    conn.execute("SELECT 1").fetchone()
    conn.execute("COMMIT")


def bench(url: str, raw: sqlite3.Connection | Any) -> list[Figure]:
    runtime = StateRuntime.from_url(url, "bench")
    plain = plain_engine(url)
    figures = []
    try:
        for name, unit, raw_unit in (
            ("empty unit (s.connection())", session_empty, raw_empty),
            ("unit with one SELECT 1", session_select_1, raw_select_1),
        ):
            variants = {
                PACKAGE: lambda u=unit: u(runtime.engine),
                RAW: lambda r=raw_unit: r(raw),
                ORM: lambda u=unit: u(plain),
            }
            figures.append(Figure.of(name, race(variants, rounds=7, number=500)))
    finally:
        plain.dispose()
        runtime.close()
    return figures


def main() -> None:
    title = "empty Session unit of work, {}: best of 7 rounds, per unit; ratio = baseline / package"
    with tempfile.TemporaryDirectory() as name:
        path = fresh_sqlite(Path(name), "session.sqlite")
        conn = sqlite_connect(path)
        try:
            print_table(title.format("SQLite file"), bench(f"sqlite:///{path}", conn))
        finally:
            conn.close()
    if PG_URL:
        with pg_schema(PG_URL) as url, psycopg_connect(url, autocommit=True) as conn:
            figures = bench(url, conn)
        print_table(title.format(f"PostgreSQL ({PG_NOTE})"), figures, raw="psycopg")
    else:
        print(PG_SKIPPED)


if __name__ == "__main__":
    main()
