"""`StateRuntime`: the composition root (engine, sessions, clock, metrics) and the facade.

Every data method (declared once in `codex_state.operations`) is one unit of work: a Session
transaction around one repository call, committed when it returns and rolled back when it
raises. Writes begin with the write lock held (`codex_state.engine`); a unit that meets a busy
database (or, on PostgreSQL, a serialization failure or deadlock) is rerun whole, which is safe
because the rolled-back attempt left nothing behind. Callers get the same seam:
`session(write=...)` for a block of their own and `run_in_transaction` for a function that may
be rerun.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from sqlalchemy import URL, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from codex_state.clock import Clock
from codex_state.engine import (
    POOL_TIMEOUT_SECONDS,
    POSTGRESQL_LOCK_TIMEOUT_SECONDS,
    WRITE_SESSION_OPTIONS,
    EngineSettings,
    is_sqlite_memory,
    make_engine,
    parse_url,
)
from codex_state.errors import StateDbOpenError, StateError, connection_lost, translate_db_errors
from codex_state.metrics import METRIC_DB_INIT, Metrics, count
from codex_state.migrations import ensure_schema
from codex_state.operations import Facade, Operation
from codex_state.paths import remove_legacy_state_files, state_db_path
from codex_state.pool import FairLock

__all__ = ["Metrics", "StateRuntime"]

RETRY_SECONDS = 30.0
"""How long a unit of work is rerun while the database is busy."""

RETRY_INTERVAL = 0.01
"""The pause between two attempts of a unit of work."""

_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock
_RECONNECT_PAUSE_MAX = 0.5  # a lost connection's reruns back off to this

T = TypeVar("T")


class StateRuntime(Facade):
    """Handle on one state database. Safe to share between threads; close it when done."""

    def __init__(
        self,
        engine: Engine,
        default_provider: str,
        *,
        codex_home: Path | None = None,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
    ) -> None:
        """Wrap an engine whose schema is already at head; prefer `init` or `from_url`."""
        self._engine = engine
        self._default_provider = default_provider
        self._codex_home = codex_home
        self._metrics = metrics
        self._clock = clock
        # Session(...) itself rather than a sessionmaker: its keyword merging cost 4 us a unit.
        options: dict[str, Any] = {"expire_on_commit": False, "autoflush": False}
        write_options = {**options, "execution_options": WRITE_SESSION_OPTIONS}
        self._sessions: dict[bool, Callable[[], Session]] = {
            False: partial(Session, engine, **options),
            True: partial(Session, engine, **write_options),
        }
        # An in-memory SQLite database is one shared connection: units of work take turns.
        self._serial: AbstractContextManager[object] = (
            threading.RLock() if is_sqlite_memory(engine.url) else nullcontext()
        )
        # A SQLite file's write units queue here, in arrival order, before BEGIN IMMEDIATE:
        # SQLite's busy handler sleeps and retries, so a writer could lose to newcomers for
        # seconds (docs/architecture.md, "Faults"). Caller Sessions do not take it.
        self._writer: AbstractContextManager[object] = (
            FairLock("this process's other SQLite writers", RETRY_SECONDS)
            if engine.dialect.name == "sqlite" and not is_sqlite_memory(engine.url)
            else nullcontext()
        )
        self._closed = False

    # ----------------------------------------------------------------------------- lifecycle

    @classmethod
    def init(
        cls,
        codex_home: str | Path,
        default_provider: str,
        *,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
        pool_size: int | None = None,
        pool_timeout: float = POOL_TIMEOUT_SECONDS,
    ) -> Self:
        """Open (creating and migrating) `<codex_home>/state_4.sqlite`.

        The directory is created if needed and legacy state files in it are removed first.
        `pool_size` (at most 5) and `pool_timeout` are as for `from_url`.
        """
        settings = EngineSettings(pool_size=pool_size, pool_timeout=pool_timeout)
        home, url, existed = prepare_codex_home(codex_home, metrics)
        database = str(url.database)
        runtime = cls._open(url, database, default_provider, home, metrics, clock, settings)
        if not existed:
            count(metrics, METRIC_DB_INIT, {"status": "created"})
        return runtime

    @classmethod
    def from_url(
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
        """Open any SQLAlchemy URL (`sqlite://`, `sqlite:///path`, `postgresql+psycopg://...`).

        Args:
            pool_size: connections kept open (default 5; PostgreSQL opens up to as many again
                under load; at most 5 on a SQLite file).
            pool_timeout: seconds a call waits for a pooled connection (default 30).
            lock_timeout: PostgreSQL: seconds a statement waits for a row lock another
                transaction holds (default 5; 0 waits forever). A claim that could not get its
                row answers `skipped_running`; other calls raise `LockTimeoutError`.
        """
        settings = EngineSettings(pool_size, pool_timeout, lock_timeout)
        parsed, shown = parse_open_url(url, metrics)
        runtime = cls._open(parsed, shown, default_provider, None, metrics, clock, settings)
        if runtime._created:
            count(metrics, METRIC_DB_INIT, {"status": "created"})
        return runtime

    @classmethod
    def _open(
        cls,
        url: URL,
        shown: str,
        default_provider: str,
        codex_home: Path | None,
        metrics: Metrics | None,
        clock: Clock | None,
        settings: EngineSettings,
    ) -> Self:
        engine, created = open_migrated(lambda: make_engine(url, settings), shown, metrics)
        runtime = cls(engine, default_provider, codex_home=codex_home, metrics=metrics, clock=clock)
        runtime._created = created
        return runtime

    _created = False

    def close(self) -> None:
        """Release every pooled connection. Further calls raise `StateError`."""
        self._closed = True
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def engine(self) -> Engine:
        """The configured engine (pragmas, pool, write BEGIN): bind your own Sessions to it."""
        return self._engine

    # -------------------------------------------------------------------------- unit of work

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A Session on this database for a block of your own work, with the repositories.

        Commits when the block exits normally, rolls back when it raises. `write=True` takes
        SQLite's write lock up front (always use it for a block that writes). The block is not
        rerun when the database is busy; `run_in_transaction` is.
        """
        self._check_open()
        with self._serial, self._sessions[write]() as session:
            try:
                yield session
            except BaseException:
                session.rollback()
                raise
            with translate_db_errors("commit"):
                session.commit()

    def run_in_transaction(self, work: Callable[[Session], T], *, write: bool = False) -> T:
        """`work(session)` in one transaction, rerun whole while the database is busy.

        `work` must be safe to run again: everything a failed attempt wrote was rolled back,
        but effects outside the database (files, messages) were not.
        """
        return self._transact("run_in_transaction", work, write)

    def _bind(self, operation: Operation[Any, Any, Any]) -> Callable[..., Any]:
        method, repository, write, name = (
            operation.method,
            operation.repository,
            operation.write,
            operation.name,
        )

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._transact(
                name, lambda s: method(self.repository(repository, s), *args, **kwargs), write
            )

        return call

    def _transact(self, action: str, work: Callable[[Session], T], write: bool) -> T:
        deadline: float | None = None
        pause = RETRY_INTERVAL
        while True:
            self._check_open()
            try:
                with (
                    self._serial,
                    self._writer if write else nullcontext(),
                    _Closing(self._sessions[write](), action) as session,
                ):
                    result = work(session)
                    if write:
                        with translate_db_errors(action):
                            session.commit()
                    return result
            except (StateError, DBAPIError) as err:
                disconnected = _is_disconnect(err)
                if not disconnected and not is_retryable_error(err):
                    raise
                now = time.monotonic()
                deadline = deadline or now + RETRY_SECONDS
                if now >= deadline:
                    raise
                if disconnected:  # the server may be restarting: back off
                    pause = min(pause * 2, _RECONNECT_PAUSE_MAX)
            time.sleep(pause)

    def _check_open(self) -> None:
        if self.closed:
            raise StateError("the StateRuntime is closed")


