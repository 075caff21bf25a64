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
fi
codex-state --home "$home" backfill
codex-state --home "$home" threads
