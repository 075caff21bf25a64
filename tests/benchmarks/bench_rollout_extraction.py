"""Rollout extraction beside the parsing floor (a `json.loads` loop over the same lines).

Run: `.venv/bin/python -m tests.benchmarks.bench_rollout_extraction [DIR]` (default: the six real
rollouts in `shared/data/codex-rollouts` beside the repository or its worktree folder, or
`$CODEX_STATE_ROLLOUT_DATA`). Issue 3's target is extraction at no less than 0.7x of the floor's
MB/s. No SQL runs here, so there is no sqlite3 or plain ORM counterpart.
"""

from __future__ import annotations

import json
import os
import sys
from functools import partial
from pathlib import Path

from codex_state.rollout import extract_metadata_from_rollout, load_rollout_items
from tests.benchmarks.common import race

REPO_ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 30


def rollout_dir() -> Path:
    if len(sys.argv) > 1:
        return Path(sys.argv[1])
    env = os.environ.get("CODEX_STATE_ROLLOUT_DATA")
    if env:
        return Path(env)
    candidates = [folder / "shared" / "data" / "codex-rollouts" for folder in REPO_ROOT.parents]
    return next((path for path in candidates if path.is_dir()), candidates[0])


def json_loads_floor(files: list[Path]) -> None:
    """Read each file and json.loads every non-blank line: the cost of parsing alone."""
    for path in files:
        for line in path.read_bytes().split(b"\n"):
            if line and not line.isspace():
                json.loads(line)


def extraction(files: list[Path]) -> None:
    """extract_metadata_from_rollout on each file (what the backfill runs)."""
    for path in files:
        extract_metadata_from_rollout(path, "openai")


def load_items(files: list[Path]) -> None:
    """load_rollout_items on each file (every item materialized)."""
    for path in files:
        load_rollout_items(path)


def main() -> None:
    directory = rollout_dir()
    files = sorted(directory.glob("rollout-*.jsonl"))
    if not files:
        sys.exit(f"no rollout-*.jsonl files in {directory}")
    megabytes = sum(path.stat().st_size for path in files) / 1e6
    variants = [json_loads_floor, extraction, load_items]
    # Rounds interleaved so load from other processes hits all variants alike.
    timings = race({v.__name__: partial(v, files) for v in variants}, rounds=ROUNDS, number=1)
    floor, *others = (timing.best for timing in timings.values())
    print(f"{len(files)} files, {megabytes:.2f} MB, best of {ROUNDS} interleaved rounds")
    print(f"{'json_loads_floor':<20}{megabytes / floor:8.1f} MB/s")
    for variant, seconds in zip(variants[1:], others, strict=True):
        ratio = floor / seconds
        print(f"{variant.__name__:<20}{megabytes / seconds:8.1f} MB/s  {ratio:.2f}x of the floor")


if __name__ == "__main__":
    main()
