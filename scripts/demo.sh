#!/usr/bin/env bash
# The demo on embedded defaults: a station records one attempt from a synthetic camera pair and
# microphone, checks the files and the A/V sync, then serves the in-room marking page for it.
#   bash scripts/demo.sh            (Ctrl-C to stop; DEMO_SECONDS=N to record longer)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
data=demo-data
mkdir -p "$data"
rec="$data/attempt-$(date -u +%Y%m%dT%H%M%S)"

echo "== recording ${DEMO_SECONDS:-20} s from two synthetic cameras and a synthetic microphone into $rec"
osce record --station "Станция 3 (СЛР)" --video synthetic:skew_ppm=40,jitter_ms=5 \
  --video synthetic:skew_ppm=-60,jitter_ms=5,seed=7 --audio synthetic:skew_ppm=300,jitter_ms=5 \
  --seconds "${DEMO_SECONDS:-20}" --out "$rec"
echo "== every fragment present and matching its SHA-256"
osce verify-recording "$rec"
echo "== A/V offset measured from the flash-and-beep markers"
osce sync-check "$rec"

echo "== marking page for the attempt: open the URL below, sign in as 'demo' with PIN 1234"
export OSCE_MARKING_PINS="demo:1234"
exec osce agent marking --checklist checklists/data/01_basic_cpr_adult.yaml --db "$data/marks.db" \
  --attempt demo-attempt --candidate 2611001 --station station-3 --host 127.0.0.1 --port "${DEMO_PORT:-8081}"
