# Two commands on a fresh machine: `make demo` and `make test`.
CARGO ?= cargo

.PHONY: demo test lint build clean

## Build, start the simulator, drain it into the simulated intake twice, show what arrived.
demo:
	$(CARGO) build --bins
	./scripts/demo.sh

## Everything CI checks: formatting, lints, unit and integration tests.
test: lint
	$(CARGO) test --all-targets

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

build:
	$(CARGO) build --release --bin github-audit-sekoia

clean:
	$(CARGO) clean
	rm -rf target/demo-state
