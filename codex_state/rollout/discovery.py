"""Finding the rollout files of a codex home, in the backfill's resumable order.

Codex keeps live rollouts under `sessions/YYYY/MM/DD/` and archived ones under
`archived_sessions/` (seed-notes section 7); newer Codex can also leave them compressed as
`rollout-*.jsonl.zst`. Each file's *watermark* is its path relative to the home with `/`
separators, compressed suffix included (`sessions/2026/09/05/rollout-…jsonl.zst`), and files
are ordered by watermark as plain strings, so archived files come first and a compressed file
sorts right after the plain one of the same name: a run resumed after `X.jsonl` still picks up
`X.jsonl.zst` once `X.jsonl` is gone.

When both `X.jsonl` and `X.jsonl.zst` exist, only `X.jsonl` is listed: it is the file Codex
appends to, and the compressed copy beside it is not newer (indexing both would let the copy
overwrite the live file's row).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

SESSIONS_SUBDIR: Final = "sessions"
ARCHIVED_SESSIONS_SUBDIR: Final = "archived_sessions"
ROLLOUT_SUFFIX: Final = ".jsonl"
COMPRESSED_ROLLOUT_SUFFIX: Final = ".jsonl.zst"
_ROLLOUT_GLOB: Final = "rollout-*"


@dataclass(frozen=True, slots=True)
class RolloutFile:
    """A rollout found in a codex home; `watermark` is its home-relative path with '/'."""

    path: Path
    watermark: str
    archived: bool


def find_rollout_files(codex_home: str | os.PathLike[str]) -> list[RolloutFile]:
    """Every rollout file of the home, in watermark order (archived ones sort first)."""
    home = Path(codex_home)
    found = [
        RolloutFile(path, path.relative_to(home).as_posix(), archived)
        for subdir, archived in ((SESSIONS_SUBDIR, False), (ARCHIVED_SESSIONS_SUBDIR, True))
        for path in _rollouts_under(home / subdir)
    ]
    found.sort(key=lambda rollout: rollout.watermark)
    return found


def _rollouts_under(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    plain: set[Path] = set()
    compressed: list[Path] = []
    # One walk for both suffixes; a compressed file is kept only without its plain twin.
    for path in root.rglob(_ROLLOUT_GLOB):
        name = path.name
        if name.endswith(ROLLOUT_SUFFIX) and path.is_file():
            plain.add(path)
            yield path
        elif name.endswith(COMPRESSED_ROLLOUT_SUFFIX) and path.is_file():
            compressed.append(path)
    for path in compressed:
        if path.with_name(path.name.removesuffix(".zst")) not in plain:
            yield path
