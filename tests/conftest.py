"""Test harness: the same tests on in-memory SQLite, a SQLite file and PostgreSQL.

PostgreSQL runs when `CODEX_STATE_TEST_PG_URL` is set (CI sets it); every test gets its own
schema there, dropped afterwards, so each test starts from an empty database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.entries import ENTRIES, open_entry

PG_URL_ENV = "CODEX_STATE_TEST_PG_URL"
BACKENDS = ["sqlite_memory", "sqlite_file", "postgres"]


@dataclass
class Backend:
    """A fresh, empty database of one kind, and a way to open runtimes on it."""

    name: str
    url: str
    tmp_path: Path
    entry: str = "runtime"
    runtimes: list[Any] = field(default_factory=list)

    @property
    def is_postgres(self) -> bool:
        return self.name == "postgres"

    @property
    def is_sqlite(self) -> bool:
        return not self.is_postgres

    def runtime(self, default_provider: str = "test-provider", **kwargs: Any) -> Any:
        """A runtime on this database, called through this backend's entry (see `entries`)."""
        runtime = open_entry(self.entry, self.url, default_provider, **kwargs)
        self.runtimes.append(runtime)
        return runtime


def pg_base_url() -> str | None:
    return os.environ.get(PG_URL_ENV) or None


def _pg_schema_url(base: str, schema: str) -> str:
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A URL whose search_path is a new, empty PostgreSQL schema (skips without PostgreSQL)."""
    base = pg_base_url()
    if base is None:
        pytest.skip(f"{PG_URL_ENV} is not set")
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield _pg_schema_url(base, schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


ENTRY_SKIPS = {
    ("async", "test_own_database_logging_does_not_loop"): (
        "the handler tells its own database activity by its writer thread, so it writes through "
        "a StateRuntime (docs/asyncio.md: StateLogHandler(db.sync_runtime())); through the async "
        "entry its writes, and SQLAlchemy's log records of them, happen on the event loop"
    ),
}
"""Tests that are about one entry's mechanics and cannot run through another: (entry, test)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or "entry" not in callspec.params:
            continue
        name = getattr(item, "originalname", item.name)
        reason = ENTRY_SKIPS.get((callspec.params["entry"], name))
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(params=ENTRIES)
def entry(request: pytest.FixtureRequest) -> str:
    """Every way into the package in turn (see `tests.entries`)."""
    name: str = request.param
    return name


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path, entry: str) -> Iterator[Backend]:
    """Every backend in turn (PostgreSQL only when configured), through every entry."""
    name: str = request.param
    if name == "sqlite_memory":
        url = "sqlite://"
    elif name == "sqlite_file":
        url = f"sqlite:///{tmp_path / 'state_4.sqlite'}"
    else:
        url = request.getfixturevalue("pg_schema_url")
    backend = Backend(name=name, url=url, tmp_path=tmp_path, entry=entry)
    try:
        yield backend
    finally:
        for runtime in backend.runtimes:
            runtime.close()


@pytest.fixture(params=["sqlite_file", "postgres"])
def shared_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Backends that several processes can open at once (no in-memory SQLite)."""
    name: str = request.param
    if name == "sqlite_file":
        url = f"sqlite:///{tmp_path / 'state_4.sqlite'}"
    else:
        url = request.getfixturevalue("pg_schema_url")
    backend = Backend(name=name, url=url, tmp_path=tmp_path)
    try:
        yield backend
    finally:
        for runtime in backend.runtimes:
            runtime.close()


@pytest.fixture
def runtime(backend: Backend) -> Any:
    """A migrated runtime on the current backend, through the current entry."""
    return backend.runtime()


@pytest.fixture
def codex_home(tmp_path: Path) -> Path:
    home = tmp_path / "codex_home"
    home.mkdir()
    return home
