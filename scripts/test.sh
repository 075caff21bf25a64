#!/usr/bin/env bash
# Set up .venv if needed and run the test suite. PostgreSQL tests run when
# CODEX_STATE_TEST_PG_URL is set (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test).
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
cd "$ROOT"
exec python -m pytest "$@"
