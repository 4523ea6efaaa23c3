#!/usr/bin/env bash
# The release binaries (and the arm64 Lambda bootstrap when cargo-lambda is there), then the
# throughput table of scripts/bench.py, and push mode's figures (scripts/bench_push.py, moto's S3).
set -euo pipefail
cd "$(dirname "$0")/.."
# GNU time measures each run's CPU and peak memory; Debian has it.
if [ ! -x /usr/bin/time ]; then
  { apt-get update -qq && apt-get install -y -qq time; } >/dev/null 2>&1 \
    || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
fi
cargo build --release --quiet --workspace --bins
if command -v cargo-lambda >/dev/null; then
  cargo lambda build --release --arm64 --quiet --bin github-audit-sekoia-lambda >/dev/null 2>&1 \
    || echo "the arm64 build failed; its size is left out" >&2
fi
python3 scripts/bench.py
./scripts/with-moto.sh python3 scripts/bench_push.py
