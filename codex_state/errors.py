"""The package's exception types and the one place driver errors are translated."""

from __future__ import annotations

from contextlib import AbstractContextManager

from sqlalchemy import exc as sa_exc


class StateError(Exception):
    """Root of every error raised by codex_state."""


class StateDbOpenError(StateError):
    """The database could not be opened or created (bad path, bad URL, not a database)."""


class SchemaMismatchError(StateError):
    """An existing database's schema differs from what this package expects."""


class NewerCodexDatabaseError(SchemaMismatchError):
    """The database was made by a newer Codex, whose schema codex-state cannot adopt."""


class ReadOnlyDatabaseError(StateDbOpenError):
    """The database must be created or migrated first, but it was opened read-only."""


class InvalidInputError(StateError, ValueError):
    """An argument is out of range or malformed; nothing was written."""


class InvalidThreadIdError(InvalidInputError):
    """A thread id is not a UUID (bad input like any other, so also an `InvalidInputError`)."""


class ThreadNotFoundError(StateError, LookupError):
    """An operation needs a thread row that does not exist."""

    def __init__(self, thread_id: object) -> None:
        super().__init__(f"thread not found: {thread_id}")
        self.thread_id = thread_id


class DatabaseError(StateError):
    """A database driver error, wrapped; the original is kept as ``__cause__``."""


class LockTimeoutError(DatabaseError):
    """A statement gave up waiting for a lock another transaction held (PostgreSQL's
    `lock_timeout`, see `EngineSettings`); the message names what was waited for."""


class RolloutReadError(StateError):
    """A rollout file cannot be read, or yields no thread (empty, no session_meta, bad name)."""


class BackfillRunningError(StateError):
    """Another process holds the backfill lease, or took it over from this one."""


class translate_db_errors(AbstractContextManager[None]):  # lower case, like contextlib.suppress
    """Re-raise SQLAlchemy/driver errors as `DatabaseError` so they never escape raw.

    `dbapi_errors` adds driver exception types (e.g. `sqlite3.Error`) for work that runs on a
    raw DBAPI connection, where SQLAlchemy is not there to wrap them. A class rather than a
    generator context manager: it wraps every unit of work, and the generator costs ~1 us more.
    """

    def __init__(self, action: str, dbapi_errors: tuple[type[Exception], ...] = ()) -> None:
        self._action = action
        self._errors: tuple[type[Exception], ...] = (sa_exc.SQLAlchemyError, *dbapi_errors)

    def __enter__(self) -> None:
        return None

    def __exit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        if isinstance(exc, self._errors) and not isinstance(exc, StateError):
            if is_lock_timeout(exc):
                message = lock_timeout_message(exc)
                raise LockTimeoutError(f"{self._action} failed: {message}") from exc
            raise DatabaseError(f"{self._action} failed: {driver_message(exc)}") from exc


_LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout expired (or NOWAIT found the row locked)
# The server ends the connection: admin shutdown, crash shutdown, cannot connect now (starting
# up or shutting down), idle-session timeout. Class 08 is a connection exception.
_CONNECTION_ENDED = frozenset({"57P01", "57P02", "57P03", "57P05"})


def _driver_error(exc: BaseException) -> BaseException:
    return exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc


def is_lock_timeout(exc: BaseException) -> bool:
    """True for PostgreSQL's "canceling statement due to lock timeout" (wrapped or bare)."""
    return getattr(_driver_error(exc), "sqlstate", None) == _LOCK_NOT_AVAILABLE


def lock_timeout_message(exc: BaseException) -> str:
    """One line: that the wait ran out, and on what (PostgreSQL's context names the table)."""
    diag = getattr(_driver_error(exc), "diag", None)
    context = first_line(getattr(diag, "context", None) or "")
    where = f" ({context})" if context else ""
    return f"gave up waiting for a lock held by another transaction{where}"


def connection_lost(exc: BaseException) -> bool:
    """True when a driver error means the connection to the server is gone.

    PostgreSQL: the server ended it (57P01-57P05, class 08), or libpq itself failed (psycopg's
    `OperationalError` with no SQLSTATE: "server closed the connection unexpectedly",
    "consuming input failed", "connection failed"). SQLite connections are never lost.
    """
    error = _driver_error(exc)
    if not type(error).__module__.startswith("psycopg"):
        return False
    sqlstate = getattr(error, "sqlstate", None)
    if sqlstate is None:
        return any(cls.__name__ == "OperationalError" for cls in type(error).__mro__)
    return sqlstate in _CONNECTION_ENDED or sqlstate.startswith("08")


def first_line(text: str, default: str = "") -> str:
    """The first non-blank line of `text`, stripped (`default` when there is none)."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return default


def driver_message(exc: BaseException) -> str:
    """What the driver said, in one line, without the SQL or its bound parameters.

    SQLAlchemy's own text appends `[SQL: ...]`, `[parameters: ...]` and a "Background on this
    error" link; the parameters are users' data (log messages, memories) and must not end up
    in an exception message, a log line or a terminal. Drivers put details such as
    PostgreSQL's `DETAIL: Key (id)=(...)` on later lines, so only the first line is kept.
    """
    if isinstance(exc, sa_exc.StatementError) and exc.orig is not None:
        return first_line(str(exc.orig), type(exc.orig).__name__)
    if isinstance(exc, sa_exc.SQLAlchemyError) and exc.args and isinstance(exc.args[0], str):
        return first_line(exc.args[0], type(exc).__name__)  # args[0] has no "Background" link
    return first_line(str(exc), type(exc).__name__)
