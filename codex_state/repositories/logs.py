"""The `logs` table: batched inserts, filtered reads for the viewer, and retention deletes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache, partial
from operator import attrgetter
from typing import Any, NamedTuple

from pydantic import TypeAdapter
from sqlalchemy import (
    ColumnElement,
    Text,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by

from codex_state.arguments import (
    check_count,
    check_epoch,
    check_limit,
    check_log_entries,
    check_log_entry,
    check_log_query,
)
from codex_state.models import LogEntry, LogQuery, LogRow
from codex_state.orm import logs
from codex_state.repositories.base import Repository, translated
from codex_state.statements import Prepared, in_list, in_list_params

LogValues = tuple[Any, ...]
"""One row for `insert_log_rows`, in `INSERT_COLUMNS` order."""

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

_insert = Prepared(insert(logs).values({name: bindparam(name) for name in INSERT_COLUMNS}))

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
_delete_before = Prepared(delete(logs).where(logs.c.ts < bindparam("cutoff")))
_delete_before_limited = Prepared(
    delete(logs).where(
        logs.c.id.in_(
            select(logs.c.id).where(logs.c.ts < bindparam("cutoff")).limit(bindparam("limit"))
        )
    )
)
# The id of the newest row that no longer fits under a row cap (None when all fit).
_cap_boundary = Prepared(
    select(logs.c.id).order_by(logs.c.id.desc()).limit(1).offset(bindparam("keep"))
)
_delete_upto_limited = Prepared(
    delete(logs).where(
        logs.c.id.in_(
            select(logs.c.id)
            .where(logs.c.id <= bindparam("boundary"))
            .order_by(logs.c.id)
            .limit(bindparam("limit"))
        )
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


def _build_rows_statement(shape: _Shape, dialect: str) -> Any:
    """The page as one JSON array built by the database, in the page's order.

    Building 200 `LogRow`s from driver tuples costs more than the query (about 340 us against
    200 us here); pydantic builds them from JSON text in about 210 us, and SQLite's and
    PostgreSQL's JSON functions write that text for less than the tuples cost to fetch.
    """
    order = logs.c.id.desc() if shape.descending else logs.c.id
    page = select(*_row_columns).where(*_filters(shape)).order_by(order)
    if shape.limit:
        page = page.limit(bindparam("limit"))
    rows = page.subquery()
    fields = [part for column in rows.c for part in (literal_column(f"'{column.name}'"), column)]
    if dialect == "sqlite":
        # The aggregate takes the rows in the subquery's order (ORDER BY inside an aggregate
        # needs SQLite 3.44).
        return select(func.json_group_array(func.json_object(*fields)))
    row_order = rows.c.id.desc() if shape.descending else rows.c.id
    array = func.json_agg(aggregate_order_by(func.json_build_object(*fields), row_order))
    return select(cast(func.coalesce(array, literal_column("'[]'::json")), Text))


@lru_cache(maxsize=256)
def _rows_statement(shape: _Shape) -> Prepared:
    return Prepared(partial(_build_rows_statement, shape))


@lru_cache(maxsize=256)
def _max_id_statement(shape: _Shape) -> Prepared:
    return Prepared(select(func.max(logs.c.id)).where(*_filters(shape)))


class LogRepository(Repository):
    """Log rows as the seed's tracing layer writes them and its viewer reads them."""

    __slots__ = ()

    @translated
    def insert_log(self, entry: LogEntry) -> None:
        self._insert([_entry_values(check_log_entry(entry))])

    @translated
    def insert_logs(self, entries: Iterable[LogEntry]) -> None:
        """Insert a batch of log entries with one executemany."""
        self._insert([_entry_values(entry) for entry in check_log_entries(entries)])

    @translated
    def insert_log_rows(self, rows: Sequence[LogValues]) -> None:
        """Insert rows in `INSERT_COLUMNS` order, unvalidated.

        The batching log handler's path: it builds the tuples itself, so validating each
        record again as a `LogEntry` would only cost time on the writer thread.
        """
        self._insert(rows)

    def _insert(self, rows: Sequence[LogValues]) -> None:
        if rows:
            _insert.execute_many_tuples(self._session, INSERT_COLUMNS, rows)

    @translated
    def query_logs(self, query: LogQuery) -> list[LogRow]:
        """Rows matching every filter of `query`, ordered by id."""
        query = check_log_query(query)
        statement = _rows_statement(_Shape.of(query))
        return _rows.validate_json(statement.execute(self._session, _params(query)).scalar_one())

    @translated
    def max_log_id(self, query: LogQuery | None = None) -> int:
        """The largest id matching `query`'s filters, 0 when none match."""
        query = check_log_query(query, allow_none=True) or LogQuery()
        # Limit and order do not change MAX(id): leave them out of the shape (and the cache key).
        shape = _Shape.of(query)._replace(limit=False, descending=False)
        row = _max_id_statement(shape).first(self._session, _params(query))
        return 0 if row is None or row[0] is None else int(row[0])

    @translated
    def delete_logs_before(self, cutoff_ts: int, *, limit: int | None = None) -> int:
        """Delete rows older than `cutoff_ts` (epoch seconds); returns how many went.

        With `limit`, at most that many rows go in this one short transaction: call again
        until it returns less than `limit` to clear a large backlog without long locks.
        """
        check_epoch("cutoff_ts", cutoff_ts)
        check_limit(limit)
        if limit is None:
            return _delete_before.rowcount(self._session, {"cutoff": cutoff_ts})
        return _delete_before_limited.rowcount(self._session, {"cutoff": cutoff_ts, "limit": limit})

    @translated
    def trim_logs(self, max_rows: int, *, limit: int = 5000) -> int:
        """Delete up to `limit` of the oldest rows beyond the newest `max_rows` rows."""
        keep = check_count("max_rows", max_rows)
        check_limit(limit)
        row = _cap_boundary.first(self._session, {"keep": keep})
        if row is None:
            return 0
        return _delete_upto_limited.rowcount(self._session, {"boundary": row[0], "limit": limit})
