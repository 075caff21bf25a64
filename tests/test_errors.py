"""Driver errors become `DatabaseError`s whose message is the driver's first line, never data."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import InvalidRequestError

from codex_state.errors import DatabaseError, driver_message, first_line, translate_db_errors
from tests.conftest import Backend

SECRET = "the user's private message"


def _assert_clean(message: str) -> None:
    assert "\n" not in message
    for leak in (SECRET, "[SQL", "[parameters", "Background on this error", "DETAIL"):
        assert leak not in message


def test_statement_errors_keep_the_driver_line_and_drop_sql_and_parameters() -> None:
    engine = create_engine("sqlite://")
    with (
        pytest.raises(DatabaseError) as raised,
        translate_db_errors("query_logs"),
        engine.connect() as conn,
    ):
        conn.execute(text("SELECT * FROM nowhere WHERE message = :m"), {"m": SECRET})
    assert str(raised.value) == "query_logs failed: no such table: nowhere"
    assert SECRET in str(raised.value.__cause__)  # the cause keeps everything for debugging


def test_unique_violation_detail_is_dropped(backend: Backend) -> None:
    runtime = backend.runtime()
    with runtime.engine.begin() as conn:
        conn.execute(text("CREATE TABLE t_unique (v TEXT PRIMARY KEY)"))
        conn.execute(text("INSERT INTO t_unique VALUES (:v)"), {"v": SECRET})
    with (
        pytest.raises(DatabaseError) as raised,
        translate_db_errors("insert"),
        runtime.engine.begin() as conn,
    ):
        conn.execute(text("INSERT INTO t_unique VALUES (:v)"), {"v": SECRET})
    message = str(raised.value)
    _assert_clean(message)  # PostgreSQL's DETAIL line names the duplicate value
    assert message.startswith("insert failed: ")
    assert "unique" in message.lower()


def test_raw_driver_errors_and_sqlalchemy_errors_are_one_line() -> None:
    with (
        pytest.raises(DatabaseError, match=r"^fast failed: disk I/O error$"),
        translate_db_errors("fast", (sqlite3.Error,)),
    ):
        raise sqlite3.OperationalError("disk I/O error\n[parameters: secret]")
    with pytest.raises(DatabaseError) as raised, translate_db_errors("open"):
        raise InvalidRequestError("this connection is closed", code="xd2s")
    assert str(raised.value) == "open failed: this connection is closed"


def test_first_line_helpers() -> None:
    assert first_line("\n  one  \ntwo") == "one"
    assert first_line("  \n ", "fallback") == "fallback"
    assert driver_message(sqlite3.OperationalError()) == "OperationalError"
