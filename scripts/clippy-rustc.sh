#!/usr/bin/env bash
# The compiler `make test` builds the workspace's crates with (RUSTC_WORKSPACE_WRAPPER): clippy's
# driver, which is rustc plus clippy's lints, with every warning an error as in `make lint`.
# Bash, not sh: dash drops the variables cargo names with a '-' (CARGO_BIN_EXE_<bin>).
exec clippy-driver "$@" -D warnings
