"""forward-s3 under the function's own role, with moto enforcing IAM where it is faithful (S3:
actions and object/bucket ARNs). The role's policies are the template's, expanded for push mode
by the policy check's own expansion; moto's resources get the names that expansion made up.

- with the role as deployed, forward-s3 reads and lists the bucket and every event arrives once;
- with s3:GetObject taken out, it fails, and its error names the permission the role lacks.

The cursors live in files (DynamoDB and Secrets Manager are where moto's IAM is not faithful:
the policy check evaluates those). Run under scripts/with-moto.sh with SAM's Python (make test).
Usage: iam_e2e.py TEMPLATE CLI_BINARY SIM_BINARY
"""

import copy
import gzip
import json
import os
import subprocess
import sys
import tempfile
import urllib.request

import boto3

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import policy_check  # noqa: E402  (beside this script)

TEMPLATE, CLI, SIM = sys.argv[1:4]
REGION = policy_check.REGION
EVENTS_PER_FILE, FILES = 150, 2
boto = boto3.session.Session(region_name=REGION)


def function_role_statements():
    """The function role's inline statements for push mode (the managed policy is Lambda's logs)."""
    resources, _ = policy_check.expand(open(TEMPLATE).read(), policy_check.VARIANTS["push mode"])
    role = resources["ConnectorFunctionRole"]["Properties"]
    bucket = resources["ConnectorFunction"]["Properties"]["Environment"]["Variables"]["STREAM_BUCKET"]
    return [s for p in role["Policies"] for s in policy_check.listed(p["PolicyDocument"]["Statement"])], bucket


def role_credentials(iam, sts, name, statements):
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
             "Principal": {"AWS": f"arn:aws:iam::{policy_check.ACCOUNT}:root"}}]}
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="template", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": statements}))
    c = sts.assume_role(RoleArn=arn, RoleSessionName="iam-e2e")["Credentials"]
    return {"AWS_ACCESS_KEY_ID": c["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": c["SecretAccessKey"],
            "AWS_SESSION_TOKEN": c["SessionToken"]}


def enforce_iam():
    """From now on moto authorizes every request against the caller's policies."""
    request = urllib.request.Request(os.environ["AWS_ENDPOINT_URL"] + "/moto-api/reset-auth", data=b"0",
                                     headers={"Content-Type": "text/plain"}, method="POST")
    urllib.request.urlopen(request).read()


def forward(credentials, intake, state):
    env = dict(os.environ, **credentials, AWS_REGION=REGION, SEKOIA_INTAKE_URL=intake,
               SEKOIA_INTAKE_KEY="simulated-intake-key", STATE_DIR=state, LOG_LEVEL="warn")
    return subprocess.run([CLI, "forward-s3", "--bucket", BUCKET], env=env, capture_output=True, text=True, timeout=300)


statements, BUCKET = function_role_statements()
s3 = boto.client("s3")
s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
for f in range(FILES):
    lines = "".join(json.dumps({"@timestamp": 1795000000000 + i, "_document_id": f"iam-{f}-{i}", "action": "repo.create"}) + "\n"
                    for i in range(EVENTS_PER_FILE))
    s3.put_object(Bucket=BUCKET, Key=f"2026/11/22/10/0{f}/file-{f}.json.gz", Body=gzip.compress(lines.encode()))
iam, sts = boto.client("iam"), boto.client("sts")
deployed = role_credentials(iam, sts, "connector-as-deployed", statements)
without_get = copy.deepcopy(statements)
for s in without_get:
    s["Action"] = [a for a in policy_check.listed(s["Action"]) if a != "s3:GetObject"]
lacking = role_credentials(iam, sts, "connector-without-getobject", [s for s in without_get if s["Action"]])

sim = subprocess.Popen([SIM, "--events", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
try:
    intake = dict(word.split("=", 1) for word in sim.stdout.readline().split())["SEKOIA_INTAKE_URL"]
    enforce_iam()
    with tempfile.TemporaryDirectory() as work:
        good = forward(deployed, intake, os.path.join(work, "deployed"))
        bad = forward(lacking, intake, os.path.join(work, "lacking"))
    stats = json.load(urllib.request.urlopen(intake + "/_sim/stats"))
finally:
    sim.terminate()

assert good.returncode == 0, f"forward-s3 under the deployed role failed:\n{good.stdout}\n{good.stderr}"
assert json.loads(good.stdout.strip().splitlines()[-1])["events_forwarded"] == FILES * EVENTS_PER_FILE, good.stdout
assert stats["unique_events"] == FILES * EVENTS_PER_FILE and stats["duplicate_events"] == 0, stats
assert bad.returncode == 1, f"forward-s3 without s3:GetObject did not fail:\n{bad.stdout}\n{bad.stderr}"
assert "AccessDenied" in bad.stdout + bad.stderr and "s3:GetObject" in bad.stdout + bad.stderr, bad.stdout + bad.stderr
print(f"iam e2e OK: moto enforcing IAM, forward-s3 under the template's function role forwarded {FILES} files"
      f" ({FILES * EVENTS_PER_FILE} events, once each); without s3:GetObject it failed naming that permission")