# ------------------------------------------------- shared with AsyncStateRuntime (codex_state.aio)


def prepare_codex_home(codex_home: str | Path, metrics: Metrics | None) -> tuple[Path, URL, bool]:
    """`init`'s filesystem part: the home made and cleaned; (home, URL, file existed)."""
    home = Path(codex_home).expanduser()
    path = state_db_path(home)
    try:
        if home.exists() and not home.is_dir():
            raise NotADirectoryError("it is not a directory")
        home.mkdir(parents=True, exist_ok=True)
        remove_legacy_state_files(home)
        existed = path.exists()
    except OSError as err:
        count(metrics, METRIC_DB_INIT, {"status": "open_error"})
        raise StateDbOpenError(f"cannot use codex home {home}: {err}") from err
    return home, URL.create("sqlite", database=str(path)), existed


def parse_open_url(url: str | URL, metrics: Metrics | None) -> tuple[URL, str]:
    """`from_url`'s URL check: the parsed URL and how to show it (password hidden)."""
    try:
        parsed = parse_url(url)
    except StateDbOpenError:
        count(metrics, METRIC_DB_INIT, {"status": "open_error"})
        raise
    return parsed, parsed.render_as_string(hide_password=True)


def open_migrated(
    make: Callable[[], Engine], shown: str, metrics: Metrics | None
) -> tuple[Engine, bool]:
    """`make()` an engine and bring its schema to head; (engine, whether it was created).

    Every failure counts an `open_error` and raises `StateError` (driver and filesystem errors
    as `StateDbOpenError` naming `shown`), with the engine disposed.
    """
    engine: Engine | None = None
    try:
        engine = make()
        created = ensure_schema(engine)
    except StateError:
        count(metrics, METRIC_DB_INIT, {"status": "open_error"})
        if engine is not None:
            engine.dispose()
        raise
    except (SQLAlchemyError, OSError) as err:
        count(metrics, METRIC_DB_INIT, {"status": "open_error"})
        if engine is not None:
            engine.dispose()
        raise open_error(shown, err) from err
    count(metrics, METRIC_DB_INIT, {"status": "opened"})
    return engine, created


