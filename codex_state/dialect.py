"""The one place that knows SQLite and PostgreSQL spell some statements differently."""

from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

Insert = sqlite.Insert | postgresql.Insert


def dialect_insert(dialect_name: str, table: Table) -> Insert:
    """`INSERT` with `ON CONFLICT` support for the given backend."""
    if dialect_name == "sqlite":
        return sqlite.insert(table)
    return postgresql.insert(table)
