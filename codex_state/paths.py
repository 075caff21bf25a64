"""Where the state database lives in a codex home, and which old state files may be removed."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

STATE_DB_FILENAME = "state"
STATE_DB_VERSION = 4

_LEGACY_SUFFIXES = ("-wal", "-shm", "-journal")
_STATE_NAME = re.compile(rf"{STATE_DB_FILENAME}(?:_(?P<version>[0-9]+))?\.sqlite")

logger = logging.getLogger(__name__)


def state_db_filename() -> str:
    return f"{STATE_DB_FILENAME}_{STATE_DB_VERSION}.sqlite"


def state_db_path(codex_home: str | os.PathLike[str]) -> Path:
    return Path(codex_home) / state_db_filename()


def is_legacy_state_file_name(name: str) -> bool:
    """True for `state.sqlite` and `state_<N>.sqlite` with N below the current version.

    One of `-wal`, `-shm`, `-journal` is stripped first. Newer versions are kept: they belong to
    a newer Codex sharing this home (the seed deleted them too).
    """
    for suffix in _LEGACY_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    match = _STATE_NAME.fullmatch(name)
    if match is None:
        return False
    version = match.group("version")
    return version is None or int(version) < STATE_DB_VERSION


def remove_legacy_state_files(codex_home: Path) -> list[Path]:
    """Delete legacy state files (regular files only, never links or directories)."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(codex_home))
    except OSError as err:
        logger.warning("cannot list %s for legacy state cleanup: %s", codex_home, err)
        return removed
    for entry in entries:
        if not entry.is_file(follow_symlinks=False) or not is_legacy_state_file_name(entry.name):
            continue
        try:
            os.remove(entry.path)
        except OSError as err:
            logger.warning("cannot remove legacy state file %s: %s", entry.path, err)
        else:
            removed.append(Path(entry.path))
    return removed
