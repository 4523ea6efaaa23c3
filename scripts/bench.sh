#!/usr/bin/env bash
# The release binaries (and the arm64 Lambda bootstrap when cargo-lambda is there), then the
# throughput table of scripts/bench.py (CPU with the DynamoDB store against moto and against an
# instant stand-in, beside the CPU floors of a page's requests and of its save), push mode's
# figures (scripts/bench_push.py, moto's S3), and the DynamoDB store's request units per event
# (benches/dynamo_cost.rs, metered by scripts/dynamo_meter.py).
set -euo pipefail
cd "$(dirname "$0")/.."
# GNU time measures each run's CPU and peak memory; Debian has it.
if [ ! -x /usr/bin/time ]; then
  { apt-get update -qq && apt-get install -y -qq time; } >/dev/null 2>&1 \
    || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
fi
cargo build --release --quiet --workspace --bins
# Its own build: an example brings the dev-dependencies, whose features must not reach the binaries measured.
cargo build --release --quiet --example cpu_floor --example save_floor
if command -v cargo-lambda >/dev/null; then
  cargo lambda build --release --arm64 --quiet --bin github-audit-sekoia-lambda >/dev/null 2>&1 \
    || echo "the arm64 build failed; its size is left out" >&2
fi
./scripts/with-moto.sh python3 scripts/bench.py
./scripts/with-moto.sh python3 scripts/bench_push.py
./scripts/with-moto.sh python3 scripts/dynamo_meter.py cargo bench --bench dynamo_cost
