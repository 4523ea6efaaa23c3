#!/usr/bin/env bash
# The built function end to end, as AWS would run it: `cargo lambda watch` emulates Lambda's
# runtime API (and its Invoke API, for the function it names `_`) while the function's binary,
# built once with the tests (BINARIES_BUILT=1) or here, polls it; `cargo lambda invoke` sends
# events/scheduled.json (and an SQS batch announcing a streamed file), and `backfill --on-lambda`
# runs a backfill on a second function of two targets. GitHub and the intake are the simulator;
# DynamoDB, Secrets Manager and S3 are moto (run under scripts/with-moto.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${AWS_ENDPOINT_URL:?run under scripts/with-moto.sh}"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

[ -n "${BINARIES_BUILT:-}" ] || cargo build --quiet --bins -p github-audit-sekoia -p github-audit-sekoia-sim
target/debug/github-audit-sekoia-sim --events 1500 --span 6h --git-share 0 --second-org globex >"$work/sim" 2>/dev/null &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/sim" ] && break; sleep 0.1; done
# shellcheck disable=SC2046 # NAME=value words
export $(cat "$work/sim")
# The function gets its target the way the template gives it: TARGETS, not GITHUB_ORG.
org=$GITHUB_ORG
unset GITHUB_ORG

suffix=$RANDOM$RANDOM
table="e2e-cursors-$suffix"
secret="e2e-github-audit-$suffix"
python3 - "$table" "$secret" <<'PY'
import json, sys, boto3
table, secret = sys.argv[1:3]
boto3.client("dynamodb").create_table(
    TableName=table, BillingMode="PAY_PER_REQUEST",
    AttributeDefinitions=[{"AttributeName": "target", "AttributeType": "S"}],
    KeySchema=[{"AttributeName": "target", "KeyType": "HASH"}])
boto3.client("secretsmanager").create_secret(Name=secret, SecretString=json.dumps(
    {"github_token": "ghp_simulated_token", "sekoia_intake_key": "simulated-intake-key"}))
PY

port=$(free_port)
# The function as Lambda runs it, on its own runtime API at `port`, with these variables.
serve_function() { # port, NAME=value…
  local port=$1
  shift
  cargo lambda watch --only-lambda-apis --invoke-address 127.0.0.1 --invoke-port "$port" >"$work/apis-$port.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do (: >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  env "$@" AWS_LAMBDA_FUNCTION_NAME=_ AWS_LAMBDA_FUNCTION_VERSION=1 AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256 \
    AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$port/.rt" target/debug/github-audit-sekoia-lambda >"$work/function-$port.log" 2>&1 &
  pids+=($!)
}
common=(GITHUB_API_URL="$GITHUB_API_URL" SEKOIA_INTAKE_URL="$SEKOIA_INTAKE_URL" SECRET_ID="$secret"
  CURSOR_TABLE="$table" FIRST_RUN_LOOKBACK=1d MAX_RUN_SECONDS=60)
port=$(free_port)
serve_function "$port" TARGETS="org:$org" "${common[@]}"
# The same function on a stack of two targets, for a backfill started from the CLI.
port_two=$(free_port)
serve_function "$port_two" TARGETS="org:$org,org:globex" "${common[@]}"

invoke() {
  timeout 300 cargo lambda invoke _ --invoke-address 127.0.0.1 --invoke-port "$port" --data-file "$1"
}
answer=""
for _ in $(seq 120); do
  if answer=$(invoke events/scheduled.json 2>"$work/invoke.err"); then break; fi
  sleep 1
