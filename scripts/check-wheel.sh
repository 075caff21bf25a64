#!/usr/bin/env bash
# Build the wheel, install it into a fresh virtual environment outside the repository, and check
# that the installed package (with its bundled migrations) creates a working database.
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python -m build --wheel --outdir "$work/dist" "$ROOT" >/dev/null
wheel="$(ls "$work"/dist/codex_state-*.whl)"
unzip -l "$wheel" | grep -q "codex_state/_alembic/versions/0001_seed_schema.py" \
  || { echo "wheel is missing the migrations"; exit 1; }
python -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet "$wheel"
cd "$work"
"$work/venv/bin/python" - <<'PY'
import pathlib, sqlite3, tempfile
import codex_state
from codex_state import StateRuntime, state_db_path

assert "site-packages" in codex_state.__file__, codex_state.__file__
home = pathlib.Path(tempfile.mkdtemp())
with StateRuntime.init(home, "openai") as runtime:
    runtime.checkpoint_backfill("sessions/x.jsonl")
    assert runtime.get_backfill_state().last_watermark == "sessions/x.jsonl"
conn = sqlite3.connect(state_db_path(home))
tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
version = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
assert {"threads", "logs", "memory_phase1_jobs", "backfill_state"} <= tables, tables
print(f"wheel check: installed package created a database at revision {version}")
PY
"$work/venv/bin/codex-state" --home "$work/home" init
