"""What every repository shares: its Session, its clock, and translated driver errors.

A repository is constructed from a SQLAlchemy `Session` (the runtime's or a caller's), runs every
statement in that Session's transaction and never commits: the Session's owner decides. Each
public method checks its arguments before any statement and translates driver errors into
`DatabaseError` (`@translated`), so a repository used directly is exactly as safe as
`StateRuntime`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy.orm import Session

from codex_state.clock import Clock, DatabaseClock, SystemClock
from codex_state.errors import InvalidInputError, translate_db_errors

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R", bound="Repository")

DEFAULT_PROVIDER = "openai"
"""Codex's default model provider, recorded for rollouts that name none."""


class Repository:
    """Base of the public repositories: `Repository(session, *, clock=None)`.

    Args:
        session: the Session whose transaction every statement runs in. For writes on SQLite,
            begin it as a write (`codex_state.engine.write_session` or
            `runtime.session(write=True)`) so it takes the write lock up front.
        clock: where lease and `updated_at` times come from; default the database server's
            clock on PostgreSQL (shared by every host) and this host's clock on SQLite.
    """

    __slots__ = ("_clock", "_session")

    def __init__(self, session: Session, *, clock: Clock | None = None) -> None:
        if not isinstance(session, Session):
            raise InvalidInputError(
                f"{type(self).__name__} takes a sqlalchemy.orm.Session, got {session!r}"
            )
        self._session = session
        self._clock = clock

    @property
    def session(self) -> Session:
        return self._session

    def _now(self) -> int:
        """Epoch seconds now, by this repository's clock, inside the Session's transaction."""
        connection = self._session.connection()
        clock = self._clock
        if clock is None:
            clock = self._clock = _SYSTEM if connection.dialect.name == "sqlite" else _DATABASE
        return clock.now(connection)


_SYSTEM = SystemClock()
_DATABASE = DatabaseClock()


def translated(method: Callable[Concatenate[R, P], T]) -> Callable[Concatenate[R, P], T]:
    """Run a repository method with driver errors raised as `DatabaseError` (cause kept)."""
    action = method.__name__

    @functools.wraps(method)
    def wrapper(self: R, /, *args: P.args, **kwargs: P.kwargs) -> T:
        with translate_db_errors(action):
            return method(self, *args, **kwargs)

    return wrapper