done
[ -n "$answer" ] || { echo "the function never answered:" >&2; cat "$work/invoke.err" "$work"/*-"$port".log >&2; exit 1; }
echo "$answer"
second=$(invoke events/scheduled.json)
check=$(invoke events/check.json)

# Push mode: an object in moto's S3 and the SQS batch that announces it, twice.
python3 - "$work" "$suffix" <<'PY'
import gzip, json, sys, boto3
work, suffix = sys.argv[1:3]
bucket = f"e2e-audit-stream-{suffix}"
key = "2026/11/22/10/00/4c1f0f3e-0000-4000-8000-000000000001.json.gz"
lines = "".join(json.dumps({"@timestamp": 1795000000000 + i, "_document_id": f"stream-{suffix}-{i}",
                            "action": "api.request", "actor": "octocat"}) + "\n" for i in range(200))
s3 = boto3.client("s3")
s3.create_bucket(Bucket=bucket)
put = s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(lines.encode()))
notification = {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
    "eventTime": "2026-11-22T10:00:01.000Z", "eventName": "ObjectCreated:Put",
    "s3": {"bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
           "object": {"key": key.replace("/", "%2F"), "size": 1, "eTag": put["ETag"].strip('"')}}}]}
batch = {"Records": [{"messageId": "m-1", "receiptHandle": "r", "body": json.dumps(notification), "attributes": {},
    "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:stream", "awsRegion": "us-east-1"}]}
json.dump(batch, open(f"{work}/stream-batch.json", "w"))
PY
streamed=$(invoke "$work/stream-batch.json")
streamed_again=$(invoke "$work/stream-batch.json")

python3 - "$answer" "$second" "$SEKOIA_INTAKE_URL/_sim/stats" "$check" "$streamed" "$streamed_again" <<'PY'
import json, sys, urllib.request
first, second = json.loads(sys.argv[1]), json.loads(sys.argv[2])
check = json.loads(sys.argv[4])
assert check["ok"] is True and len(check["targets"]) == 1, check
assert all(v["status"] == "pass" for v in check["targets"][0]["checks"]), check
stats = json.load(urllib.request.urlopen(sys.argv[3]))
assert first["stop_reason"] == "drained", first
assert first["events_forwarded"] == 1500, first
assert second["events_forwarded"] == 0, second
for streamed in sys.argv[5:7]:
    assert json.loads(streamed)["batchItemFailures"] == [], streamed
assert stats["unique_events"] == 1500 + 200 and stats["duplicate_events"] == 0, stats
print(f"lambda e2e OK: {first['events_forwarded']} events through cargo lambda watch, second invocation sent nothing, check passed;"
      " a streamed file of 200 events forwarded once from an SQS batch delivered twice")
PY

# `make smoke` against what moto has: stacks (their outputs), the function (cargo lambda watch
# answers Lambda's Invoke API), the errors alarm and its topic. moto's CloudFormation makes no
# alarms and its CloudWatch keeps no alarm history, so the alarms are made directly and the
# notification is reported unconfirmed. A topic under alias/aws/sns must fail the check.
python3 - "$suffix" <<'PY'
import json, sys, boto3
suffix = sys.argv[1]
cloudformation, sns, cloudwatch = boto3.client("cloudformation"), boto3.client("sns"), boto3.client("cloudwatch")
for stack, key in ((f"smoke-{suffix}", None), (f"smoke-aws-sns-key-{suffix}", "alias/aws/sns")):
    cloudformation.create_stack(StackName=stack, TemplateBody=json.dumps({
        "Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"FunctionName": {"Value": "_"}}}))
    topic = sns.create_topic(Name=f"{stack}-alarms", Attributes={"KmsMasterKeyId": key} if key else {})["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="email", Endpoint="soc@example.com")
    cloudwatch.put_metric_alarm(AlarmName=f"{stack}-errors", Namespace="AWS/Lambda", MetricName="Errors",
        Statistic="Sum", Period=900, EvaluationPeriods=1, Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold", AlarmActions=[topic])
PY
export AWS_ENDPOINT_URL_LAMBDA="http://127.0.0.1:$port"
python3 scripts/smoke.py "smoke-$suffix" >"$work/smoke.out" 2>&1 || { echo "make smoke failed on a good stack:" >&2; cat "$work/smoke.out" >&2; exit 1; }
if python3 scripts/smoke.py "smoke-aws-sns-key-$suffix" >"$work/smoke-bad.out" 2>&1; then
  echo "make smoke passed a topic under alias/aws/sns:" >&2; cat "$work/smoke-bad.out" >&2; exit 1
fi
cat "$work/smoke.out"
python3 - "$work/smoke.out" "$work/smoke-bad.out" "smoke-$suffix-errors" <<'PY'
import sys, boto3
good, bad, alarm = open(sys.argv[1]).read(), open(sys.argv[2]).read(), sys.argv[3]
for line in ("configuration:", "cursor", "smoke check passed", "soc@example.com"):
    assert line in good, (line, good)
assert "alias/aws/sns, which CloudWatch cannot use" in bad and "smoke check failed" in bad, bad
state = boto3.client("cloudwatch").describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0]["StateValue"]
assert state == "OK", f"the smoke check left {alarm} in {state}"
print("smoke check OK: the check invocation's lines printed, the alarm set to ALARM and back to OK;"
      " a topic under alias/aws/sns refused")
PY

# `backfill --on-lambda` on the stack of two targets: without --target it is refused before any
# run, naming both; with it, runs are invoked as events and followed to completion.
since=$(date -u -d '-7 hours' +%Y-%m-%dT%H:%M:%SZ)
until=$(date -u +%Y-%m-%dT%H:%M:%SZ)
backfill() { AWS_ENDPOINT_URL_LAMBDA="http://127.0.0.1:$port_two" timeout 600 target/debug/github-audit-sekoia backfill \
  --on-lambda _ --since "$since" --until "$until" "$@"; }
for _ in $(seq 120); do
  curl -fsS -o /dev/null -d '{"check":true}' "http://127.0.0.1:$port_two/2015-03-31/functions/_/invocations" && break
  sleep 1
done
status=0
backfill >"$work/refused.out" 2>"$work/refused.err" || status=$?
[ "$status" -eq 2 ] && grep -q "org:$org, org:globex" "$work/refused.err" \
  || { echo "a backfill without --target on two targets was not refused naming them (exit $status):" >&2; cat "$work/refused.err" >&2; exit 1; }
backfill --target org:globex >"$work/backfill.out" 2>"$work/backfill.err" \
  || { echo "backfill --on-lambda failed:" >&2; cat "$work/backfill.err" "$work"/*-"$port_two".log >&2; exit 1; }
cat "$work/backfill.err"
python3 - "$work/backfill.out" "$work/backfill.err" "$SEKOIA_INTAKE_URL/_sim/stats" <<'PY'
import json, sys, urllib.request
last = json.load(open(sys.argv[1]))
progress = open(sys.argv[2]).read().splitlines()
stats = json.load(urllib.request.urlopen(sys.argv[3]))
assert last["complete"] is True and last["events_forwarded"] == 1500, last
assert last["cursor"].startswith("backfill/orgs/globex/web/"), last
assert len(progress) >= 2 and "0.0% covered" in progress[0] and "100.0% covered" in progress[-1], progress
assert stats["unique_events"] == 1500 + 200 + 1500 and stats["duplicate_events"] == 0, stats
print(f"backfill --on-lambda OK: refused without a target on two targets; org:globex's {last['events_forwarded']} events"
      f" forwarded once through asynchronous runs, {len(progress)} progress lines")
PY

