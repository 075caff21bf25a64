"""The one place that knows SQLite and PostgreSQL spell some statements differently."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

Insert = sqlite.Insert | postgresql.Insert

S = TypeVar("S")


def dialect_insert(dialect_name: str, table: Table) -> Insert:
    """`INSERT` with `ON CONFLICT` support for the given backend."""
    if dialect_name == "sqlite":
        return sqlite.insert(table)
    return postgresql.insert(table)


class PerDialect(Generic[S]):
    """A statement built once per backend and reused, so SQLAlchemy's compiled cache hits."""

    def __init__(self, build: Callable[[str], S]) -> None:
        self._build = build
        self._built: dict[str, S] = {}

    def __call__(self, session: Session) -> S:
        return self.for_dialect(session.get_bind().dialect.name)

    def for_dialect(self, name: str) -> S:
        """The statement for the backend called `name` (`Dialect.name`), built on first use."""
        statement = self._built.get(name)
        if statement is None:
            statement = self._built[name] = self._build(name)
        return statement
