"""From a URL to a configured SQLAlchemy engine: pragmas, pools and how transactions begin."""

from __future__ import annotations

import importlib
import os
import sqlite3
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, InvalidRequestError, NoSuchModuleError
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

try:
    from sqlalchemy.util.concurrency import await_
except ImportError:  # SQLAlchemy 2.0 names it await_only
    from sqlalchemy.util.concurrency import await_only as await_

from codex_state.errors import InvalidInputError, StateDbOpenError
from codex_state.pool import FairQueuePool

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

WRITE_OPTION = "codex_state_write"
"""Execution option that marks a connection's transaction as a write (see `_begin_as_declared`)."""

_WRITE_BEGIN = "codex_state_write_begin"

SQLITE_BUSY_TIMEOUT_MS = 5000

SQLITE_ASYNC_BUSY_TIMEOUT_MS = 100
"""busy_timeout of an async engine's connections: the rest of the wait is the runtime's retry.

SQLite waits for a lock inside the call (`BEGIN IMMEDIATE` sleeps in its busy handler), in
aiosqlite's thread. A task cancelled meanwhile cannot stop that call (`interrupt()` does not
end a busy wait, measured), and its cleanup (the rollback, the connection's return to the
pool) queues behind it, so `asyncio.wait_for(db.try_claim_phase1_job(...), 0.05)` took as long
as the other writer held the lock, up to the 5 s timeout. With 100 ms, SQLite reports the lock
busy after at most that long and `AsyncStateRuntime` reruns the unit after an `asyncio.sleep`,
where a cancellation lands at once; the total wait for a writer stays the runtime's
`RETRY_SECONDS`, as for `StateRuntime`.
"""
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
            `LockTimeoutError`); 0 waits forever, as PostgreSQL's own default. A
            `-c lock_timeout=...` in the URL's `options` wins over it.
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


def make_engine(
    url: str | URL,
    settings: EngineSettings | None = None,
    *,
    creator: Callable[[], Any] | None = None,
) -> Engine:
    """An engine whose connections behave as the state database needs on this backend.

    `creator` (SQLite only) supplies the DBAPI connection instead of the URL, as for the one
    connection an in-memory database shares with an async engine (`shared_memory_engines`).
    Its pools are fair (`codex_state.pool.FairQueuePool`: a waiting checkout is served before
    a returning thread can take its connection back).
    """
    parsed = parse_url(url)
    settings = settings or EngineSettings()
    try:
        if parsed.get_backend_name() == "sqlite":
            options = _sqlite_options(parsed, settings, fair=True)
            if creator is not None:
                options["creator"] = creator
            engine = create_engine(parsed, **options)
            configure_engine(engine)
            return engine
        parsed, options = _postgres_options(parsed, settings)
        return create_engine(parsed, poolclass=FairQueuePool, **options)
    except (ArgumentError, NoSuchModuleError, ImportError) as err:
        raise _driver_error(parsed, err) from err


def make_async_engine(
    url: str | URL,
    settings: EngineSettings | None = None,
    *,
    async_creator: Callable[[], Awaitable[Any]] | None = None,
) -> AsyncEngine:
    """`make_engine` for SQLAlchemy's asyncio extension, configured the same way.

    SQLite runs on aiosqlite (`sqlite+aiosqlite`), PostgreSQL on psycopg 3's async mode (the
    same `postgresql+psycopg` URL). The pragmas and the write BEGIN are installed on the async
    engine's `sync_engine` by the same `configure_engine` as for a synchronous engine.
    """
    parsed = parse_url(url)
    settings = settings or EngineSettings()
    try:
        # SQLAlchemy's asyncio needs greenlet: say so now, not at the first call.
        importlib.import_module("greenlet")
        from sqlalchemy.ext.asyncio import create_async_engine

        if parsed.get_backend_name() == "sqlite":
            options = _sqlite_options(parsed, settings, fair=False)
            if async_creator is not None:
                options["async_creator"] = async_creator
            engine = create_async_engine(parsed.set(drivername="sqlite+aiosqlite"), **options)
            configure_engine(engine.sync_engine, busy_timeout_ms=SQLITE_ASYNC_BUSY_TIMEOUT_MS)
            return engine
        # No pre-ping: it is a round trip per unit of work (one of five for a job renewal, and
        # about 20% of the async facade's time per call, measured), where the sync driver's
        # costs a fraction. `AsyncStateRuntime` instead reruns, once, a unit whose connection
        # turns out dead before its commit (nothing was committed; SQLAlchemy then recycles
        # the pool's older connections), which covers what the pre-ping is for: connections
        # that died in the pool (a server restart, an idle timeout).
        parsed, options = _postgres_options(parsed, settings)
        engine = create_async_engine(parsed, **options)
        if engine.dialect.driver == "psycopg":
            _skip_idle_rollbacks(engine.sync_engine, _psycopg_in_transaction)
        return engine
    except (ArgumentError, InvalidRequestError, NoSuchModuleError, ImportError) as err:
        raise _driver_error(parsed, err, extra="aio") from err


