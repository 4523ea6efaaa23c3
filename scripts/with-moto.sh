#!/usr/bin/env bash
# Runs a command with moto's server standing in for AWS on a free loopback port, reached the
# standard way: AWS_ENDPOINT_URL plus dummy credentials and a region.
set -euo pipefail
command -v moto_server >/dev/null || { echo "moto_server is missing: pip install 'moto[server]' (make tools)" >&2; exit 1; }

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
moto_server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:$port/moto-api/" 2>/dev/null && break
  sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$port/moto-api/" || { echo "moto_server did not start:" >&2; cat "$log" >&2; exit 1; }

export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN
"$@"
