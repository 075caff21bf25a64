"""The `logs` table: batched inserts, filtered reads for the viewer, and retention deletes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from operator import attrgetter
from typing import Any, NamedTuple

from pydantic import TypeAdapter
from sqlalchemy import ColumnElement, bindparam, delete, func, or_, select
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.orm import Session

from codex_state.dialect import PerDialect
from codex_state.fastread import FastQuery, in_list, in_list_params
from codex_state.models import LogEntry, LogQuery, LogRow
from codex_state.orm import logs

LogValues = tuple[Any, ...]
"""One row for `insert_rows`, in `INSERT_COLUMNS` order."""

INSERT_COLUMNS = (
    "ts",
    "ts_nanos",
    "level",
    "target",
    "message",
    "thread_id",
    "module_path",
    "file",
    "line",
)

_entry_values = attrgetter(*INSERT_COLUMNS)
_rows = TypeAdapter(list[LogRow])
_ROW_FIELDS = tuple(LogRow.model_fields)


def _insert_sql(dialect: str) -> str:
    # Plain driver SQL run through the DBAPI's executemany: a Core insert of dicts spends more
    # time building parameter dicts than SQLite spends inserting (see tests/benchmarks).
    placeholder = "?" if dialect == "sqlite" else "%s"
    values = ", ".join([placeholder] * len(INSERT_COLUMNS))
    return f"INSERT INTO logs ({', '.join(INSERT_COLUMNS)}) VALUES ({values})"


_insert = PerDialect(_insert_sql)

_row_columns = (
    logs.c.id,
    logs.c.ts,
    logs.c.ts_nanos,
    logs.c.level,
    logs.c.target,
    logs.c.message,
    logs.c.thread_id,
    logs.c.file,
    logs.c.line,
)

# Retention deletes a bounded number of rows per statement so each write transaction stays
# short and the application's log writers are never stalled behind one huge DELETE.
_delete_before = delete(logs).where(logs.c.ts < bindparam("cutoff"))
_delete_before_limited = delete(logs).where(
    logs.c.id.in_(
        select(logs.c.id).where(logs.c.ts < bindparam("cutoff")).limit(bindparam("limit"))
    )
)
# The id of the newest row that no longer fits under a row cap (None when all fit).
_cap_boundary = select(logs.c.id).order_by(logs.c.id.desc()).limit(1).offset(bindparam("keep"))
_delete_upto_limited = delete(logs).where(
    logs.c.id.in_(
        select(logs.c.id)
        .where(logs.c.id <= bindparam("boundary"))
        .order_by(logs.c.id)
        .limit(bindparam("limit"))
    )
)


_LIKE_ESCAPE = "/"


def _literal_substring(value: str) -> str:
    """`value` with LIKE's wildcards escaped, so a filter matches only itself."""
    for char in (_LIKE_ESCAPE, "%", "_"):
        value = value.replace(char, _LIKE_ESCAPE + char)
    return value


class _Shape(NamedTuple):
    """Which filters a `LogQuery` sets: queries of one shape share one statement."""

    level: bool
    from_ts: bool
    to_ts: bool
    modules: int
    files: int
    thread_ids: int
    threadless: bool
    after_id: bool
    limit: bool
    descending: bool

    @classmethod
    def of(cls, query: LogQuery) -> _Shape:
        return cls(
            level=query.level_upper is not None,
            from_ts=query.from_ts is not None,
            to_ts=query.to_ts is not None,
            modules=len(query.module_like),
            files=len(query.file_like),
            thread_ids=len(query.thread_ids),
            threadless=query.include_threadless,
            after_id=query.after_id is not None,
            limit=query.limit is not None,
            descending=query.descending,
        )


def _params(query: LogQuery) -> dict[str, Any]:
    params: dict[str, Any] = {
        "level": None if query.level_upper is None else query.level_upper.upper(),
        "from_ts": query.from_ts,
        "to_ts": query.to_ts,
        "after_id": query.after_id,
        "limit": query.limit,
        **in_list_params("thread_id", query.thread_ids),
    }
    for i, module in enumerate(query.module_like):
        params[f"module_{i}"] = _literal_substring(module)
    for i, file in enumerate(query.file_like):
        params[f"file_{i}"] = _literal_substring(file)
    return params


def _substring_filter(column: ColumnElement[str | None], prefix: str, count: int) -> Any:
    # Case-insensitive on both backends (ILIKE on PostgreSQL), as the seed's LIKE was on SQLite.
    return or_(
        *(column.icontains(bindparam(f"{prefix}_{i}"), escape=_LIKE_ESCAPE) for i in range(count))
    )


