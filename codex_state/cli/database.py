"""Which database a command opens, and how: read commands read, only `init`/`backfill` create.

Read commands (`threads`, `thread`, `logs`) open an existing database read-only: a missing home,
a mistyped `--db` path or an empty file is an error naming the path, never a new database.
Write commands keep codex-state's file out of a newer Codex's way (see `codex_files`).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from sqlalchemy import URL

from codex_state.codex_files import (
    CODEX_SQLITE_HOME_ENV,
    codex_sqlite_home,
    is_deleted_by_newer_codex,
    is_newer_codex_database_name,
    is_newer_codex_sqlite_home,
    newer_codex_databases,
)
from codex_state.engine import (
    is_sqlite_memory,
    parse_url,
    postgresql_read_only_url,
    sqlite_read_only_url,
)
from codex_state.errors import (
    NewerCodexDatabaseError,
    ReadOnlyDatabaseError,
    SchemaMismatchError,
    StateDbOpenError,
    driver_message,
)
from codex_state.paths import state_db_path
from codex_state.runtime import StateRuntime

__all__ = ["database_name", "open_for_reading", "open_for_writing", "require_home"]


def open_for_reading(args: argparse.Namespace) -> StateRuntime:
    """The existing database of `--db` or `--home`, opened read-only; nothing is created."""
    if args.db:
        url, path = _db_target(args.db)
        if path is None:
            if url.get_backend_name() == "postgresql":
                url = postgresql_read_only_url(url)
            return _open(url, args, shown=database_name(args))
    else:
        home = require_home(args.home)
        path = state_db_path(home)
        if not path.exists():
            raise StateDbOpenError(_missing_database(home, path))
    _check_readable_file(path)
    return _open(_read_only_url(path), args, shown=str(path))


def open_for_writing(args: argparse.Namespace) -> StateRuntime:
    """The database of `--db` or `--home`, created and migrated as needed (`init`, `backfill`)."""
    if args.db:
        url, path = _db_target(args.db)
        if path is not None:
            _check_writable_target(path)
            _make_directory(path.parent)
        return _open(url, args, shown=database_name(args))
    home: Path = args.home.expanduser()
    if home.exists():
        require_home(home)
    path = state_db_path(home)
    _check_writable_target(path)
    return _open_home(home, path, args)


def require_home(home: Path) -> Path:
    """`home` (expanded) if it is an existing directory, else a one-line error naming it."""
    home = home.expanduser()
    if not home.exists():
        raise StateDbOpenError(f"codex home {home} does not exist")
    if not home.is_dir():
        raise StateDbOpenError(f"cannot use codex home {home}: it is not a directory")
    return home


def database_name(args: argparse.Namespace) -> str:
    """Where the command's database is, for messages: a path, or a URL without its password."""
    if not args.db:
        return str(state_db_path(args.home.expanduser()))
    url, path = _db_target(args.db)
    return str(path) if path is not None else url.render_as_string(hide_password=True)


def _db_target(db: str) -> tuple[URL, Path | None]:
    """`--db` as a URL, and the SQLite file it names (None for PostgreSQL, memory, a URI)."""
    if "://" not in db:
        path = Path(db).expanduser().absolute()
        return URL.create("sqlite", database=str(path)), path
    url = parse_url(db)
    if url.get_backend_name() != "sqlite" or is_sqlite_memory(url) or url.query:
        return url, None  # a URI filename with its own query is the user's to control
    return url, Path(url.database or "").expanduser().absolute()


def _read_only_url(path: Path) -> URL:
    # A WAL database normally needs its -shm file, which a directory we cannot write would
    # not let SQLite create. With no -wal file there, nothing can be writing either (a writer
    # must create it), and SQLite may then read the file as immutable.
    no_writer_possible = not os.access(path.parent, os.W_OK) and not _wal(path).exists()
    return sqlite_read_only_url(path, immutable=no_writer_possible)


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _check_readable_file(path: Path) -> None:
    if is_newer_codex_database_name(path.name):
        raise StateDbOpenError(_codex_file(path))
    if not path.exists():
        raise StateDbOpenError(f"no database file at {path}")
    if not path.is_file():
        raise StateDbOpenError(f"{path} is not a database file")
    if path.stat().st_size == 0 and not _wal(path).exists():
        raise StateDbOpenError(
            f"{path} is empty (0 bytes), not a state database; it was left as it is "
            "(`codex-state init` would create the database in it)"
        )


