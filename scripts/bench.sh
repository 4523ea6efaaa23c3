#!/usr/bin/env bash
# Throughput and peak memory of one drain, for backlogs of growing size (release build, loopback
# simulator without latency). Memory should stay flat: one page at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || { echo "needs GNU time: apt-get install time" >&2; exit 1; }

cargo build --release --quiet --workspace --bins
printf '%10s %10s %10s %14s\n' events seconds events/s peak_rss_MB
for events in ${BENCH_EVENTS:-20000 100000 200000}; do
  work=$(mktemp -d)
  target/release/github-audit-sekoia-sim --events "$events" --span 72h --git-share 0 --rate-limit 1000000 \
    >"$work/sim" 2>/dev/null &
  sim=$!
  for _ in $(seq 100); do [ -s "$work/sim" ] && break; sleep 0.1; done
  # shellcheck disable=SC2046 # NAME=value words
  env $(cat "$work/sim") GITHUB_TOKEN=ghp_simulated_token SEKOIA_INTAKE_KEY=simulated-intake-key \
    STATE_DIR="$work/state" FIRST_RUN_LOOKBACK=7d LOG_LEVEL=warn \
    /usr/bin/time -f '%e %M' -o "$work/time" target/release/github-audit-sekoia run >"$work/summary"
  kill "$sim"
  read -r seconds rss_kb <"$work/time"
  forwarded=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["events_forwarded"])' "$work/summary")
  [ "$forwarded" = "$events" ] || { echo "only $forwarded of $events events forwarded" >&2; exit 1; }
  python3 -c 'import sys; e,s,r=int(sys.argv[1]),float(sys.argv[2]),int(sys.argv[3]); print(f"{e:>10} {s:>10.2f} {e/max(s,0.01):>10.0f} {r/1024:>14.1f}")' \
    "$events" "$seconds" "$rss_kb"
  rm -rf "$work"
done
