#!/usr/bin/env bash
# The demo on embedded defaults: the review server (SQLite, local disk) and three station agents with
# synthetic cameras and microphones running a short exam day (three candidates rotating through CPR,
# an intramuscular injection and blood pressure). Prints the URLs and logins; Ctrl-C stops everything.
#   bash scripts/demo.sh            DEMO_PORT=8080 (server), agents on 8091.., marking pages on 8101..
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
root="$PWD/demo-data"
rm -rf "$root" && mkdir -p "$root/server"
port=${DEMO_PORT:-8080}
server="http://127.0.0.1:$port"

cat > "$root/server.toml" <<EOF
database_url = "sqlite:///$root/server/osce.db"
media_dir = "server/media"
port = $port
insecure_cookies = true   # plain http on localhost only
schedule_file = "day.json"
EOF
osce server db upgrade --config "$root/server.toml" >/dev/null 2>&1

password=demo-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$password" > "$root/password"
for who in admin:admin examiner1:examiner examiner2:examiner observer:observer archivist:archivist; do
  osce server user add --config "$root/server.toml" --role "${who#*:}" --password-file "$root/password" "${who%%:*}" >/dev/null
done

# The exam day: each candidate does each task once; reading 20 s, performing 90 s, changeover 20 s.
python3 - "$root" <<'EOF'
import datetime as dt, json, sys
root = sys.argv[1]
start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=40)
stations = ["st1", "st2", "st3"]
stems = {"st1": "01_basic_cpr_adult", "st2": "02_im_injection_gluteal", "st3": "03_blood_pressure"}
candidates = ["2611001", "2611002", "2611003"]
attempts = []
for slot in range(3):
    for i, st in enumerate(stations):
        cand = candidates[(i + slot) % 3]
        attempts.append({"attempt_id": f"demo-{st}-{slot + 1}", "candidate": cand, "station_id": st,
                         "checklist": stems[st], "reading_starts_at": (start + dt.timedelta(seconds=130 * slot)).isoformat(),
                         "reading_s": 20, "performing_s": 90})
json.dump({"attempts": attempts}, open(f"{root}/day.json", "w"), indent=1)
EOF

echo "examiner1:1111" > "$root/pins"
echo "examiner2:2222" >> "$root/pins"
names=("Станция 1 — СЛР" "Станция 2 — в/м инъекция" "Станция 3 — измерение АД")
checklists=(01_basic_cpr_adult 02_im_injection_gluteal 03_blood_pressure)
for n in 1 2 3; do
  st=st$n
  dir="$root/agent-$st"
  mkdir -p "$dir"
  osce server station add --config "$root/server.toml" --name "${names[n-1]}" "$st" | tail -1 > "$dir/token"
  cameras='[[cameras]]
source = "synthetic:skew_ppm=40,jitter_ms=3,label='"$st"'"'
  if [ "$n" = 1 ]; then  # the CPR room has a second camera from above
    cameras="$cameras"'
[[cameras]]
source = "synthetic:skew_ppm=-30,jitter_ms=3,seed=9,label='"$st"' top"'
  fi
  cat > "$dir/agent.toml" <<EOF
[station]
id = "$st"
name = "${names[n-1]}"

[server]
url = "$server"
token_file = "token"

$cameras

[microphone]
source = "synthetic:skew_ppm=200,jitter_ms=3,seed=$n"

[video]
width = 640
height = 360

[storage]
data_dir = "data"
reserve_mb = 200

[exam]
checklist = "$PWD/checklists/data/${checklists[n-1]}.yaml"
pins_file = "$root/pins"
marking_port = $((8100 + n))

[http]
host = "127.0.0.1"
port = $((8090 + n))
EOF
done

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
osce server run --config "$root/server.toml" > "$root/server.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -sf "$server/health" >/dev/null && break; sleep 0.2; done
for n in 1 2 3; do
  osce agent run --config "$root/agent-st$n/agent.toml" > "$root/agent-st$n.log" 2>&1 & pids+=($!)
done

cat <<EOF

OSCE demo is running (logs in $root/*.log). Password for every account below: $password
  observation room (live grid):  $server/live         login observer / examiner1 / admin
  review server:                 $server/            archivist (search, export), admin
  marking pages (tablets):       http://127.0.0.1:8101/ (CPR), :8102, :8103   examiner1 PIN 1111, examiner2 PIN 2222
  room clock pages:              http://127.0.0.1:8091/ , :8092, :8093
The first attempts start in about 40 s; recordings upload to the server as they are made.
Ctrl-C stops everything.
EOF
wait
