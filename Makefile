# Two commands on a fresh machine: `make demo` and `make test`.
CARGO ?= cargo
PYTHON ?= python3
LAMBDA_BIN := github-audit-sekoia-lambda

.PHONY: demo test lint tools bench build deploy deploy-cargo-lambda smoke invoke-local clean

## Build, start the simulator, drain it into the simulated intake twice, show what arrived.
demo:
	$(CARGO) build --workspace --bins
	./scripts/demo.sh

## Everything CI checks: the template (cfn-lint, sam validate --lint, checkov, the targets
## expansion, the policy check), formatting, lints, the function end to end, forward-s3 under the
## template's role with moto enforcing IAM, all tests (AWS is moto's server on a
## loopback port). Each stage is timed (scripts/test.sh); the benchmarks are `make bench`.
test:
	./scripts/test.sh

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## moto (AWS stand-in), cfn-lint and cargo-lambda (with zig for arm64), all from PyPI; SAM and
## checkov get virtual environments of their own, once per machine (scripts/tools.sh).
tools:
	@command -v moto_server >/dev/null && command -v cfn-lint >/dev/null && command -v cargo-lambda >/dev/null \
	  || { $(PYTHON) -m pip install --quiet "moto[server]" cfn-lint cargo-lambda && { pyenv rehash 2>/dev/null || true; }; }

## Events/s, CPU (file and DynamoDB stores) and peak memory of one drain for growing backlogs,
## binary sizes; push mode's figures; DynamoDB request units and USD per million events;
## GitHub requests per 100 events for each read model setting, and events lost through an
## indexing stall (release build, simulator, moto). Figures go to stdout and target/bench/.
bench: tools
	./scripts/bench.sh
	$(CARGO) bench --bench read_cost

## The Lambda bootstrap for Graviton: target/lambda/$(LAMBDA_BIN)/bootstrap
build: tools
	$(CARGO) lambda build --release --arm64 --bin $(LAMBDA_BIN)

## AWS SAM: builds with cargo-lambda, then asks for the stack's parameters (Targets among them).
## The build expands the per-target resources (Fn::ForEach) only to find the function, hence
## its placeholder target; the template it packages keeps Fn::ForEach for CloudFormation to
## expand with the Targets deployed.
deploy:
	sam build --language-extensions --parameter-overrides Targets=org:placeholder
	sam deploy --guided

## After a deploy: the function's {"check": true} and a test notification through the alarm topic.
## make smoke STACK=<stack name>   (standard AWS configuration; boto3 installed if missing)
smoke:
	@test -n "$(STACK)" || { echo "usage: make smoke STACK=<stack name>" >&2; exit 2; }
	@$(PYTHON) -c "import boto3" 2>/dev/null || $(PYTHON) -m pip install --quiet boto3
	$(PYTHON) scripts/smoke.py "$(STACK)"

## Without SAM: the function only; the table, the secret and the role must exist already.
## make deploy-cargo-lambda ROLE_ARN=… GITHUB_ORG=… SECRET_ID=… CURSOR_TABLE=…
deploy-cargo-lambda: build
	$(CARGO) lambda deploy --binary-name $(LAMBDA_BIN) --iam-role $(ROLE_ARN) --timeout 900 --memory 256 \
	  --log-retention 30 --env-var GITHUB_ORG=$(GITHUB_ORG),SECRET_ID=$(SECRET_ID),CURSOR_TABLE=$(CURSOR_TABLE) \
	  github-audit-sekoia

## The function under `cargo lambda watch`, invoked with events/scheduled.json, against the
## simulator and moto.
invoke-local: tools
	./scripts/with-moto.sh ./scripts/lambda-e2e.sh

clean:
	$(CARGO) clean
	rm -rf target/demo-state
