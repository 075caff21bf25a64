"""From a URL to a configured SQLAlchemy engine: pragmas, pools and how transactions begin."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from codex_state.errors import InvalidInputError, StateDbOpenError
from codex_state.pool import FairQueuePool

WRITE_OPTION = "codex_state_write"
"""Execution option that marks a connection's transaction as a write (see `_begin_as_declared`)."""

_WRITE_BEGIN = "codex_state_write_begin"

SQLITE_BUSY_TIMEOUT_MS = 5000
SQLITE_POOL_SIZE = 5
POSTGRESQL_POOL_SIZE = 5
POOL_TIMEOUT_SECONDS = 30.0
POSTGRESQL_LOCK_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """The connection settings a caller may choose (`StateRuntime.from_url(..., pool_size=...)`).

    Attributes:
        pool_size: connections kept open; PostgreSQL opens up to as many again under load
            (closed when returned). At most 5 on a SQLite file (the SPEC's cap); ignored for
            in-memory SQLite, which is one connection.
        pool_timeout: seconds a call waits for a pooled connection before it fails.
        lock_timeout: PostgreSQL only: seconds a statement waits for a row lock another
            transaction holds (a claim then answers `skipped_running`, other calls raise
            `LockTimeoutError`); 0 waits forever, as PostgreSQL's own default.
    """

    pool_size: int | None = None
    pool_timeout: float = POOL_TIMEOUT_SECONDS
    lock_timeout: float = POSTGRESQL_LOCK_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        size, timeout, lock = self.pool_size, self.pool_timeout, self.lock_timeout
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise InvalidInputError(f"pool_size must be a positive int, got {size!r}")
        for name, value in (("pool_timeout", timeout), ("lock_timeout", lock)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise InvalidInputError(f"{name} must be a number of seconds >= 0, got {value!r}")


def parse_url(url: str | URL) -> URL:
    """Parse and sanity-check a database URL, raising `StateDbOpenError` for a bad one."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as err:
        raise StateDbOpenError(f"invalid database URL {url!r}: {err}") from err
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StateDbOpenError(
            f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: "
            "use sqlite:// or postgresql+psycopg://"
        )
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        # psycopg 3 is the driver this package is tested with (the `postgres` extra).
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def is_sqlite_memory(url: URL) -> bool:
    database = url.database or ""
    return url.get_backend_name() == "sqlite" and (
        database in ("", ":memory:") or url.query.get("mode") == "memory"
    )


def sqlite_read_only_url(path: Path, *, immutable: bool = False) -> URL:
    """A URL that opens the SQLite file at `path` read-only, and never creates it.

    `immutable` also promises SQLite that nothing writes the file while it is open, which is
    what lets it read a WAL database in a directory it cannot write (where it could not create
    the `-shm` file): use it only when no writer can exist, e.g. no `-wal` file and a
    directory nobody can write to.
    """
    query = {"mode": "ro", "uri": "true"}
    if immutable:
        query["immutable"] = "1"
    location = urllib.parse.quote(os.fsencode(path.absolute()))  # URI escapes for ?, #, %
    return URL.create("sqlite", database=f"file:{location}", query=query)


_PG_READ_ONLY_OPTION = "-c default_transaction_read_only=on"


def postgresql_read_only_url(url: URL) -> URL:
    """`url` with every transaction read-only, through libpq's `options` parameter."""
    options = url.query.get("options")
    if isinstance(options, str):  # keep what is there (a search_path, say)
        return url.update_query_dict({"options": f"{options} {_PG_READ_ONLY_OPTION}"})
    return url.update_query_dict({"options": _PG_READ_ONLY_OPTION})


def is_read_only(url: URL) -> bool:
    """True for the URLs `sqlite_read_only_url` and `postgresql_read_only_url` make."""
    query = url.query
    if url.get_backend_name() == "sqlite":
        return query.get("mode") == "ro" or query.get("immutable") == "1"
    options = query.get("options")
    return isinstance(options, str) and _PG_READ_ONLY_OPTION in options


def make_engine(url: str | URL, settings: EngineSettings | None = None) -> Engine:
    """An engine whose connections behave as the state database needs on this backend."""
    parsed = parse_url(url)
    settings = settings or EngineSettings()
    try:
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(parsed, settings)
        return _postgresql_engine(parsed, settings)
    except (ArgumentError, NoSuchModuleError, ImportError) as err:
        shown = parsed.render_as_string(hide_password=True)
        raise StateDbOpenError(f"cannot open database URL {shown!r}: {err}") from err


def _postgresql_engine(url: URL, settings: EngineSettings) -> Engine:
    """A fair pool without pre-ping, and a bounded lock wait.

    No `pool_pre_ping`: it cost a round trip on every checkout (about 55 us of a 300 us renew
    here), and a connection that died in the pool now surfaces as an invalidated-connection
    error on its first statement, which the runtime reruns (the whole pool is refreshed then).
    """
    size = settings.pool_size or POSTGRESQL_POOL_SIZE
    lock_ms = round(settings.lock_timeout * 1000)
    # libpq's startup `options`: no extra round trip on connect. Before the URL's own options,
    # so a `-c lock_timeout=...` in the URL still wins over the default.
    options = f"-c lock_timeout={lock_ms}"
    if isinstance(given := url.query.get("options"), str):
        options = f"{options} {given}"
    url = url.update_query_dict({"options": options})
    return create_engine(
        url,
        poolclass=FairQueuePool,
        pool_size=size,
        max_overflow=size,
        pool_timeout=settings.pool_timeout,
    )


def _sqlite_engine(url: URL, settings: EngineSettings) -> Engine:
    memory = is_sqlite_memory(url)
    read_only = is_read_only(url)
    options: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if memory:
        # One connection is the database; every session shares it (the runtime serialises use).
        options["poolclass"] = StaticPool
    else:
        size = settings.pool_size or SQLITE_POOL_SIZE
        if size > SQLITE_POOL_SIZE:
            raise InvalidInputError(f"pool_size is at most {SQLITE_POOL_SIZE} on SQLite: {size}")
        # Fair: see codex_state.pool (one caller waited a whole 10 s run in QueuePool's queue).
        options.update(
            poolclass=FairQueuePool,
            pool_size=size,
            max_overflow=0,
            pool_timeout=settings.pool_timeout,
        )
    engine = create_engine(url, **options)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # We issue BEGIN ourselves (below); pysqlite's implicit BEGIN would always be DEFERRED.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # Wait for another writer instead of failing at once with "database is locked".
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            # The schema's ON DELETE CASCADE foreign keys only act when enforcement is on.
            cursor.execute("PRAGMA foreign_keys = ON")
            if not memory and not read_only:  # switching to WAL writes the file header
                # WAL lets readers proceed while one writer commits; NORMAL is durable across
                # application crashes in WAL mode and much cheaper than FULL (the seed's choice).
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    _begin_as_declared(engine)
    return engine


def _begin_as_declared(engine: Engine) -> None:
    """Open each transaction with `BEGIN IMMEDIATE` when its Session is a write, else `BEGIN`.

    Why up front: a DEFERRED transaction that reads first and writes later cannot wait for the
    write lock (SQLite answers SQLITE_BUSY at once to avoid a deadlock), which is the "database
    is locked" failure of the Rust original; `BEGIN IMMEDIATE` makes a writer wait its turn
    under `busy_timeout`. Reads stay DEFERRED so they never block on, or block, a writer.

    Why in the dialect rather than a `begin` event listener: any engine-level event listener
    switches on SQLAlchemy's event dispatch for every statement, measured at about 10 us of a
    60 us Session unit here. The write flag arrives as the `WRITE_OPTION` execution option,
    which a write Session applies to its connection just before it begins; it is kept on the
    pooled connection's `info` for that one BEGIN only.
    """
    dialect = engine.dialect
    apply_options = dialect.set_connection_execution_options

    def set_connection_execution_options(connection: Any, opts: Mapping[str, Any]) -> None:
        apply_options(connection, opts)
        if opts.get(WRITE_OPTION):
            connection.connection.info[_WRITE_BEGIN] = True

    def do_begin(dbapi_connection: Any) -> None:
        write = dbapi_connection.info.pop(_WRITE_BEGIN, False)
        dbapi_connection.driver_connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    # Instance attributes shadow the dialect class's methods for this engine only.
    dialect.set_connection_execution_options = set_connection_execution_options  # type: ignore[method-assign]
    dialect.do_begin = do_begin  # type: ignore[method-assign]


WRITE_SESSION_OPTIONS: Mapping[str, Any] = {WRITE_OPTION: True}
"""`Session(engine, execution_options=WRITE_SESSION_OPTIONS)` is a write Session (see above)."""


def write_session(bind: Engine | Connection, **kwargs: Any) -> Session:
    """A Session whose transaction takes SQLite's write lock up front (PostgreSQL: no effect)."""
    return Session(bind, execution_options=WRITE_SESSION_OPTIONS, **kwargs)
