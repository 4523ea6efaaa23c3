#!/usr/bin/env bash
# Runs the connector against the local simulator: a first drain, then a second that must send nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/debug
state=target/demo-state
rm -rf "$state"
sim_out=$(mktemp)

"$bin/github-audit-sekoia-sim" --events 12000 --span 48h --latency-ms 5 >"$sim_out" 2>/dev/null &
sim_pid=$!
trap 'kill $sim_pid 2>/dev/null; rm -f "$sim_out"' EXIT
for _ in $(seq 50); do [ -s "$sim_out" ] && break; sleep 0.1; done
[ -s "$sim_out" ] || { echo "the simulator did not start" >&2; exit 1; }

# shellcheck disable=SC2046 # the simulator prints NAME=value words on purpose
export $(cat "$sim_out")
export GITHUB_TOKEN=ghp_simulated_token SEKOIA_INTAKE_KEY=simulated-intake-key STATE_DIR="$state" FIRST_RUN_LOOKBACK=7d
intake_stats="${SEKOIA_INTAKE_URL}/_sim/stats"

echo "== simulator: GitHub at $GITHUB_API_URL, intake at $SEKOIA_INTAKE_URL, 12000 events over 48h, a tenth of them git events (not forwarded: GITHUB_INCLUDE=web)"
echo "== check: each link a run depends on, without sending an event"
"$bin/github-audit-sekoia" check
echo "== first run: drains the backlog into the intake (summary on stdout)"
"$bin/github-audit-sekoia" run 2>/dev/null | tee target/demo-first.json
echo "== second run: reads again from the newest second delivered, recognises it, sends nothing new"
"$bin/github-audit-sekoia" run 2>/dev/null | tee target/demo-second.json
echo "== what the intake received"
curl -fsS "$intake_stats"
echo

python3 - target/demo-first.json target/demo-second.json "$intake_stats" <<'PY'
import json, sys, urllib.request
first, second = (json.load(open(p)) for p in sys.argv[1:3])
stats = json.load(urllib.request.urlopen(sys.argv[3]))
problems = []
if first["stop_reason"] != "drained": problems.append(f"first run stopped by {first['stop_reason']}")
if second["events_forwarded"] != 0: problems.append(f"second run sent {second['events_forwarded']} events")
if stats["duplicate_events"] != 0: problems.append(f"{stats['duplicate_events']} duplicates at the intake")
if stats["unique_events"] != first["events_forwarded"]: problems.append("intake count differs from the summary")
if problems:
    sys.exit("demo FAILED: " + "; ".join(problems))
print(f"demo OK: {stats['unique_events']} events delivered once each, none twice, second run sent nothing")
PY
