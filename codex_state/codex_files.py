"""Codex's own database files: where a newer Codex keeps them and how to recognise them.

codex-state reads and writes `state_4.sqlite`, the seed's file. Codex itself moved on:
  - 10 February 2026 (#11334, #11372): its `state_4.sqlite` got other memory tables
    (`stage1_outputs` and `jobs` instead of `thread_memory`, `memory_phase1_jobs`, ...);
  - 12 February 2026 (#11581): it switched to `state_5.sqlite`, later adding `logs_<N>.sqlite`;
  - since then it keeps them in its SQLite home, `$CODEX_SQLITE_HOME` (or `sqlite_home` in
    its config.toml, which is not read here) else the codex home, and when it starts it deletes
    every other `state.sqlite` / `state_<N>.sqlite` there, `state_4.sqlite` included.
These facts let the command line leave Codex's files alone and never keep its own database
where Codex would delete it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from codex_state.paths import STATE_DB_FILENAME, STATE_DB_VERSION

CODEX_SQLITE_HOME_ENV = "CODEX_SQLITE_HOME"

NEWER_CODEX_TABLES = frozenset({"stage1_outputs", "jobs"})
"""Tables of Codex databases made on or after 10 February 2026 (the seed has neither)."""

_STATE_NAME = re.compile(rf"{STATE_DB_FILENAME}(?:_(?P<version>[0-9]+))?\.sqlite")
_LOGS_NAME = re.compile(r"logs_[0-9]+\.sqlite")


def codex_sqlite_home(environ: Mapping[str, str] | None = None) -> Path | None:
    """`$CODEX_SQLITE_HOME` as Codex resolves it (trimmed, relative to the working directory).

    None when it is unset or blank: then Codex keeps its databases in the codex home.
    """
    raw = (os.environ if environ is None else environ).get(CODEX_SQLITE_HOME_ENV, "").strip()
    return Path(raw).expanduser().absolute() if raw else None


def is_newer_codex_database_name(name: str) -> bool:
    """True for `state_<N>.sqlite` with N above ours, and for `logs_<N>.sqlite`.

    Only a newer Codex makes such files; codex-state must never open them.
    """
    match = _STATE_NAME.fullmatch(name)
    if match is not None:
        version = match.group("version")
        return version is not None and int(version) > STATE_DB_VERSION
    return _LOGS_NAME.fullmatch(name) is not None


def is_deleted_by_newer_codex(name: str) -> bool:
    """True for the names a newer Codex deletes in its SQLite home: ours and older ones."""
    match = _STATE_NAME.fullmatch(name)
    if match is None:
        return False
    version = match.group("version")
    return version is None or int(version) <= STATE_DB_VERSION


def newer_codex_databases(directory: Path) -> list[Path]:
    """The newer Codex databases directly in `directory`, by name; [] if it cannot be listed."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    return sorted(
        Path(entry.path)
        for entry in entries
        if is_newer_codex_database_name(entry.name) and entry.is_file()
    )


def is_newer_codex_sqlite_home(directory: Path, environ: Mapping[str, str] | None = None) -> bool:
    """True when a newer Codex keeps (or would keep) its databases in `directory`."""
    if newer_codex_databases(directory):
        return True
    configured = codex_sqlite_home(environ)
    return configured is not None and _same_directory(configured, directory)


def _same_directory(one: Path, other: Path) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:
        return one.absolute() == other.absolute()
