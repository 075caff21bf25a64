"""Bringing a database to the schema head: a cheap version check, Alembic when needed, adoption.

Opening a database that is already at head costs two small catalog queries; Alembic and its
script directory are only loaded when there is something to do. Upgrades run inside one
transaction that holds the write lock (SQLite `BEGIN IMMEDIATE`, PostgreSQL advisory lock), so
processes that open a new database at the same moment wait for each other instead of racing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import OperationalError

from codex_state.codex_files import NEWER_CODEX_TABLES
from codex_state.engine import WRITE_OPTION, is_read_only, make_engine
from codex_state.errors import NewerCodexDatabaseError, ReadOnlyDatabaseError, SchemaMismatchError
from codex_state.orm import ONLY_ON, SEED_TABLES
from codex_state.paths import state_db_path

BASELINE_REVISION = "0001"
HEAD_REVISION = "0004"
KNOWN_REVISIONS = ("0001", "0002", "0003", "0004")
"""Every revision shipped, oldest first; a test checks these against the script directory."""

_IGNORED_TABLES = frozenset({"alembic_version", "_sqlx_migrations", "sqlite_sequence"})
_PG_MIGRATION_LOCK_KEY = 0x636F6465785F7374  # "codex_st"
_LOCK_RETRY_SECONDS = 60.0


def script_location() -> Path:
    """The Alembic scripts: inside the installed wheel, or at the repository root."""
    packaged = Path(__file__).resolve().parent / "_alembic"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "alembic"


def include_object_for(dialect_name: str) -> Callable[[Any, str | None, str, bool, Any], bool]:
    """Autogenerate filter: other tools' bookkeeping tables and other backends' indexes."""

    def include_object(
        obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        if type_ == "table":
            return name not in _IGNORED_TABLES
        if type_ == "index" and not reflected:
            only_on = obj.info.get(ONLY_ON)
            return only_on is None or only_on == dialect_name
        return True

    return include_object


def resolve_cli_url(x_args: Mapping[str, str], config: Any) -> str:
    """URL for the `alembic` command line: -x url, -x codex_home, CODEX_STATE_DB_URL, ini."""
    if x_args.get("url"):
        return x_args["url"]
    if x_args.get("codex_home"):
        home = Path(x_args["codex_home"]).expanduser()
        home.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{state_db_path(home)}"
    if os.environ.get("CODEX_STATE_DB_URL"):
        return os.environ["CODEX_STATE_DB_URL"]
    configured = config.get_main_option("sqlalchemy.url")
    if configured:
        return str(configured)
    raise SystemExit(
        "codex-state: no database given; use -x url=..., -x codex_home=DIR "
        "or set CODEX_STATE_DB_URL"
    )


@dataclass(frozen=True)
class _SchemaState:
    tables: frozenset[str]
    revision: str | None

    @property
    def codex_created(self) -> bool:
        return self.revision is None and "_sqlx_migrations" in self.tables

    @property
    def newer_codex(self) -> bool:
        """Made by a Codex of 10 February 2026 or later, whose memory tables differ."""
        return self.codex_created and self.tables >= NEWER_CODEX_TABLES

    @property
    def seed_tables_present(self) -> list[str]:
        return [name for name in SEED_TABLES if name in self.tables]


def _read_state(conn: Connection) -> _SchemaState:
    names = ("alembic_version", "_sqlx_migrations", *SEED_TABLES, *NEWER_CODEX_TABLES)
    if conn.dialect.name == "sqlite":
        query = text("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        query = text(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    tables = frozenset(row[0] for row in conn.execute(query) if row[0] in names)
    revision = None
    if "alembic_version" in tables:
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return _SchemaState(tables, revision)


@contextmanager
def migration_connection(target: Engine | str) -> Iterator[Connection]:
    """A connection inside a transaction that holds the database's migration lock."""
    engine = make_engine(target) if isinstance(target, str) else target
    try:
        with engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                # A batch table rebuild inside a migration would cascade-delete child rows if
                # foreign keys were enforced; the pragma only takes effect outside a transaction.
                _raw_pragma(conn, "PRAGMA foreign_keys = OFF")
            try:
                conn.execution_options(**{WRITE_OPTION: True})
                with conn.begin():
                    if not sqlite:
                        # Another process's migration may hold the lock (and DDL may wait for
                        # tables) longer than the runtime's lock_timeout: wait as before.
                        conn.execute(text("SET LOCAL lock_timeout = 0"))
                        conn.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"),
                            {"key": _PG_MIGRATION_LOCK_KEY},
                        )
                    yield conn
            finally:
                if sqlite:
                    _raw_pragma(conn, "PRAGMA foreign_keys = ON")
    finally:
        if isinstance(target, str):
            engine.dispose()


def _raw_pragma(conn: Connection, pragma: str) -> None:
    conn.connection.dbapi_connection.execute(pragma)  # type: ignore[union-attr]


