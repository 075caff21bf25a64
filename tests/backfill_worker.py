"""A backfill in its own process, for kill and contention tests.

Usage: python -m tests.backfill_worker URL HOME MODE [ARG]
  run          backfill and print the outcome as one JSON line
  kill-at N    SIGKILL this process while extracting the N-th file (mid-batch, uncommitted)
  hold DIR     after the first committed batch, create DIR/held and wait for DIR/go
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from codex_state import StateRuntime
from codex_state import backfill as backfill_module
from codex_state.backfill import BackfillProgress, backfill_codex_home
from codex_state.errors import BackfillRunningError


def main(url: str, home: str, mode: str, arg: str | None = None) -> None:
    progress = None
    if mode == "kill-at":
        _kill_at(int(arg or "1"))
    elif mode == "hold":
        progress = _holder(Path(arg or "."))
    with StateRuntime.from_url(url, "openai") as runtime:
        try:
            stats = backfill_codex_home(runtime, home, batch_size=2, progress=progress)
        except BackfillRunningError as err:
            print(json.dumps({"running": str(err)}), flush=True)
            return
    print(json.dumps(stats.model_dump()), flush=True)


def _kill_at(target: int) -> None:
    real = backfill_module.extract_metadata_from_rollout
    seen = 0

    def extract(path: Any, provider: str) -> Any:
        nonlocal seen
        seen += 1
        if seen == target:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, provider)

    backfill_module.extract_metadata_from_rollout = extract  # type: ignore[assignment]


def _holder(folder: Path) -> Any:
    def progress(update: BackfillProgress) -> None:
        if update.done == 0:
            return
        (folder / "held").touch()
        deadline = time.monotonic() + 60
        while not (folder / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.02)  # waiting for the other process, not ageing a lease

    return progress


if __name__ == "__main__":
    main(*sys.argv[1:])
