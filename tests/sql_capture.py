"""Capture the SQL a runtime sends, whether through SQLAlchemy or a `FastQuery` cursor."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from sqlalchemy import Engine, event
from sqlalchemy.engine import Dialect

from codex_state.fastread import FastQuery, Params


@contextmanager
def captured_sql(
    engine: Engine, keep: Callable[[str], bool] = lambda _: True
) -> Iterator[list[tuple[str, Any]]]:
    """(statement, driver parameters) of every statement `keep` accepts, in order sent.

    Fast reads bypass the engine's cursor events, so `FastQuery.prepare` (the one place their
    SQL and arguments are made) is watched too.
    """
    statements: list[tuple[str, Any]] = []

    def on_cursor(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if keep(statement):
            statements.append((statement, parameters))

    prepare = FastQuery.prepare

    def watched(query: FastQuery, dialect: Dialect, params: Params) -> tuple[str, Any]:
        sql, arguments = prepare(query, dialect, params)
        if keep(sql):
            statements.append((sql, arguments))
        return sql, arguments

    event.listen(engine, "before_cursor_execute", on_cursor)
    try:
        with mock.patch.object(FastQuery, "prepare", watched):
            yield statements
    finally:
        event.remove(engine, "before_cursor_execute", on_cursor)