def _filters(shape: _Shape) -> list[ColumnElement[bool]]:
    """The WHERE clauses of a query shape (the seed's `push_log_filters`)."""
    clauses: list[ColumnElement[bool]] = []
    if shape.level:
        clauses.append(func.upper(logs.c.level) == bindparam("level"))
    if shape.from_ts:
        clauses.append(logs.c.ts >= bindparam("from_ts"))
    if shape.to_ts:
        clauses.append(logs.c.ts <= bindparam("to_ts"))
    if shape.modules:
        clauses.append(_substring_filter(logs.c.module_path, "module", shape.modules))
    if shape.files:
        clauses.append(_substring_filter(logs.c.file, "file", shape.files))
    thread_clauses: list[ColumnElement[bool]] = []
    if shape.thread_ids:
        thread_clauses.append(in_list(logs.c.thread_id, "thread_id", shape.thread_ids))
    if shape.threadless:
        thread_clauses.append(logs.c.thread_id.is_(None))
    if thread_clauses:
        clauses.append(or_(*thread_clauses))
    if shape.after_id:
        clauses.append(logs.c.id > bindparam("after_id"))
    return clauses


# Building and compiling a statement costs more than SQLite spends on a 200-row page, so each
# shape's statement is built and compiled once, then run on a raw cursor (`FastQuery`).
@lru_cache(maxsize=256)
def _rows_statement(shape: _Shape) -> FastQuery:
    statement = select(*_row_columns).where(*_filters(shape))
    statement = statement.order_by(logs.c.id.desc() if shape.descending else logs.c.id)
    if shape.limit:
        statement = statement.limit(bindparam("limit"))
    return FastQuery(statement)


@lru_cache(maxsize=256)
def _max_id_statement(shape: _Shape) -> FastQuery:
    return FastQuery(select(func.max(logs.c.id)).where(*_filters(shape)))


class LogRepository:
    """Log rows as the seed's tracing layer writes them and its viewer reads them."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def delete_before(self, cutoff_ts: int, limit: int | None = None) -> int:
        """Delete rows with `ts < cutoff_ts`, at most `limit` of them when given."""
        if limit is None:
            result = self._session.execute(_delete_before, {"cutoff": cutoff_ts})
        else:
            result = self._session.execute(
                _delete_before_limited, {"cutoff": cutoff_ts, "limit": limit}
            )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def trim_to(self, max_rows: int, limit: int) -> int:
        """Delete up to `limit` of the oldest rows beyond the newest `max_rows`."""
        boundary = self._session.execute(_cap_boundary, {"keep": max_rows}).scalar()
        if boundary is None:
            return 0
        result = self._session.execute(_delete_upto_limited, {"boundary": boundary, "limit": limit})
        return int(result.rowcount)  # type: ignore[attr-defined]


class LogInserts:
    """Batch inserts on a checked-out DBAPI connection (`StateRuntime._fast_write`).

    The handler writes a batch every few hundred milliseconds; a Session around each batch
    cost the writer thread more than the insert itself, time it then held the GIL from the
    threads that log.
    """

    def __init__(self, connection: DBAPIConnection, dialect: Dialect) -> None:
        self._connection = connection
        self._dialect = dialect

    def insert(self, entries: Iterable[LogEntry]) -> None:
        """Insert a batch with one executemany."""
        self.insert_rows([_entry_values(entry) for entry in entries])

    def insert_rows(self, rows: Sequence[LogValues]) -> None:
        """Insert rows already in `INSERT_COLUMNS` order (the handler's path)."""
        if not rows:
            return
        cursor = self._connection.cursor()
        try:
            cursor.executemany(_insert.for_dialect(self._dialect.name), rows)
        finally:
            cursor.close()


class LogReads:
    """The viewer's reads, on a checked-out DBAPI connection (`StateRuntime._fast_read`)."""

    def __init__(self, connection: DBAPIConnection, dialect: Dialect) -> None:
        self._connection = connection
        self._dialect = dialect

    def query(self, query: LogQuery) -> list[LogRow]:
        statement = _rows_statement(_Shape.of(query))
        rows = statement.all(self._connection, self._dialect, _params(query))
        # Validation stays: building 200 LogRow objects costs the same with or without it
        # (model_construct is slower still, measured), so skipping it would buy nothing.
        return _rows.validate_python([dict(zip(_ROW_FIELDS, row, strict=True)) for row in rows])

    def max_id(self, query: LogQuery) -> int:
        # Limit and order do not change MAX(id): leave them out of the shape (and the cache key).
        statement = _max_id_statement(_Shape.of(query)._replace(limit=False, descending=False))
        row = statement.first(self._connection, self._dialect, _params(query))
        return 0 if row is None or row[0] is None else int(row[0])
