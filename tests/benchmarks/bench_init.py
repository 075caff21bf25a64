"""Opening an up-to-date database beside the raw driver and the plain ORM doing the same.

Run: `.venv/bin/python -m tests.benchmarks.bench_init` (PostgreSQL too when
`CODEX_STATE_BENCH_PG_URL` or `CODEX_STATE_TEST_PG_URL` is set).

Each variant opens, checks the schema version and closes, imports done and caches warm: the
package's `StateRuntime.init` / `from_url` + `close`; raw, a driver connection with the same
pragmas reading the table names and `alembic_version`; the plain ORM, `create_engine` with the
pragmas, Alembic's `MigrationContext.get_current_heads()` compared with the scripts' heads (read
once per process, as an application would at start-up) and `dispose`.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from codex_state import StateRuntime, state_db_path
from tests.benchmarks.common import (
    ORM,
    PACKAGE,
    PG_NOTE,
    PG_SKIPPED,
    PG_URL,
    RAW,
    Figure,
    pg_schema,
    print_table,
    psycopg_connect,
    race,
)
from tests.benchmarks.plain_orm import PlainOrmState

ROUNDS = 200


def package_init(home: Path) -> None:
    """`StateRuntime.init` + `close` on a database already at head."""
    StateRuntime.init(home, "openai").close()


def package_from_url(url: str) -> None:
    """`StateRuntime.from_url` + `close` on a database already at head."""
    StateRuntime.from_url(url, "openai").close()


def raw_open_sqlite(path: Path) -> None:
    """sqlite3: connect, the same pragmas, read the table names and the version, close."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    conn.execute("SELECT version_num FROM alembic_version").fetchone()
    conn.close()


def raw_open_pg(url: str) -> None:
    """psycopg: connect, read the schema's table names and the version, close."""
    with psycopg_connect(url, autocommit=True) as conn:
        conn.execute(
            "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
        conn.execute("SELECT version_num FROM alembic_version").fetchone()


def orm_open(url: str) -> None:
    """Plain ORM: `create_engine`, Alembic's current heads vs the scripts' heads, `dispose`."""
    PlainOrmState.from_url(url).close()


def bench_sqlite() -> list[Figure]:
    home = Path(tempfile.mkdtemp(prefix="bench-init-"))
    StateRuntime.init(home, "openai").close()
    path = state_db_path(home)
    url = f"sqlite:///{path}"
    figures = []
    for name, package in (
        ("StateRuntime.init (codex_home)", lambda: package_init(home)),
        ("StateRuntime.from_url (file URL)", lambda: package_from_url(url)),
    ):
        variants = {
            PACKAGE: package,
            RAW: lambda: raw_open_sqlite(path),
            ORM: lambda: orm_open(url),
        }
        race(variants, rounds=5, number=2)  # warm caches and imports
        figures.append(Figure.of(name, race(variants, rounds=ROUNDS, number=1)))
    return figures


def bench_pg(base: str) -> list[Figure]:
    with pg_schema(base) as url:
        StateRuntime.from_url(url, "openai").close()
        variants = {
            PACKAGE: lambda: package_from_url(url),
            RAW: lambda: raw_open_pg(url),
            ORM: lambda: orm_open(url),
        }
        race(variants, rounds=5, number=2)
        return [Figure.of("StateRuntime.from_url", race(variants, rounds=ROUNDS // 2, number=1))]


def main() -> None:
    title = "open an up-to-date database, {}: best of {} opens; ratio = baseline / package"
    print_table(title.format("SQLite file", ROUNDS), bench_sqlite())
    if PG_URL:
        print_table(
            title.format(f"PostgreSQL ({PG_NOTE})", ROUNDS // 2), bench_pg(PG_URL), raw="psycopg"
        )
    else:
        print(PG_SKIPPED)


if __name__ == "__main__":
    main()
