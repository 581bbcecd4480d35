#!/usr/bin/env bash
# Install (first time only) and start SIKD Studio with embedded defaults:
# API on :8000, one worker, dashboard on :8501, SQLite + embedded broker under ./sikd_data
# (Redis is used when SIKD_REDIS_URL is set; Postgres when DATABASE_URL is set).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install.sh
. .venv/bin/activate
exec sikd serve "$@"