def _postgres_options(url: URL, settings: EngineSettings) -> tuple[URL, dict[str, Any]]:
    """The URL with a bounded lock wait, and the pool's options (no pre-ping).

    No `pool_pre_ping`: it cost a round trip on every checkout (about 55 us of a 300 us renew
    here), and a connection that died in the pool surfaces as an invalidated-connection error
    on its first statement, which the runtime reruns (the whole pool is refreshed then).
    `lock_timeout` rides in libpq's startup `options`: no extra round trip on connect; put
    before the URL's own options, so a `-c lock_timeout=...` there still wins.
    """
    size = settings.pool_size or POSTGRESQL_POOL_SIZE
    options = f"-c lock_timeout={round(settings.lock_timeout * 1000)}"
    if isinstance(given := url.query.get("options"), str):
        options = f"{options} {given}"
    pool = {"pool_size": size, "max_overflow": size, "pool_timeout": settings.pool_timeout}
    return url.update_query_dict({"options": options}), pool


def _driver_error(url: URL, err: Exception, *, extra: str | None = None) -> StateDbOpenError:
    shown = url.render_as_string(hide_password=True)
    hint = f" (install codex-state[{extra}])" if extra and isinstance(err, ImportError) else ""
    return StateDbOpenError(f"cannot open database URL {shown!r}: {err}{hint}")


def _sqlite_options(url: URL, settings: EngineSettings, *, fair: bool) -> dict[str, Any]:
    if is_sqlite_memory(url):
        # One connection is the database; every session shares it (the runtime serialises use).
        return {"connect_args": {"check_same_thread": False}, "poolclass": StaticPool}
    size = settings.pool_size or SQLITE_POOL_SIZE
    if size > SQLITE_POOL_SIZE:
        raise InvalidInputError(f"pool_size is at most {SQLITE_POOL_SIZE} on SQLite: {size}")
    options: dict[str, Any] = {
        "connect_args": {"check_same_thread": False},
        "pool_size": size,
        "max_overflow": 0,
        "pool_timeout": settings.pool_timeout,
    }
    if fair:  # a synchronous pool only (the async engine's units queue on a semaphore)
        options["poolclass"] = FairQueuePool
    return options


