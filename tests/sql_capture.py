"""Capture the SQL a runtime sends: every statement goes through the engine's cursor events."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event


@contextmanager
def captured_sql(
    engine: Engine, keep: Callable[[str], bool] = lambda _: True
) -> Iterator[list[tuple[str, Any]]]:
    """(statement, driver parameters) of every statement `keep` accepts, in order sent."""
    statements: list[tuple[str, Any]] = []

    def on_cursor(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if keep(statement):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", on_cursor)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", on_cursor)
