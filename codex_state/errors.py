"""The package's exception types and the one place driver errors are translated."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc as sa_exc


class StateError(Exception):
    """Root of every error raised by codex_state."""


class StateDbOpenError(StateError):
    """The database could not be opened or created (bad path, bad URL, not a database)."""


class SchemaMismatchError(StateError):
    """An existing database's schema differs from what this package expects."""


class InvalidThreadIdError(StateError, ValueError):
    """A thread id is not a UUID."""


class ThreadNotFoundError(StateError, LookupError):
    """An operation needs a thread row that does not exist."""

    def __init__(self, thread_id: object) -> None:
        super().__init__(f"thread not found: {thread_id}")
        self.thread_id = thread_id


class DatabaseError(StateError):
    """A database driver error, wrapped; the original is kept as ``__cause__``."""


class InvalidInputError(StateError, ValueError):
    """An argument is out of range or malformed; nothing was written."""


class RolloutReadError(StateError):
    """A rollout file cannot be read, or yields no thread (empty, no session_meta, bad name)."""


class BackfillRunningError(StateError):
    """Another process holds the backfill lease, or took it over from this one."""


@contextmanager
def translate_db_errors(action: str) -> Iterator[None]:
    """Re-raise SQLAlchemy/driver errors as `DatabaseError` so they never escape raw."""
    try:
        yield
    except StateError:
        raise
    except sa_exc.SQLAlchemyError as err:
        raise DatabaseError(f"{action} failed: {err}") from err