def open_error(shown: str, err: BaseException) -> StateDbOpenError:
    reason = _first_line(getattr(err, "orig", None) or err)
    return StateDbOpenError(f"cannot open state database {shown}: {reason}")


def is_retryable_error(err: StateError | DBAPIError) -> bool:
    """Whether a failed unit of work may be rerun: the database was busy or locked (SQLite),
    or a serialization failure or deadlock (PostgreSQL).

    A repository's errors arrive translated (the driver error is the `__cause__`), a caller's
    own statements' raw.
    """
    return _is_retryable(err if isinstance(err, DBAPIError) else err.__cause__)


class _Closing(AbstractContextManager[Session]):
    """Close the unit's Session on the way out, its errors translated: a read's closing
    ROLLBACK is where a lost connection often shows, and it must not escape raw."""

    def __init__(self, session: Session, action: str) -> None:
        self._session, self._action = session, action

    def __enter__(self) -> Session:
        return self._session

    def __exit__(self, *exc_info: object) -> None:
        with translate_db_errors(self._action):
            self._session.close()


def _is_disconnect(err: StateError | DBAPIError) -> bool:
    """The unit's connection was lost (SQLAlchemy invalidated it) or could not be opened.

    Rerunning is safe before COMMIT (the server rolled the transaction back with the
    connection). A connection lost during COMMIT leaves its outcome unknown; the rerun then
    meets the first attempt's effect if it committed, which every write here tolerates: a claim
    answers `skipped_running`, a guarded finish or renew `False`, upserts write the same values
    (only `insert_log(s)` may store a batch twice). See docs/architecture.md, "Faults".
    """
    cause = err if isinstance(err, DBAPIError) else err.__cause__
    if isinstance(cause, DBAPIError) and cause.connection_invalidated:
        return True
    return cause is not None and connection_lost(cause)


def _first_line(err: BaseException) -> str:
    """The first line of a driver message: enough for a person, and one line for a CLI."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _is_retryable(cause: BaseException | None) -> bool:
    error = cause.orig if isinstance(cause, DBAPIError) else cause
    if isinstance(error, sqlite3.OperationalError):
        message = str(error).lower()
        return "locked" in message or "busy" in message
    return getattr(error, "sqlstate", None) in _RETRYABLE_SQLSTATES
