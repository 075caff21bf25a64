"""`AsyncStateRuntime`: the same operations as `StateRuntime`, on SQLAlchemy's asyncio extension.

Every data method (declared once in `codex_state.operations`) is one unit of work on an
`AsyncSession`: the synchronous repository method runs through `AsyncSession.run_sync`, inside
SQLAlchemy's greenlet, where each statement's driver call is awaited on the event loop
(psycopg 3's async connection on PostgreSQL, aiosqlite on SQLite). So there is one copy of every
statement and rule, and no thread per call: a call that waits for the database, for a pooled
connection or for SQLite's write lock only suspends its task.

What is the same as `StateRuntime`: the engine's settings (`codex_state.engine.configure_engine`:
WAL, busy_timeout, foreign keys, `BEGIN IMMEDIATE` for writes), the schema check and migration
on open (run by the synchronous code in a worker thread), the errors, the retry of a unit of
work while the database is busy (with `asyncio.sleep` between attempts), and the rule that an
in-memory database is one connection whose units take turns (an `asyncio.Lock`).

`sync_runtime()` gives a `StateRuntime` on the same database for code that runs in threads of
its own, such as `codex_state.logging.StateLogHandler` (see docs/asyncio.md).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from sqlalchemy import URL, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from codex_state.clock import Clock
from codex_state.engine import (
    POOL_TIMEOUT_SECONDS,
    POSTGRESQL_LOCK_TIMEOUT_SECONDS,
    WRITE_SESSION_OPTIONS,
    EngineSettings,
    SharedMemoryConnection,
    is_sqlite_memory,
    make_async_engine,
    make_engine,
    shared_memory_engines,
)
from codex_state.errors import StateError, translate_db_errors
from codex_state.metrics import METRIC_DB_INIT, Metrics, count
from codex_state.operations import Facade, Operation
from codex_state.runtime import (
    RETRY_INTERVAL,
    RETRY_SECONDS,
    StateRuntime,
    is_retryable_error,
    open_migrated,
    parse_open_url,
    prepare_codex_home,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

__all__ = ["AsyncStateRuntime"]

T = TypeVar("T")


class AsyncStateRuntime(Facade):
    """Awaitable access to a state database: `await db.list_threads(50)`.

    Open it with `await AsyncStateRuntime.init(...)` or `await AsyncStateRuntime.from_url(...)`
    and use it from one event loop; close it with `await db.aclose()` or `async with`.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        default_provider: str,
        *,
        codex_home: Path | None = None,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
        sync_engine: Engine | None = None,
        shared_connection: SharedMemoryConnection | None = None,
    ) -> None:
        """Wrap an async engine whose schema is already at head; prefer `init` or `from_url`.

        `sync_engine` is a configured engine on the same database for `sync_runtime()` (made
        from the URL when needed); an in-memory database passes the engines and the connection
        they share (`codex_state.engine.shared_memory_engines`).
        """
        from sqlalchemy.ext.asyncio import async_sessionmaker

        self._engine = engine
        self._default_provider = default_provider
        self._codex_home = codex_home
        self._metrics = metrics
        self._clock = clock
        self._sync_engine = sync_engine
        self._shared_connection = shared_connection
        self._sync_runtime: StateRuntime | None = None
        self._sync_lock = threading.Lock()
        self._sessions = {
            False: async_sessionmaker(engine, expire_on_commit=False, autoflush=False),
            True: async_sessionmaker(
                engine,
                expire_on_commit=False,
                autoflush=False,
                execution_options=WRITE_SESSION_OPTIONS,
            ),
        }
        self._memory = is_sqlite_memory(engine.url)
        # An in-memory SQLite database is one shared connection: units of work take turns.
        self._lock = asyncio.Lock()
        self._serial: AbstractAsyncContextManager[object] = (
            self._lock if self._memory else nullcontext()
        )
        # Elsewhere a unit of work waits for one of the pool's connections here, before it
        # checks one out: a task waiting on a semaphore costs a future, where waiting in
        # SQLAlchemy's async pool costs an `asyncio.wait_for` task per checkout (with 64 tasks
        # on 10 connections most calls wait). No timeout: the caller's own deadline applies.
        # (`session()` blocks take no slot: a call made inside one must not wait for it.)
        self._slots: AbstractAsyncContextManager[object] = (
            self._lock if self._memory else _slots(engine)
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._created = False

    # ----------------------------------------------------------------------------- lifecycle

    @classmethod
    async def init(
        cls,
        codex_home: str | Path,
        default_provider: str,
        *,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
        pool_size: int | None = None,
        pool_timeout: float = POOL_TIMEOUT_SECONDS,
    ) -> Self:
        """Open (creating and migrating) `<codex_home>/state_4.sqlite`, as `StateRuntime.init`.

        The filesystem work and the schema check run in a worker thread.
        """
        settings = EngineSettings(pool_size=pool_size, pool_timeout=pool_timeout)
        home, url, existed = await asyncio.to_thread(prepare_codex_home, codex_home, metrics)
        database = str(url.database)
        db = await cls._open(url, database, default_provider, home, metrics, clock, settings)
        if not existed:
            count(metrics, METRIC_DB_INIT, {"status": "created"})
        return db

    @classmethod
    async def from_url(
        cls,
        url: str | URL,
        default_provider: str,
        *,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
        pool_size: int | None = None,
        pool_timeout: float = POOL_TIMEOUT_SECONDS,
        lock_timeout: float = POSTGRESQL_LOCK_TIMEOUT_SECONDS,
    ) -> Self:
        """Open any URL `StateRuntime.from_url` takes (`sqlite://`, `sqlite:///path`,
        `postgresql+psycopg://...`); the async driver is chosen for it. The pool and lock
        settings are `StateRuntime.from_url`'s (`codex_state.engine.EngineSettings`)."""
        settings = EngineSettings(pool_size, pool_timeout, lock_timeout)
        parsed, shown = parse_open_url(url, metrics)
        db = await cls._open(parsed, shown, default_provider, None, metrics, clock, settings)
        if db._created:
            count(metrics, METRIC_DB_INIT, {"status": "created"})
        return db

    @classmethod
    async def _open(
        cls,
        url: URL,
        shown: str,
        default_provider: str,
        codex_home: Path | None,
        metrics: Metrics | None,
        clock: Clock | None,
        settings: EngineSettings,
    ) -> Self:
        shared: SharedMemoryConnection | None = None
        try:
            if is_sqlite_memory(url):
                memory_engine, engine, shared = shared_memory_engines(url)
                make: Callable[[], Engine] = lambda: memory_engine  # noqa: E731
            else:
                engine = make_async_engine(url, settings)
                make = lambda: make_engine(url, settings)  # noqa: E731
        except StateError:
            count(metrics, METRIC_DB_INIT, {"status": "open_error"})
            raise

        def open_sync() -> tuple[Engine, bool]:
            sync_engine, created = open_migrated(make, shown, metrics)
            if shared is None:
                sync_engine.dispose()  # kept for sync_runtime(), without holding a connection
            return sync_engine, created

        try:
            # Alembic and the schema check are synchronous: a worker thread, a sync engine.
            sync_engine, created = await asyncio.to_thread(open_sync)
        except BaseException:
            await engine.dispose()
            if shared is not None:
                shared.release()
            raise
        db = cls(
            engine,
            default_provider,
            codex_home=codex_home,
            metrics=metrics,
            clock=clock,
            sync_engine=sync_engine,
            shared_connection=shared,
        )
        db._loop = asyncio.get_running_loop()
        db._created = created
        return db

    async def aclose(self) -> None:
        """Release every connection (and the `sync_runtime()`'s). Further calls raise
        `StateError`."""
        if self._closed:
            return
        self._closed = True
        with self._sync_lock:
            runtime, self._sync_runtime = self._sync_runtime, None
        if runtime is not None:
            await asyncio.to_thread(runtime.close)
        elif self._sync_engine is not None:
            await asyncio.to_thread(self._sync_engine.dispose)
        await self._engine.dispose()
        if self._shared_connection is not None:
            self._shared_connection.release()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def engine(self) -> AsyncEngine:
        """The configured `AsyncEngine`: bind your own `AsyncSession`s to it."""
        return self._engine

    def sync_runtime(self) -> StateRuntime:
        """A `StateRuntime` on the same database, for code that runs in threads of its own.

        Made on first use and closed by `aclose`. Its calls block: use it from other threads
        (a `StateLogHandler`'s writer, `asyncio.to_thread`), never on the event loop. On a SQLite
        file or PostgreSQL it has a pool of its own; on an in-memory database it shares the one
        connection and takes turns with this runtime's units (so it must not be called from the
        event loop's thread, where it would wait for itself: it raises `StateError` there).
        """
        self._check_open()
        with self._sync_lock:
            runtime = self._sync_runtime
            if runtime is None:
                engine = self._sync_engine
                if engine is None:
                    engine = self._sync_engine = make_engine(self._engine.url)
                runtime = StateRuntime(
                    engine,
                    self._default_provider,
                    codex_home=self._codex_home,
                    metrics=self._metrics,
                    clock=self._clock,
                )
                if self._memory:
                    runtime._serial = _LoopLock(self._lock, self._running_loop())
                self._sync_runtime = runtime
            return runtime

    # -------------------------------------------------------------------------- unit of work

    @asynccontextmanager
    async def session(self, *, write: bool = False) -> AsyncIterator[AsyncSession]:
        """An `AsyncSession` on this database for a block of your own work.

        Commits when the block exits normally, rolls back when it raises; `write=True` takes
        SQLite's write lock up front. Use the repositories in it through `run_sync`:
        `await session.run_sync(lambda s: db.repository(Phase1JobRepository, s).try_claim_...)`.
        The block is not rerun when the database is busy; `run_in_transaction` is.
        """
        self._check_open()
        async with self._serial, self._sessions[write]() as session:
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise
            with translate_db_errors("commit"):
                await session.commit()

    async def run_in_transaction(self, work: Callable[[Session], T], *, write: bool = False) -> T:
        """`work(session)` in one transaction, rerun whole while the database is busy.

        `work` is synchronous code on a `Session` (the repositories, your own ORM or Core
        statements); it runs through `AsyncSession.run_sync`, so its statements are awaited
        on the event loop. It must be safe to run again, as for `StateRuntime`.
        """
        return await self._transact("run_in_transaction", work, write)

    def _bind(self, operation: Operation[Any, Any, Any]) -> Callable[..., Any]:
        method, repository, write, name = (
            operation.method,
            operation.repository,
            operation.write,
            operation.name,
        )
        make = self.repository
        transact = self._transact

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await transact(
                name, lambda s: method(make(repository, s), *args, **kwargs), write
            )

        call.__signature__ = _public_signature(method)  # type: ignore[attr-defined]
        return call

    async def _transact(self, action: str, work: Callable[[Session], T], write: bool) -> T:
        deadline: float | None = None
        reconnected = False
        while True:
            self._check_open()
            try:
                async with self._slots:
                    # One greenlet for the whole unit: the work, the commit and the release of
                    # the connection, as `StateRuntime._transact` does them (an AsyncSession's
                    # own commit and close would each spawn another).
                    return await self._sessions[write]().run_sync(_unit, work, write, action)
            except _Disconnected as signal:
                # In place of a pre-ping (see `codex_state.engine.make_async_engine`): a pooled
                # connection found dead before the commit is replaced, and the unit rerun once.
                if reconnected:
                    raise signal.error from signal.error.__cause__
                reconnected = True
                continue
            except (StateError, DBAPIError) as err:
                if not is_retryable_error(err):
                    raise
                now = time.monotonic()
                deadline = deadline or now + RETRY_SECONDS
                if now >= deadline:
                    raise
            await asyncio.sleep(RETRY_INTERVAL)

    def _check_open(self) -> None:
        if self._closed:
            raise StateError("the AsyncStateRuntime is closed")

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop


class _Disconnected(Exception):
    """The unit's connection turned out dead before its commit: nothing was committed."""

    def __init__(self, error: StateError | DBAPIError) -> None:
        super().__init__(str(error))
        self.error = error


def _slots(engine: AsyncEngine) -> AbstractAsyncContextManager[object]:
    """One slot per connection the engine's pool can hold at once (no limit if unknown)."""
    pool = engine.pool
    size = getattr(pool, "size", None)
    overflow = getattr(pool, "_max_overflow", None)
    if not callable(size) or not isinstance(overflow, int) or overflow < 0:
        return nullcontext()
    return asyncio.Semaphore(int(size()) + overflow)


def _unit(session: Session, work: Callable[[Session], T], write: bool, action: str) -> T:
    """One unit of work on the sync side of an AsyncSession (inside its greenlet)."""
    try:
        try:
            result = work(session)
        except (StateError, DBAPIError) as err:
            cause = err if isinstance(err, DBAPIError) else err.__cause__
            if isinstance(cause, DBAPIError) and cause.connection_invalidated:
                raise _Disconnected(err) from err
            raise
        if write:
            with translate_db_errors(action):
                session.commit()
        return result
    finally:
        session.close()  # rolls back whatever is left (a read, a failure, a cancellation)


def _public_signature(method: Callable[..., Any]) -> inspect.Signature:
    """The repository method's signature without `self`: what both facades take."""
    signature = inspect.signature(method)
    return signature.replace(parameters=list(signature.parameters.values())[1:])


class _LoopLock:
    """The in-memory database's unit lock (an `asyncio.Lock`), taken from other threads.

    `sync_runtime()` on an in-memory database shares the one connection, so its units take the
    async runtime's lock: acquired on the event loop, waited for in the calling thread.
    Re-entrant per thread, like `StateRuntime`'s own lock.
    """

    def __init__(self, lock: asyncio.Lock, loop: asyncio.AbstractEventLoop) -> None:
        self._lock = lock
        self._loop = loop
        self._owner: int | None = None
        self._depth = 0

    def __enter__(self) -> None:
        me = threading.get_ident()
        if self._owner == me:
            self._depth += 1
            return
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            raise StateError(
                "sync_runtime() was called on the event loop of its in-memory AsyncStateRuntime "
                "and would wait for itself: await the AsyncStateRuntime's method instead"
            )
        if not self._loop.is_running():
            raise StateError("the event loop of the AsyncStateRuntime is not running")
        asyncio.run_coroutine_threadsafe(self._lock.acquire(), self._loop).result()
        self._owner = me
        self._depth = 1

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            self._loop.call_soon_threadsafe(self._lock.release)
