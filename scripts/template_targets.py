"""Expands the template's per-target resources (Fn::ForEach, AWS::LanguageExtensions) for a
list of targets, as CloudFormation does, with SAM's own processor, and checks what comes out:
one schedule per target whose input names it, and one lag alarm per target whose dimension is
the cursor name the function writes in its metrics line (orgs/NAME/INCLUDE)."""

import json
import sys

from samcli.lib.cfn_language_extensions.api import process_template
from samcli.lib.cfn_language_extensions.models import PseudoParameterValues
from samtranslator.yaml_helper import yaml_parse

TARGETS = ["org:acme", "org:globex.io", "enterprise:acme-corp=github-audit-sekoia/acme-corp"]
CURSORS = {
    "org:acme": "orgs/acme/git",
    "org:globex.io": "orgs/globex.io/git",
    "enterprise:acme-corp=github-audit-sekoia/acme-corp": "enterprises/acme-corp/git",
}

with open(sys.argv[1]) as f:
    template = yaml_parse(f.read())
parameters = {"Targets": TARGETS, "Include": "git", "LagAlarmSeconds": 3600, "ScheduleRate": "rate(5 minutes)"}
expanded = process_template(template, parameters, PseudoParameterValues(region="eu-west-3", account_id="123456789012"))
resources = expanded["Resources"]

inputs = sorted(
    json.loads(r["Properties"]["Target"]["Input"])["target"]
    for r in resources.values()
    if r["Type"] == "AWS::Scheduler::Schedule"
)
dimensions = sorted(
    r["Properties"]["Dimensions"][0]["Value"]
    for r in resources.values()
    if r["Type"] == "AWS::CloudWatch::Alarm"
    and r["Properties"].get("Namespace") == "GitHubAuditSekoia"
    and r.get("Condition") == "HasTargets"
)
problems = []
if inputs != sorted(TARGETS):
    problems.append(f"schedule inputs {inputs}, expected {sorted(TARGETS)}")
if dimensions != sorted(CURSORS.values()):
    problems.append(f"lag alarm dimensions {dimensions}, expected {sorted(CURSORS.values())}")
if any("Fn::ForEach" in key for key in resources):
    problems.append("an Fn::ForEach was left unexpanded")

# Push mode alone: no target. The list holds one empty item; what is made of it must resolve
# and carry the HasTargets condition, so that CloudFormation makes nothing of it.
push_only = process_template(
    yaml_parse(open(sys.argv[1]).read()),
    {**parameters, "Targets": [""], "PushMode": "on"},
    PseudoParameterValues(region="eu-west-3", account_id="123456789012"),
)["Resources"]
per_target = [k for k in push_only if k in ("Schedule", "LagAlarm")]
if sorted(per_target) != ["LagAlarm", "Schedule"] or any(push_only[k].get("Condition") != "HasTargets" for k in per_target):
    problems.append(f"with no target, per-target resources {per_target} are not all under HasTargets")
if "StreamEventSource" not in push_only:
    problems.append("push mode has no event source mapping")
# A push-only stack with no traffic stays OK: no alarm it makes may count missing data as breaching
# (CloudFormation makes nothing of resources whose condition is HasTargets).
breaching = [
    name
    for name, r in push_only.items()
    if r["Type"] == "AWS::CloudWatch::Alarm"
    and r.get("Condition") != "HasTargets"
    and r["Properties"].get("TreatMissingData", "missing") in ("breaching", "missing")
]
# The bucket's lag alarm reads the figure the function writes for it (Target s3/BUCKET).
stream_lag = push_only.get("StreamLagAlarm", {}).get("Properties", {})
stream_dimension = (stream_lag.get("Dimensions") or [{}])[0]
if (stream_lag.get("MetricName"), stream_dimension.get("Name"), str(stream_dimension.get("Value"))) != (
    "LagSeconds", "Target", "s3/${StreamBucket}"
):
    problems.append(f"push mode's lag alarm does not watch LagSeconds of s3/BUCKET: {stream_lag}")
if breaching:
    problems.append(f"a quiet push-only stack would be in alarm: {breaching} treat missing data as breaching")

# Fn::ForEach names each target's resources after its letters and digits alone: two items that
# differ only in the rest must be refused (here by the expansion, at deploy by CloudFormation,
# and by the function's own TARGETS parser, which says so first).
try:
    process_template(
        yaml_parse(open(sys.argv[1]).read()),
        {**parameters, "Targets": ["org:a-b", "org:ab"]},
        PseudoParameterValues(region="eu-west-3", account_id="123456789012"),
    )
    problems.append("org:a-b and org:ab expanded without a conflict: one target's resources would replace the other's")
except Exception as refusal:  # the processor's InvalidTemplateException
    if "Scheduleorgab" not in str(refusal):
        problems.append(f"org:a-b and org:ab were refused for another reason: {refusal}")

if problems:
    sys.exit("template targets expansion: " + "; ".join(problems))
print(
    f"template targets expansion OK: {len(inputs)} schedules and {len(dimensions)} lag alarms for {len(TARGETS)} targets;"
    " none made with no target (push mode alone), whose alarms stay OK when quiet; org:a-b beside org:ab refused"
)
