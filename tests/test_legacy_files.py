"""`init` removes legacy state files and nothing else."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from codex_state import STATE_DB_FILENAME, STATE_DB_VERSION, StateRuntime, state_db_filename
from codex_state.paths import is_legacy_state_file_name

SUFFIXES = ("", "-wal", "-shm", "-journal")


def test_init_removes_legacy_state_db_files(codex_home: Path) -> None:
    """Port of the seed's `init_removes_legacy_state_db_files`."""
    previous_version = STATE_DB_VERSION - 1
    unversioned = f"{STATE_DB_FILENAME}.sqlite"
    for suffix in SUFFIXES:
        (codex_home / f"{unversioned}{suffix}").write_bytes(b"legacy")
        (codex_home / f"{STATE_DB_FILENAME}_{previous_version}.sqlite{suffix}").write_bytes(b"old")
    (codex_home / "state.sqlite_backup").write_bytes(b"keep")
    (codex_home / "123").write_bytes(b"keep")

    with StateRuntime.init(codex_home, "test-provider"):
        pass

    for suffix in SUFFIXES:
        assert not (codex_home / f"{unversioned}{suffix}").exists()
        assert not (codex_home / f"{STATE_DB_FILENAME}_{previous_version}.sqlite{suffix}").exists()
    assert (codex_home / state_db_filename()).exists()
    assert (codex_home / "state.sqlite_backup").read_bytes() == b"keep"
    assert (codex_home / "123").read_bytes() == b"keep"


def test_only_regular_legacy_files_are_removed(codex_home: Path, tmp_path: Path) -> None:
    survivors = [
        "state_5.sqlite",  # a newer Codex shares this home
        "state_5.sqlite-wal",
        "state_10.sqlite",
        "state_.sqlite",
        "state_x1.sqlite",
        "state_1.sqlite.bak",
        "state_1.sqlite-wal-shm",
        "state_\uff11.sqlite",  # a non-ASCII (fullwidth) digit
        "mystate.sqlite",
        "state.sqlite3",
        "notes.txt",
    ]
    for name in survivors:
        (codex_home / name).write_text("keep")
    directory = codex_home / "state_2.sqlite"
    directory.mkdir()
    target = tmp_path / "elsewhere.sqlite"
    target.write_text("the link's target")
    os.symlink(target, codex_home / "state_1.sqlite")
    (codex_home / "state_0.sqlite-journal").write_text("old")

    with StateRuntime.init(codex_home, "p"):
        pass

    for name in survivors:
        assert (codex_home / name).read_text() == "keep", name
    assert directory.is_dir()
    assert (codex_home / "state_1.sqlite").is_symlink()
    assert target.read_text() == "the link's target"
    assert not (codex_home / "state_0.sqlite-journal").exists()


@pytest.mark.parametrize(
    ("name", "legacy"),
    [
        ("state.sqlite", True),
        ("state.sqlite-wal", True),
        ("state_0.sqlite", True),
        ("state_3.sqlite-shm", True),
        ("state_03.sqlite", True),
        ("state_4.sqlite", False),
        ("state_4.sqlite-wal", False),
        ("state_5.sqlite", False),
        ("state.sqlite-wal-wal", False),
        ("state_.sqlite", False),
        ("123", False),
    ],
)
def test_legacy_name_rule(name: str, legacy: bool) -> None:
    assert is_legacy_state_file_name(name) is legacy
