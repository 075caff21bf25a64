"""Rollout extraction beside the parsing floor (a `json.loads` loop over the same lines).

Run: `.venv/bin/python tests/benchmarks/bench_rollout_extraction.py [DIR]` (default: the six real
rollouts in the nearest `shared/data/codex-rollouts` above the repository, or
`$CODEX_STATE_ROLLOUT_DATA`). Issue 3's target is
extraction at no less than 0.7x of the floor's MB/s.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from codex_state.rollout import extract_metadata_from_rollout, load_rollout_items

REPO_ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 30


def rollout_dir() -> Path:
    if len(sys.argv) > 1:
        return Path(sys.argv[1])
    env = os.environ.get("CODEX_STATE_ROLLOUT_DATA")
    if env:
        return Path(env)
    # The nearest shared/ above the repository: a git worktree sits deeper than the checkout.
    for parent in REPO_ROOT.parents:
        candidate = parent / "shared" / "data" / "codex-rollouts"
        if candidate.is_dir():
            return candidate
    return REPO_ROOT.parent / "shared" / "data" / "codex-rollouts"


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


def best_seconds(variants: list[Callable[[list[Path]], None]], files: list[Path]) -> list[float]:
    """Best time of each variant, rounds interleaved so load from other processes hits all alike."""
    best = [float("inf")] * len(variants)
    for _ in range(ROUNDS):
        for index, run in enumerate(variants):
            start = time.perf_counter()
            run(files)
            best[index] = min(best[index], time.perf_counter() - start)
    return best


def main() -> None:
    directory = rollout_dir()
    files = sorted(directory.glob("rollout-*.jsonl"))
    if not files:
        sys.exit(f"no rollout-*.jsonl files in {directory}")
    megabytes = sum(path.stat().st_size for path in files) / 1e6
    variants = [json_loads_floor, extraction, load_items]
    floor, *others = best_seconds(variants, files)
    print(f"{len(files)} files, {megabytes:.2f} MB, best of {ROUNDS} interleaved rounds")
    print(f"{'json_loads_floor':<20}{megabytes / floor:8.1f} MB/s")
    for variant, seconds in zip(variants[1:], others, strict=True):
        ratio = floor / seconds
        print(f"{variant.__name__:<20}{megabytes / seconds:8.1f} MB/s  {ratio:.2f}x of the floor")


if __name__ == "__main__":
    main()
