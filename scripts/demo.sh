#!/usr/bin/env bash
# The demo on embedded defaults: installs what is missing (scripts/setup.sh), then `osce demo` runs the review
# server (SQLite, local disk) and three station agents with synthetic cameras and microphones through a short
# exam day (three candidates rotating through CPR, an intramuscular injection and blood pressure), prints the
# URLs and logins, and stops everything on Ctrl-C. The orchestration is review_server/demo.py.
#   bash scripts/demo.sh                     server on DEMO_PORT (default 8080), agents on 8091.., tablets on 8101..
#   bash scripts/demo.sh --start-in 10       any `osce demo` option (see `osce demo --help`)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
exec osce demo --dir "$PWD/demo-data" --port "${DEMO_PORT:-8080}" "$@"
