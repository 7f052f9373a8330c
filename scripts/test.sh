#!/usr/bin/env bash
# Sets up everything the tests need and runs them: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
eval "$(bash scripts/services.sh)"
export OSCE_CHROMIUM=${OSCE_CHROMIUM:-/usr/bin/chromium}
.venv/bin/ruff check .
.venv/bin/mypy media checklists station_agent review_server
exec .venv/bin/pytest -q "$@"
