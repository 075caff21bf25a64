"""Statements compiled once per backend and run with `Connection.exec_driver_sql`.

Why: on this machine `session.execute(core_statement)` costs about 22 us and
`session.connection().exec_driver_sql(sql)` about 15 us, against about 3 us for SQLite to answer a
point read; the difference is SQLAlchemy compiling (or looking up in its cache) and processing the
statement on every call. A `Prepared` keeps the statement in Core, written against the tables in
`codex_state.orm`, so repositories own their SQL and each backend gets its own spelling, but
compiles it once per dialect; each call then only binds parameters and runs the string through
the Session's `Connection`. It is still an ordinary SQLAlchemy execution: `echo=True`, the
`before_cursor_execute` event and instrumentations (OpenTelemetry, Sentry) see every statement,
and driver errors arrive wrapped as `sqlalchemy.exc.DBAPIError`.

Only statements the driver can take as compiled qualify: no expanding (IN) or literal-execute
parameters (render one `bindparam` per element and cache a statement per element count
instead), no column type that converts values on the way in or out, and no Python-side column
default or implicit RETURNING that SQLAlchemy would add at execution. `Prepared` refuses anything
else when it compiles, so a mistake fails loudly on the first call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import ColumnElement, Connection, CursorResult, Select, UpdateBase, bindparam
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

Params = Mapping[str, Any]
Statement = Select[Any] | UpdateBase
"""What a `Prepared` runs: a SELECT, or an INSERT/UPDATE/DELETE (with or without RETURNING)."""


@dataclass(frozen=True, slots=True)
class _Compiled:
    statement: Statement
    returns_rows: bool
    sql: str
    names: tuple[str, ...]  # bind names in placeholder order (positional) or in any order
    literals: Mapping[str, Any]  # values compiled into the statement, e.g. `column != ''`
    positional: bool

    def arguments(self, params: Params) -> Sequence[Any] | dict[str, Any]:
        values = {**self.literals, **params} if self.literals else params
        if self.positional:
            return tuple([values[name] for name in self.names])
        return {name: values[name] for name in self.names}


class Prepared:
    """A Core statement compiled once per dialect and run on a Session's connection."""

    __slots__ = ("_build", "_compiled")

    def __init__(self, statement: Statement | Callable[[str], Statement]) -> None:
        """A statement, or a function building the statement for a dialect name (for the
        statements SQLite and PostgreSQL spell differently, such as `INSERT ... ON CONFLICT`)."""
        self._build = statement if callable(statement) else lambda _name: statement
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    def statement(self, dialect_name: str) -> Statement:
        """The Core statement for a backend, e.g. to read its plan in a test."""
        return self._build(dialect_name)

    def compiled(self, dialect: Dialect) -> _Compiled:
        key = (dialect.name, dialect.driver)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = _compile(self._build(dialect.name), dialect)
        return compiled

    def execute(self, session: Session | Connection, params: Params) -> CursorResult[Any]:
        """Run with `params` in the Session's transaction (or on a Connection).

        A statement that returns rows runs as the Core statement, through SQLAlchemy's own
        compiled cache: that cache also keeps the result's column metadata, which
        `exec_driver_sql` has to build from the cursor on every call (measured for the
        17-column thread read: 17 us against 31 us; a 9-column log page 13 us against 19 us).
        A statement that returns none runs precompiled (an UPDATE: 7 us against 15 us).
        """
        connection = session.connection() if isinstance(session, Session) else session
        compiled = self.compiled(connection.dialect)
        if compiled.returns_rows:
            return connection.execute(compiled.statement, params)
        return connection.exec_driver_sql(compiled.sql, compiled.arguments(params))

    def all(self, session: Session | Connection, params: Params) -> Sequence[Any]:
        """Every row (of a SELECT or a RETURNING)."""
        return self.execute(session, params).fetchall()

    def first(self, session: Session | Connection, params: Params) -> Any | None:
        """The first row, or None."""
        return self.execute(session, params).fetchone()

    def rowcount(self, session: Session | Connection, params: Params) -> int:
        """Rows an INSERT/UPDATE/DELETE without RETURNING affected (exact on sqlite3, psycopg).

        A compare-and-swap is judged by this count. With RETURNING, use the rows instead:
        sqlite3 only counts them once they are fetched.
        """
        return self.execute(session, params).rowcount

    def execute_many(self, session: Session | Connection, rows: Sequence[Params]) -> None:
        """One `executemany` of the statement over `rows`."""
        connection = session.connection() if isinstance(session, Session) else session
        compiled = self.compiled(connection.dialect)
        arguments = [compiled.arguments(row) for row in rows]
        connection.exec_driver_sql(compiled.sql, arguments)

    def execute_many_tuples(
        self, session: Session | Connection, names: tuple[str, ...], rows: Sequence[Sequence[Any]]
    ) -> None:
        """`execute_many` of rows given as tuples of the binds `names`, in that order.

        Where the driver's placeholders are positional (SQLite), the tuples go to
        `executemany` as they are, or reordered by one `itemgetter` call each: building a dict
        per row would cost more than SQLite spends inserting it.
        """
        connection = session.connection() if isinstance(session, Session) else session
        compiled = self.compiled(connection.dialect)
        if not compiled.positional or compiled.literals:
            self.execute_many(connection, [dict(zip(names, row, strict=True)) for row in rows])
        elif compiled.names == names:
            connection.exec_driver_sql(compiled.sql, list(rows))
        else:
            reorder = itemgetter(*(names.index(name) for name in compiled.names))
            connection.exec_driver_sql(compiled.sql, [reorder(row) for row in rows])


def in_list(column: ColumnElement[Any], prefix: str, count: int) -> ColumnElement[bool]:
    """`column IN (:prefix_0, ..., :prefix_<count-1>)`: the IN list a `Prepared` can run."""
    return column.in_([bindparam(f"{prefix}_{i}") for i in range(count)])


def in_list_params(prefix: str, values: Sequence[Any]) -> dict[str, Any]:
    """The parameters of an `in_list(column, prefix, len(values))`."""
    return {f"{prefix}_{i}": value for i, value in enumerate(values)}


def _compile(statement: Statement, dialect: Dialect) -> _Compiled:
    # for_executemany: no implicit RETURNING of an autoincrement key (PostgreSQL would add one
    # for a single-row INSERT); a caller that wants rows back says RETURNING itself.
    compiled = statement.compile(dialect=dialect, for_executemany=True)
    if compiled.literal_execute_params or compiled.post_compile_params:
        raise ValueError(
            "Prepared cannot run expanding or literal-execute parameters; "
            "render one bindparam per element instead"
        )
    if compiled.insert_prefetch or compiled.update_prefetch or compiled.implicit_returning:
        raise ValueError(
            "Prepared cannot run column defaults or implicit RETURNING that SQLAlchemy "
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
        raise ValueError(f"Prepared cannot apply type conversions of {converting}")
    params = compiled.params
    literals = {
        name: value
        for name, value in params.items()
        if name in compiled.binds and not compiled.binds[name].required
    }
    positional = compiled.positiontup is not None
    names = tuple(compiled.positiontup) if positional else tuple(params)  # type: ignore[arg-type]
    returns_rows = isinstance(statement, Select) or bool(compiled.effective_returning)
    return _Compiled(statement, returns_rows, compiled.string, names, literals, positional)
