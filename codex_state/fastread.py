"""Hot statements on a plain DBAPI cursor, without a `Session` or `Connection`.

Why this exists: here a SQLAlchemy execution costs about 40 us and a Session unit of work about
40 us more, while SQLite answers a point read in about 4 us (measured: a `_read` unit of work
95 us, `engine.connect()` + execute 52 us, `engine.raw_connection()` + cursor 9 us, raw sqlite3
BEGIN/SELECT/COMMIT 5 us). For `get_thread`, a thread page or a log tail that overhead was most
of the call. A `FastQuery` keeps the statement in Core, so repositories still own their SQL and
each backend gets its own spelling, but compiles it once per dialect and then only binds
parameters and runs the compiled string on a cursor, returning the driver's tuples or, for
INSERT/UPDATE/DELETE, the cursor's affected-row count (`StateRuntime._fast_read` and
`_fast_write` own the transaction around it).

Only statements the driver can take as compiled qualify: no expanding (IN) or literal-execute
parameters (render one `bindparam` per element and cache a statement per element count
instead), no column type that converts values on the way in or out, and no Python-side column
default or implicit RETURNING that SQLAlchemy would add at execution. `FastQuery` refuses
anything else when it compiles, so a mistake fails loudly on the first call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter, methodcaller
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, Select, UpdateBase, bindparam
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.interfaces import DBAPIConnection, DBAPICursor

Params = Mapping[str, Any]
Statement = Select[Any] | UpdateBase
"""What a `FastQuery` runs: a SELECT, or an INSERT/UPDATE/DELETE (with or without RETURNING)."""

R = TypeVar("R")

_fetch_all: Callable[[DBAPICursor], Any] = methodcaller("fetchall")
_fetch_one: Callable[[DBAPICursor], Any] = methodcaller("fetchone")
_rowcount: Callable[[DBAPICursor], Any] = attrgetter("rowcount")


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # bind names in placeholder order (positional) or in any order
    literals: Mapping[str, Any]  # values compiled into the statement, e.g. `column != ''`
    positional: bool

    def arguments(self, params: Params) -> Sequence[Any] | dict[str, Any]:
        values = {**self.literals, **params} if self.literals else params
        if self.positional:
            return tuple([values[name] for name in self.names])
        return {name: values[name] for name in self.names}


class FastQuery:
    """A Core statement compiled once per dialect and run on a raw DBAPI connection."""

    __slots__ = ("_compiled", "statement")

    def __init__(self, statement: Statement) -> None:
        self.statement = statement
        """The Core statement, for callers that run it through a `Session` instead."""
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    def compiled(self, dialect: Dialect) -> _Compiled:
        key = (dialect.name, dialect.driver)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = _compile(self.statement, dialect)
        return compiled

    def prepare(self, dialect: Dialect, params: Params) -> tuple[str, Any]:
        """The SQL string and driver arguments for `params`, as the cursor receives them."""
        compiled = self.compiled(dialect)
        return compiled.sql, compiled.arguments(params)

    def all(
        self, connection: DBAPIConnection, dialect: Dialect, params: Params
    ) -> list[tuple[Any, ...]]:
        """Every row (of a SELECT or a RETURNING), as the driver's tuples."""
        return cast(list[tuple[Any, ...]], self._run(connection, dialect, params, _fetch_all))

    def first(
        self, connection: DBAPIConnection, dialect: Dialect, params: Params
    ) -> tuple[Any, ...] | None:
        """The first row, or None."""
        return cast(tuple[Any, ...] | None, self._run(connection, dialect, params, _fetch_one))

    def rowcount(self, connection: DBAPIConnection, dialect: Dialect, params: Params) -> int:
        """Rows an INSERT/UPDATE/DELETE without RETURNING affected (exact on sqlite3, psycopg).

        A compare-and-swap is judged by this count. With RETURNING, use the rows instead:
        sqlite3 only counts them once they are fetched.
        """
        return cast(int, self._run(connection, dialect, params, _rowcount))

    def _run(
        self,
        connection: DBAPIConnection,
        dialect: Dialect,
        params: Params,
        fetch: Callable[[DBAPICursor], R],
    ) -> R:
        sql, arguments = self.prepare(dialect, params)
        cursor = connection.cursor()
        try:
            cursor.execute(sql, arguments)
            return fetch(cursor)
        finally:
            cursor.close()


def in_list(column: ColumnElement[Any], prefix: str, count: int) -> ColumnElement[bool]:
    """`column IN (:prefix_0, ..., :prefix_<count-1>)`: the IN list a `FastQuery` can run."""
    return column.in_([bindparam(f"{prefix}_{i}") for i in range(count)])


def in_list_params(prefix: str, values: Sequence[Any]) -> dict[str, Any]:
    """The parameters of an `in_list(column, prefix, len(values))`."""
    return {f"{prefix}_{i}": value for i, value in enumerate(values)}


def _compile(statement: Statement, dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect)
    if compiled.literal_execute_params or compiled.post_compile_params:
        raise ValueError(
            "FastQuery cannot run expanding or literal-execute parameters; "
            "render one bindparam per element instead"
        )
    if compiled.insert_prefetch or compiled.update_prefetch or compiled.implicit_returning:
        raise ValueError(
            "FastQuery cannot run column defaults or implicit RETURNING that SQLAlchemy "
            "computes at execution; bind every value explicitly"
        )
    converting = [
        repr(bind)
        for bind in compiled.binds.values()
        if bind.type.bind_processor(dialect) is not None
    ] + [
        str(column)
        for column in statement.exported_columns
        if column.type.result_processor(dialect, None) is not None
    ]
    if converting:
        raise ValueError(f"FastQuery cannot apply type conversions of {converting}")
    params = compiled.params
    literals = {
        name: value
        for name, value in params.items()
        if name in compiled.binds and not compiled.binds[name].required
    }
    positional = compiled.positiontup is not None
    names = tuple(compiled.positiontup) if positional else tuple(params)  # type: ignore[arg-type]
    return _Compiled(compiled.string, names, literals, positional)