def ensure_schema(engine: Engine) -> bool:
    """Bring the database to head; returns True when the schema was created from nothing.

    Retried whole while the database is locked: when processes create a new SQLite file at
    the same moment, even the first read (or switching the file to WAL on connect) can meet
    another process's lock, and SQLite does not always wait for it.
    """
    deadline = time.monotonic() + _LOCK_RETRY_SECONDS
    while True:
        try:
            return _ensure_schema_once(engine)
        except OperationalError as err:
            if not _is_lock_error(err) or time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def _ensure_schema_once(engine: Engine) -> bool:
    with engine.connect() as conn:
        state = _read_state(conn)
        conn.rollback()
    if state.revision == HEAD_REVISION:
        return False
    _check_revision_known(state.revision)
    _check_adoptable(state)
    if is_read_only(engine.url):
        raise ReadOnlyDatabaseError(_read_only_reason(state))
    return _upgrade_locked(engine)


def _upgrade_locked(engine: Engine) -> bool:
    with migration_connection(engine) as conn:
        state = _read_state(conn)
        if state.revision == HEAD_REVISION:
            return False
        _check_revision_known(state.revision)
        _check_adoptable(state)
        created = not state.seed_tables_present
        if state.codex_created:
            verify_codex_schema(conn)
            run_alembic(conn, "stamp", BASELINE_REVISION)
        run_alembic(conn, "upgrade", "head")
        return created


def _check_adoptable(state: _SchemaState) -> None:
    """Refuse, before any write, a database that is not ours and cannot be adopted."""
    if state.newer_codex:
        raise NewerCodexDatabaseError(
            "database was created by a Codex of 10 February 2026 or later: it has that "
            "Codex's memory tables (stage1_outputs, jobs) instead of the seed's, so "
            "codex-state cannot adopt it and left it unchanged"
        )
    if state.revision is None and not state.codex_created and state.seed_tables_present:
        raise SchemaMismatchError(
            "database has state tables but no migration history "
            f"({', '.join(state.seed_tables_present)}); refusing to modify it"
        )


def _read_only_reason(state: _SchemaState) -> str:
    if not state.seed_tables_present and state.revision is None:
        return "the database has no codex-state schema yet, and it was opened read-only"
    if state.codex_created:
        return (
            "the database was created by Codex and is adopted on its first read-write open, "
            "but it was opened read-only"
        )
    return (
        f"the database schema is at revision {state.revision} and is migrated to "
        f"{HEAD_REVISION} on its first read-write open, but it was opened read-only"
    )


def _check_revision_known(revision: str | None) -> None:
    if revision is not None and revision not in KNOWN_REVISIONS:
        raise SchemaMismatchError(
            f"database schema is at revision {revision!r}, which this codex-state does not "
            f"know (its newest is {HEAD_REVISION!r}); upgrade codex-state to open it"
        )


def _is_lock_error(err: OperationalError) -> bool:
    message = str(err.orig).lower()
    return "locked" in message or "busy" in message


def alembic_config(connection: Connection | None = None) -> Any:
    """An Alembic `Config` for the shipped scripts, optionally bound to an open connection."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def run_alembic(connection: Connection, command_name: str, revision: str) -> None:
    """Run `alembic <upgrade|downgrade|stamp> revision` on an open connection."""
    from alembic import command

    getattr(command, command_name)(alembic_config(connection), revision)


def verify_codex_schema(conn: Connection) -> None:
    """Check that a database Codex created matches the seed schema; name every difference."""
    reference_engine = make_engine("sqlite://")
    try:
        with migration_connection(reference_engine) as reference:
            run_alembic(reference, "upgrade", BASELINE_REVISION)
            expected = _describe(reference)
    finally:
        reference_engine.dispose()
    actual = _describe(conn)
    problems: list[str] = []
    for table, want in expected.items():
        have = actual.get(table)
        if have is None:
            problems.append(f"table {table} is missing")
            continue
        for key in sorted(want.keys() | have.keys()):
            if want.get(key) != have.get(key):
                problems.append(
                    f"{table}.{key}: expected {want.get(key)!r}, found {have.get(key)!r}"
                )
    if problems:
        raise SchemaMismatchError(
            "database created by Codex does not match the expected schema: " + "; ".join(problems)
        )


def _describe(conn: Connection) -> dict[str, dict[str, object]]:
    """Per table: each column's (type, nullable) and each index's columns, and the key."""
    inspector = inspect(conn)
    present = set(inspector.get_table_names())
    described: dict[str, dict[str, object]] = {}
    for table in SEED_TABLES:
        if table not in present:
            continue
        facts: dict[str, object] = {}
        key = tuple(inspector.get_pk_constraint(table)["constrained_columns"])
        facts["primary key"] = key
        for column in inspector.get_columns(table):
            # sqlx's `id TEXT PRIMARY KEY` omits NOT NULL that SQLAlchemy spells out; for a key
            # column the difference is immaterial.
            nullable = None if column["name"] in key else column["nullable"]
            facts[f"column {column['name']}"] = (str(column["type"]), nullable)
        for index in inspector.get_indexes(table):
            facts[f"index {index['name']}"] = tuple(
                str(name) for name in index.get("column_names", []) if name is not None
            )
        described[table] = facts
    return described
