#!/usr/bin/env bash
# Starts the system parts the tests use as real stand-ins: a PulseAudio daemon with a null sink
# ("room") whose monitor is the test microphone, and a PostgreSQL cluster on loopback.
# Prints the environment the tests read (eval it).
set -euo pipefail

if ! pactl info >/dev/null 2>&1; then
  pulseaudio -D --exit-idle-time=-1 --disallow-exit >/dev/null 2>&1 || true
  for _ in $(seq 50); do pactl info >/dev/null 2>&1 && break; sleep 0.1; done
fi
pactl info >/dev/null 2>&1 || { echo "services: PulseAudio did not start" >&2; exit 1; }
# norewinds: without it the sink re-renders its buffer whenever a low-latency client connects, and
# the sound's delay through it changed by hundreds of ms between recordings (measured).
pactl list short sinks | grep -q '\broom\b' \
  || pactl load-module module-null-sink sink_name=room rate=48000 channels=1 norewinds=1 >/dev/null
pactl set-default-sink room
pactl set-default-source room.monitor

# PostgreSQL: Debian's cluster tools when present (root), otherwise nothing (tests then fail loudly in CI).
if command -v pg_lsclusters >/dev/null 2>&1; then
  ver=$(pg_lsclusters -h | awk 'NR==1{print $1}')
  name=$(pg_lsclusters -h | awk 'NR==1{print $2}')
  if [ -n "$ver" ]; then
    pg_ctlcluster "$ver" "$name" start >/dev/null 2>&1 || true
    for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 && break; sleep 0.2; done
    su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='osce'\"" | grep -q 1 \
      || su postgres -c "psql -qc \"CREATE ROLE osce LOGIN SUPERUSER PASSWORD 'osce'\""
    su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='osce_test'\"" | grep -q 1 \
      || su postgres -c "createdb -O osce osce_test"
    echo "export OSCE_TEST_PG_URL=postgresql+psycopg://osce:osce@127.0.0.1:5432/osce_test"
  fi
fi
