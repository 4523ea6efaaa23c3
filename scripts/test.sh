#!/usr/bin/env bash
# `make test`: every check CI makes, stage by stage, each timed; the times are printed at the end
# (also after a failure), then the test runner's summary again, so that it closes the log.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/tools.sh
. scripts/tools.sh
CARGO=${CARGO:-cargo}
log=target/test-stages
# A failed run must not close on the summary of an earlier one.
mkdir -p target && : >"$log" && rm -f target/test-summary

stage() { # name, command…
  local name=$1 start=$SECONDS
  shift
  echo "== $name"
  "$@"
  printf '%5d s  %s\n' $((SECONDS - start)) "$name" >>"$log"
}
report() {
  local status=$?
  echo "== make test: time per stage (${SECONDS} s in all)"
  cat "$log"
  grep -h -E '^ +Summary \[|^test result:' target/test-summary 2>/dev/null | tail -1 || true
  exit $status
}
trap report EXIT

# Nextest (when this machine has it) runs every binary's tests side by side.
tests() {
  if $CARGO nextest --version >/dev/null 2>&1; then
    ./scripts/with-moto.sh $CARGO nextest run --workspace --no-fail-fast 2>&1 | tee target/test-summary
  else
    ./scripts/with-moto.sh $CARGO test --workspace --lib --bins --tests 2>&1 | tee target/test-summary
  fi
}

stage "tools (pip; once per machine)" make --no-print-directory tools
stage "format" $CARGO fmt --all --check
# Clippy's lints and the build are one compilation: clippy's driver (rustc with clippy's lints)
# compiles the workspace's crates, so the dependencies are compiled once, instead of checked for
# `cargo clippy` and compiled again for the tests (the separate lints stage took 92-167 s of a
# cold run). Every cargo command below inherits it, or it would compile the workspace's crates
# again without it.
export RUSTC_WORKSPACE_WRAPPER=$PWD/scripts/clippy-rustc.sh
build() {
  $CARGO test --workspace --all-targets --no-run --quiet
  $CARGO build --quiet -p github-audit-sekoia-sim --bin github-audit-sekoia-sim
}
# The stages after it take the binaries this built (those of the tests' build: a plain
# `cargo build` would compile the crate again with other features).
export BINARIES_BUILT=1 CLI_BIN=target/debug/github-audit-sekoia

stage "lints and build (tests, benchmarks, examples, CLI, function, simulator)" build
stage "template checks" ./scripts/check-template.sh
stage "function end to end (cargo lambda watch)" ./scripts/with-moto.sh ./scripts/lambda-e2e.sh
stage "forward-s3 under the template's IAM (moto)" ./scripts/with-moto.sh "$tools/sam/bin/python" scripts/iam_e2e.py \
  template.yaml target/debug/github-audit-sekoia target/debug/github-audit-sekoia-sim
stage "tests" tests