def configure_engine(engine: Engine, *, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> None:
    """Install the state database's connection settings on a SQLite engine (sync or async).

    Every new connection gets the pragmas; every transaction begins as its Session declares
    (`_begin_as_declared`). For an `AsyncEngine` pass its `sync_engine`: the events and the
    dialect run inside SQLAlchemy's greenlet there, where the adapted aiosqlite connection's
    cursor calls are synchronous like sqlite3's.
    """
    memory = is_sqlite_memory(engine.url)
    read_only = is_read_only(engine.url)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # We issue BEGIN ourselves (below); pysqlite's implicit BEGIN would always be DEFERRED.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # Wait for another writer instead of failing at once with "database is locked".
            cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
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


class SharedMemoryConnection(sqlite3.Connection):
    """The one sqlite3 connection of an in-memory database shared by a sync and an async engine.

    An in-memory database lives as long as its connection, so the engines' pools must not end
    it: their `close` is a no-op and the owner calls `release` once both engines are disposed.
    """

    def close(self) -> None:
        pass

    def release(self) -> None:
        super().close()


def shared_memory_engines(url: URL) -> tuple[Engine, AsyncEngine, SharedMemoryConnection]:
    """A sync and an async engine on one in-memory SQLite database (one shared connection).

    The async engine reaches it through aiosqlite's thread, the sync one directly (the
    connection is opened with `check_same_thread=False`); the caller serialises their use.
    """
    try:
        import aiosqlite  # noqa: F401  (imported by the creator below, at the first call)
    except ImportError as err:
        raise _driver_error(url, err, extra="aio") from err
    probe = create_engine(url, poolclass=StaticPool)
    args, kwargs = probe.dialect.create_connect_args(url)
    probe.dispose()
    kwargs.update(check_same_thread=False, factory=SharedMemoryConnection)
    connect: Callable[..., Any] = sqlite3.connect
    connection = cast(SharedMemoryConnection, connect(*args, **kwargs))

    async def async_creator() -> Any:
        import aiosqlite

        wrapper = aiosqlite.Connection(lambda: connection, 64)
        # A daemon thread, as SQLAlchemy's own aiosqlite connect makes it (before aiosqlite
        # 0.22 the connection was itself the thread).
        thread: Any = getattr(wrapper, "_thread", wrapper)
        thread.daemon = True
        return await wrapper

    try:
        sync_engine = make_engine(url, creator=lambda: connection)
        async_engine = make_async_engine(url, async_creator=async_creator)
    except BaseException:
        connection.release()
        raise
    return sync_engine, async_engine, connection


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

    if dialect.is_async:
        # aiosqlite: the driver connection's `execute` is a coroutine, awaited here in
        # SQLAlchemy's greenlet (one trip to aiosqlite's thread, like the sync one call).
        def do_begin(dbapi_connection: Any) -> None:
            write = dbapi_connection.info.pop(_WRITE_BEGIN, False)
            await_(dbapi_connection.driver_connection.execute(_BEGIN[write]))

        _skip_idle_rollbacks(engine, _aiosqlite_in_transaction)

    else:

        def do_begin(dbapi_connection: Any) -> None:
            write = dbapi_connection.info.pop(_WRITE_BEGIN, False)
            dbapi_connection.driver_connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    # Instance attributes shadow the dialect class's methods for this engine only.
    dialect.set_connection_execution_options = set_connection_execution_options  # type: ignore[method-assign]
    dialect.do_begin = do_begin  # type: ignore[method-assign]


_BEGIN = {True: "BEGIN IMMEDIATE", False: "BEGIN"}


def _skip_idle_rollbacks(engine: Engine, in_transaction: Callable[[Any], bool]) -> None:
    """An async engine's rollbacks of a connection with no transaction open become no-ops.

    The pool resets every connection it takes back, also after a commit (and after a
    Session's own rollback): the driver would do nothing, but asking it costs an await, and
    with aiosqlite a trip to its thread, one of six in a unit of work. In the dialect, like
    `_begin_as_declared`, to keep event dispatch off.
    """
    dialect = engine.dialect
    rollback = dialect.do_rollback

    def do_rollback(dbapi_connection: Any) -> None:
        try:
            idle = not in_transaction(dbapi_connection.driver_connection)
        except Exception:  # a closed connection: let the rollback report it
            idle = False
        if not idle:
            rollback(dbapi_connection)

    dialect.do_rollback = do_rollback  # type: ignore[method-assign]


def _aiosqlite_in_transaction(connection: Any) -> bool:
    return bool(connection.in_transaction)


def _psycopg_in_transaction(connection: Any) -> bool:
    # psycopg.pq.TransactionStatus: IDLE is 0 (INTRANS, INERROR and ACTIVE need a rollback).
    return int(connection.info.transaction_status) != 0


WRITE_SESSION_OPTIONS: Mapping[str, Any] = {WRITE_OPTION: True}
"""`Session(engine, execution_options=WRITE_SESSION_OPTIONS)` is a write Session (see above)."""


def write_session(bind: Engine | Connection, **kwargs: Any) -> Session:
    """A Session whose transaction takes SQLite's write lock up front (PostgreSQL: no effect)."""
    return Session(bind, execution_options=WRITE_SESSION_OPTIONS, **kwargs)
