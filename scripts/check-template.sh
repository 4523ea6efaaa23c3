#!/usr/bin/env bash
# The template's checks: cfn-lint, `sam validate --lint`, checkov (each skip is annotated in the
# template with why), the expansion of the targets list, and the policy check: the stack's IAM
# read the way AWS reads it, against the AWS calls the product makes (src/aws_calls.rs). SAM and
# checkov live in virtual environments of their own (scripts/tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/tools.sh
. scripts/tools.sh
work=target/template-checks
mkdir -p "$work"
tool_venv sam aws-sam-cli
tool_venv checkov checkov

export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
cfn-lint template.yaml
"$tools/sam/bin/sam" validate --lint --template template.yaml
"$tools/checkov/bin/checkov" --file template.yaml --framework cloudformation --compact --quiet --skip-download
# checkov leaves out resources whose condition is false with the defaults: push mode's are
# scanned in a copy where it is on.
push_variant=$work/template-push-mode.json
"$tools/sam/bin/python" - "$push_variant" <<'PY'
import json, sys
from samtranslator.yaml_helper import yaml_parse
template = yaml_parse(open("template.yaml").read())
template["Parameters"]["PushMode"]["Default"] = "on"
template["Parameters"]["StreamEnterprise"]["Default"] = "acme-corp"
json.dump(template, open(sys.argv[1], "w"))
PY
"$tools/checkov/bin/checkov" --file "$push_variant" --framework cloudformation --compact --quiet --skip-download
"$tools/sam/bin/python" scripts/template_targets.py template.yaml
[ -n "${CLI_BIN:-}" ] || { cargo build --quiet --bin github-audit-sekoia && CLI_BIN=target/debug/github-audit-sekoia; }
"$CLI_BIN" permissions --json >"$work/aws-calls.json"
"$tools/sam/bin/python" scripts/policy_check.py template.yaml $work/aws-calls.json
