#!/usr/bin/env bash
# The main job on the embedded default: set up .venv if needed, copy the example codex home
# (synthetic rollout files) to ./.codex-home, index it into .codex-home/state_4.sqlite, and list
# its threads. Pass another codex home as the first argument to index that one instead.
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
cd "$ROOT"
home="${1:-}"
if [ -z "$home" ]; then
  home="$ROOT/.codex-home"
  rm -rf "$home"
  cp -R "$ROOT/examples/codex-home" "$home"
  # A thread's updated_at is its rollout's mtime; a fresh copy would show the copy time, so give
  # each file the time of its last line, as if Codex had just written it.
  python - "$home" <<'PY'
import json, os, sys
from datetime import datetime
from pathlib import Path

for path in Path(sys.argv[1]).rglob("rollout-*.jsonl"):
    last = path.read_text().strip().splitlines()[-1]
    when = datetime.fromisoformat(json.loads(last)["timestamp"].replace("Z", "+00:00"))
    os.utime(path, (when.timestamp(), when.timestamp()))
PY
fi
codex-state --home "$home" backfill
codex-state --home "$home" threads