def _check_writable_target(path: Path) -> None:
    """Refuse Codex's own files, and places where a newer Codex would delete ours."""
    if is_newer_codex_database_name(path.name):
        raise StateDbOpenError(_codex_file(path))
    directory = path.parent
    if is_deleted_by_newer_codex(path.name) and is_newer_codex_sqlite_home(directory):
        newer = newer_codex_databases(directory)
        why = (
            f"it holds {newer[-1].name} of a newer Codex"
            if newer
            else f"it is Codex's SQLite home (${CODEX_SQLITE_HOME_ENV})"
        )
        raise StateDbOpenError(
            f"will not keep {path.name} in {directory}: {why}, which deletes {path.name} there "
            "when it starts; keep codex-state's database elsewhere with --db PATH "
            "(e.g. --db ~/.codex-state/state_4.sqlite)"
        )
    if path.is_file() and path.stat().st_size == 0 and not _wal(path).exists():
        print(
            f"codex-state: note: {path} is empty (0 bytes); creating the state database in it",
            file=sys.stderr,
        )


def _make_directory(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StateDbOpenError(f"cannot create {directory}: {err.strerror}") from err


def _codex_file(path: Path) -> str:
    return (
        f"{path} is a newer Codex's own database, which codex-state never opens "
        "(it reads and writes state_4.sqlite only)"
    )


def _missing_database(home: Path, path: Path) -> str:
    places = [home]
    configured = codex_sqlite_home()
    if configured is not None and configured != home:
        places.append(configured)
    newer = [found for place in places for found in newer_codex_databases(place)]
    if newer:
        return (
            f"no codex-state database at {path}: {newer[-1]} belongs to a newer Codex, which "
            "codex-state does not read; index the rollouts into a database of its own with "
            f"`codex-state --home {_quoted(home)} --db PATH backfill`"
        )
    return (
        f"no state database at {path}; "
        f"`codex-state --home {_quoted(home)} backfill` creates it and indexes the rollouts"
    )


def _quoted(path: Path) -> str:
    return shlex.quote(str(path))


def _open(url: URL, args: argparse.Namespace, *, shown: str) -> StateRuntime:
    try:
        return StateRuntime.from_url(url, args.provider)
    except StateDbOpenError as err:
        raise _with_context(err, shown, args) from err
    except SchemaMismatchError as err:
        raise _with_context(err, shown, args) from err


def _open_home(home: Path, path: Path, args: argparse.Namespace) -> StateRuntime:
    try:
        return StateRuntime.init(home, args.provider)
    except SchemaMismatchError as err:
        raise _with_context(err, str(path), args) from err


def _with_context(err: Exception, shown: str, args: argparse.Namespace) -> Exception:
    """The same error, saying which database it is about and what the user can do."""
    if isinstance(err, ReadOnlyDatabaseError):
        init = "codex-state " + (
            f"--db {shlex.quote(args.db)}" if args.db else f"--home {_quoted(args.home)}"
        )
        return ReadOnlyDatabaseError(f"{shown}: {err}; run `{init} init` once")
    if isinstance(err, NewerCodexDatabaseError):
        name = Path(shown).name
        what = (
            "was made by a Codex build of 10-12 February 2026 (it has that build's memory "
            "tables, stage1_outputs and jobs), which codex-state cannot adopt"
            if name == "state_4.sqlite"
            else "was made by a newer Codex, which codex-state cannot adopt"
        )
        return NewerCodexDatabaseError(
            f"{shown} {what}; it was left as it is: keep codex-state's database elsewhere "
            "with --db PATH, or move this file aside and run `codex-state backfill`"
        )
    if isinstance(err, SchemaMismatchError):
        return SchemaMismatchError(f"{shown}: {err}; it was left as it is (see --db PATH)")
    if err.__cause__ is not None:  # name the file, not the URI built to open it read-only
        return StateDbOpenError(f"cannot open {shown}: {driver_message(err.__cause__)}")
    return err
