"""Reads the stack's IAM the way AWS does, for the variants a user deploys (defaults; push mode;
a customer-managed key; two targets; push mode alone), and checks it against the table of AWS
calls the product makes (`github-audit-sekoia permissions --json`, src/aws_calls.rs).

Each variant is expanded as CloudFormation would (Fn::ForEach with SAM CLI's processor, then the
SAM transform), its intrinsics resolved with made-up physical names, and then:
- every call of the table is evaluated against its role: an Allow must match action, resource
  and condition, and no Deny may match (an explicit Deny beats every Allow);
- with a key, the KMS actions each service asks for on the caller's behalf (Secrets Manager,
  DynamoDB, SQS, S3 decrypt with the caller's permissions) are evaluated the same way, with
  kms:ViaService set as AWS sets it;
- resource policies (queues, bucket) must not deny those calls over TLS, and the stream's queue
  must let S3 announce files;
- no role holds a Deny statement or an Allow that no call needs (least privilege);
- no alarm notifies a topic under alias/aws/sns (CloudWatch cannot use that key), reserved
  concurrency is absent unless MaxConcurrentRuns asks for it, and when present it holds every
  run the stream's queue may start at once (else Lambda throttles them toward the dead letters);
- the template's Rules accept every variant, and refuse each of REFUSED with the rule named.
Then it proves it can fail: every action removed from a role, one at a time, a Deny added, the
table's time to live removed and a reservation below the queue's runs must each be caught.

What it cannot know: the key policy of KmsKeyArn (it must let CloudWatch Logs, CloudWatch alarms
and S3 use the key: README), SCPs and permission boundaries of the account, the existing
AlarmTopicArn's encryption, and the grant Lambda uses for the environment (made at deploy time
with the deployer's permissions).

Usage: policy_check.py TEMPLATE PERMISSIONS_JSON
"""

import copy
import fnmatch
import json
import logging
import os
import re
import sys

from samcli.lib.cfn_language_extensions.api import process_template
from samcli.lib.cfn_language_extensions.models import PseudoParameterValues
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

REGION, ACCOUNT, PARTITION, STACK = "eu-west-3", "123456789012", "aws", "audit"
os.environ["AWS_DEFAULT_REGION"] = REGION  # the SAM transform's pseudo parameters
# The SAM transform's own usage metrics, which it warns about never publishing.
logging.getLogger("samtranslator.metrics.metrics").setLevel(logging.ERROR)
KMS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:github-audit-sekoia-AbCdEf"
# AWS managed policies the SAM transform attaches, as AWS publishes them.
# https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSLambdaBasicExecutionRole.html
MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": [
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": "*",
        }
    ],
}
# Extra actions a managed policy brings that no call needs: named here so that nothing else is.
MANAGED_EXTRAS = {"logs:CreateLogGroup"}

BASE = {"SecretArn": SECRET, "Targets": ["org:acme"]}
VARIANTS = {
    "defaults": {},
    "push mode": {"PushMode": "on", "StreamEnterprise": "acme-corp"},
    "a customer-managed key, push mode, alarm e-mail": {
        "KmsKeyArn": KMS_KEY,
        "PushMode": "on",
        "StreamEnterprise": "acme-corp",
        "AlarmEmail": "soc@example.com",
    },
    "two targets, alarm e-mail": {
        "Targets": ["org:acme", "enterprise:acme-corp=github-audit-sekoia/acme-corp"],
        "AlarmEmail": "soc@example.com",
    },
    "push mode alone, a key": {"Targets": [""], "PushMode": "on", "StreamEnterprise": "acme-corp", "KmsKeyArn": KMS_KEY},
    "reserved concurrency": {"MaxConcurrentRuns": 5},
    "push mode, reserved concurrency": {"PushMode": "on", "StreamEnterprise": "acme-corp", "MaxConcurrentRuns": 3},
    "an existing cursor table, push mode": {
        "CursorTableName": "github-audit-sekoia-cursors",
        "PushMode": "on",
        "StreamEnterprise": "acme-corp",
    },
}

# Parameters the template's Rules must refuse, each with the rule that refuses it.
REFUSED = {
    "push mode without the enterprise": ({"PushMode": "on"}, "PushModeNeedsTheEnterprise"),
    "no target, push mode off": ({"Targets": [""]}, "SomethingToForward"),
    "push mode with a reservation of one run": (
        {"PushMode": "on", "StreamEnterprise": "acme-corp", "MaxConcurrentRuns": 1},
        "ReservationHoldsTheStreamsRuns",
    ),
}


class StaticPolicies:
    """The SAM transform's managed-policy lookup, without asking IAM."""

    def load(self):
        return {arn.rsplit("/", 1)[1]: arn for arn in MANAGED_POLICIES}


def parameters_of(template, overrides):
    """The stack's parameters: the defaults, BASE, then the variant's own."""
    parameters = {name: spec.get("Default") for name, spec in template["Parameters"].items()}
    parameters.update(BASE)
    parameters.update(overrides)
    for name, spec in template["Parameters"].items():
        if spec["Type"] == "CommaDelimitedList" and isinstance(parameters[name], str):
            parameters[name] = parameters[name].split(",")
    return parameters


def broken_rules(template, parameters):
    """The template's Rules that refuse `parameters`, as CloudFormation evaluates them before it
    makes anything: a rule applies when its RuleCondition holds, and fails if an Assert does not."""
    resolver = Resolver({"Resources": {}, "Conditions": {}}, parameters)

    def holds(node):
        value = resolver.value(node)
        if not isinstance(value, bool):
            raise SystemExit(f"policy check: a rule's function in {node} is not modelled; add it")
        return value

    return sorted(
        name
        for name, rule in template.get("Rules", {}).items()
        if holds(rule.get("RuleCondition", True)) and not all(holds(a["Assert"]) for a in rule["Assertions"])
    )


def expand(template_text, overrides):
    """The stack's resources as CloudFormation would make them, and the parameters they were made with."""
    template = yaml_parse(template_text)
    parameters = parameters_of(template, overrides)
    pseudo = PseudoParameterValues(region=REGION, account_id=ACCOUNT, stack_name=STACK, partition=PARTITION)
    expanded = process_template(template, parameters, pseudo)
    expanded["Transform"] = "AWS::Serverless-2016-10-31"
    # What `sam deploy` uploads the build to.
    expanded["Resources"]["ConnectorFunction"]["Properties"]["CodeUri"] = "s3://artifacts/connector.zip"
    sam_parameters = {k: (",".join(v) if isinstance(v, list) else v) for k, v in parameters.items()}
    sam_parameters.update({"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::StackName": STACK, "AWS::Partition": PARTITION})
    translated = transform(expanded, sam_parameters, StaticPolicies())
    return Resolver(translated, parameters).resolved(), parameters


class Resolver:
    """CloudFormation's intrinsics over made-up physical names: enough to read policies."""

    def __init__(self, template, parameters):
        self.template = template
        self.parameters = parameters
        self.pseudo = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::StackName": STACK,
                       "AWS::Partition": PARTITION, "AWS::URLSuffix": "amazonaws.com"}
        self.conditions = {}

    def resolved(self):
        for name in self.template.get("Conditions", {}):
            self.condition(name)
        out = {}
        for logical, resource in self.template["Resources"].items():
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            out[logical] = {"Type": resource["Type"], "Properties": self.value(resource.get("Properties", {}))}
        return out

    def condition(self, name):
        if name not in self.conditions:
            self.conditions[name] = bool(self.value(self.template["Conditions"][name]))
        return self.conditions[name]

    def physical(self, logical):
        resource = self.template["Resources"][logical]
        kind, props = resource["Type"], resource.get("Properties", {})
        named = {"AWS::Lambda::Function": "FunctionName", "AWS::Logs::LogGroup": "LogGroupName"}
        if kind in named and named[kind] in props:
            return self.value(props[named[kind]])
        return f"{STACK}-{logical}-1A2B3C4D".lower() if kind == "AWS::S3::Bucket" else f"{STACK}-{logical}-1A2B3C4D"

    def ref(self, name):
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        kind = self.template["Resources"][name]["Type"]
        physical = self.physical(name)
        return {
            "AWS::SQS::Queue": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{physical}",
            "AWS::SNS::Topic": f"arn:aws:sns:{REGION}:{ACCOUNT}:{physical}",
            "AWS::IAM::OIDCProvider": f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc-configuration.audit-log.githubusercontent.com",
        }.get(kind, physical)

    def get_att(self, logical, attribute):
        kind = self.template["Resources"][logical]["Type"]
        physical = self.physical(logical)
        if attribute == "QueueName":
            return physical
        arns = {
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{physical}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{physical}",
            "AWS::S3::Bucket": f"arn:aws:s3:::{physical}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{physical}",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{physical}:*",
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{physical}",
            "AWS::Scheduler::Schedule": f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/{physical}",
        }
        if attribute == "Arn" and kind in arns:
            return arns[kind]
        return f"{physical}.{attribute}"

    def sub(self, text, variables):
        def one(match):
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".")[0] in self.template["Resources"]:
                return str(self.get_att(*name.split(".", 1)))
            value = self.ref(name)
            return ",".join(value) if isinstance(value, list) else str(value)

        return re.sub(r"\$\{([^!}][^}]*)\}", one, text)

    def value(self, node):
        if isinstance(node, list):
            items = [self.value(item) for item in node]
            return [item for item in items if item is not NO_VALUE]
        if isinstance(node, str) and re.search(r"\$\{\w+\.\w+\}", node):
            # The expansion tools hand back a Fn::Sub of a resource attribute whose parameters
            # they resolved as its bare string: CloudFormation substitutes it.
            return self.sub(node, {})
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return NO_VALUE if arg == "AWS::NoValue" else self.ref(arg)
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(logical, attribute)
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.value(arg[1]))
                return self.sub(text, variables)
            if key == "Fn::If":
                name, yes, no = arg
                return self.value(yes if self.condition(name) else no)
            if key == "Fn::Join":
                return arg[0].join(str(v) for v in self.value(arg[1]))
            if key == "Fn::Select":
                return self.value(arg[1])[int(self.value(arg[0]))]
            if key == "Fn::Split":
                return self.value(arg[1]).split(arg[0])
            if key == "Fn::Equals":
                left, right = self.value(arg[0]), self.value(arg[1])
                return str(left) == str(right) if not isinstance(left, list) else left == right
            if key == "Fn::Contains":
                return self.value(arg[1]) in self.value(arg[0])
            if key == "Fn::Not":
                return not self.value(arg[0])
            if key == "Fn::And":
                return all(self.value(a) for a in arg)
            if key == "Fn::Or":
                return any(self.value(a) for a in arg)
            if key == "Condition":
                return self.condition(arg)
        out = {}
        for key, value in node.items():
            value = self.value(value)
            if value is not NO_VALUE:
                out[key] = value
        return out


NO_VALUE = object()


def listed(value):
    return value if isinstance(value, list) else [value]


def glob(pattern, value, case_sensitive=True):
    if not case_sensitive:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern)


def condition_holds(condition, context):
    """IAM's condition operators this stack uses; a key absent from the request fails it."""
    for operator, tests in (condition or {}).items():
        for key, expected in tests.items():
            if key not in context:
                return False
            actual, expected = context[key], [str(e) for e in listed(expected)]
            if operator in ("StringEquals", "ArnEquals"):
                ok = actual in expected
            elif operator in ("StringLike", "ArnLike"):
                ok = any(glob(e, actual) for e in expected)
            elif operator == "Bool":
                ok = str(actual).lower() in [e.lower() for e in expected]
            else:
                raise SystemExit(f"policy check: condition operator {operator} is not modelled; add it")
            if not ok:
                return False
    return True


def principal_matches(principal, who):
    if principal is None or principal == "*":
        return True
    return any(who == p or p == "*" for values in principal.values() for p in listed(values))


def statement_matches(statement, action, resource, context, who=None):
    if "NotAction" in statement or "NotResource" in statement:
        raise SystemExit("policy check: NotAction/NotResource are not modelled; add them")
    if who is not None and not principal_matches(statement.get("Principal"), who):
        return False
    return (
        any(glob(a, action, case_sensitive=False) for a in listed(statement["Action"]))
        and any(glob(r, resource) for r in listed(statement["Resource"]))
        and condition_holds(statement.get("Condition"), context)
    )


def decide(statements, action, resource, context, who=None):
    """'allowed', 'denied' (an explicit Deny matched) or 'implicitly denied'."""
    matching = [s for s in statements if statement_matches(s, action, resource, context, who)]
    if any(s["Effect"] == "Deny" for s in matching):
        return "denied"
    return "allowed" if any(s["Effect"] == "Allow" for s in matching) else "implicitly denied"


def role_statements(role):
    statements = []
    for policy in role["Properties"].get("Policies", []):
        statements += listed(policy["PolicyDocument"]["Statement"])
    for arn in role["Properties"].get("ManagedPolicyArns", []):
        if arn not in MANAGED_POLICIES:
            raise SystemExit(f"policy check: managed policy {arn} is not modelled; add its statements")
        statements += MANAGED_POLICIES[arn]
    return statements


class Stack:
    def __init__(self, resources, parameters):
        self.resources = resources
        self.parameters = parameters
        self.function = next(r for r in resources.values() if r["Type"] == "AWS::Lambda::Function")
        self.function_role = self.role_named(self.function["Properties"]["Role"])
        self.names = self.placeholders()

    def role_named(self, arn):
        for logical, resource in self.resources.items():
            if resource["Type"] == "AWS::IAM::Role" and arn.endswith(f"/{STACK}-{logical}-1A2B3C4D"):
                return logical
        raise SystemExit(f"policy check: no role of the stack has ARN {arn}")

    def placeholders(self):
        names = {"Partition": PARTITION, "Region": REGION, "Account": ACCOUNT, **self.parameters}
        props = self.function["Properties"]
        env = props["Environment"]["Variables"]
        names["CursorTable"] = env["CURSOR_TABLE"]
        names["ConnectorFunction"] = props["FunctionName"]
        names["ConnectorLogGroup"] = props["LoggingConfig"]["LogGroup"]
        names["StreamBucket"] = env.get("STREAM_BUCKET", "")
        destination = self.function_event_invoke_config()["DestinationConfig"]["OnFailure"]["Destination"]
        names["FailedRunsQueue"] = destination.rsplit(":", 1)[1]
        queues = [r for r in self.resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
        names["StreamQueue"] = queues[0]["Properties"]["EventSourceArn"].rsplit(":", 1)[1] if queues else ""
        return names

    def function_event_invoke_config(self):
        return next(r for r in self.resources.values() if r["Type"] == "AWS::Lambda::EventInvokeConfig")["Properties"]

    def arns(self, pattern):
        """A table row's resource pattern as concrete ARNs a request would name."""
        out = []
        for one in pattern.split("|"):
            text = re.sub(r"\$\{(\w+)\}", lambda m: str(self.names[m.group(1)]), one)
            out.append(text.replace("*", "sample-AbCdEf"))
        return out

    def role_of(self, caller):
        if caller in ("code", "lambda"):
            return self.function_role
        return {"github_stream": "StreamRole", "scheduler": "ScheduleRole"}[caller]

    def resource_policy(self, arn):
        """The queue or bucket policy governing `arn`, if the stack sets one."""
        statements = []
        for resource in self.resources.values():
            doc = resource["Properties"].get("PolicyDocument", {})
            if resource["Type"] in ("AWS::SQS::QueuePolicy", "AWS::S3::BucketPolicy"):
                statements += [s for s in listed(doc.get("Statement", [])) if any(glob(r, arn) for r in listed(s["Resource"]))]
        return statements


def applies(call, stack):
    push = stack.parameters.get("PushMode") == "on"
    targets = any(t for t in stack.parameters["Targets"])
    return {"always": True, "push": push, "pull": targets}[call["mode"]]


def requests(call, stack):
    """(role, action, resource, context) of each request AWS authorizes for `call`."""
    role = stack.role_of(call["caller"])
    context = {"aws:SecureTransport": "true"}
    for resource in stack.arns(call["resource"]):
        for action in call["actions"]:
            yield role, action, resource, context
    via = {"kms:ViaService": f"{call['service']}.{REGION}.amazonaws.com", **context}
    for action in call["kms_actions"] if stack.parameters.get("KmsKeyArn") else []:
        yield role, action, KMS_KEY, via


def aws_managed_key_requests(call, stack):
    """Without KmsKeyArn the secret is still under a key, aws/secretsmanager by default, which
    Secrets Manager uses with the caller's permissions too: that key's policy allows it, and the
    role must not deny it (nor any other AWS-managed key a service may use for the stack)."""
    role = stack.role_of(call["caller"])
    via = {"kms:ViaService": f"{call['service']}.{REGION}.amazonaws.com", "aws:SecureTransport": "true"}
    for action in call["kms_actions"] if not stack.parameters.get("KmsKeyArn") else []:
        yield role, action, f"arn:aws:kms:{REGION}:{ACCOUNT}:key/aws-managed-{call['service']}", via


def evaluate(stack, calls, roles):
    problems = []
    for call in calls:
        if not applies(call, stack):
            continue
        for role, action, resource, context in requests(call, stack):
            verdict = decide(roles.get(role, []), action, resource, context)
            if verdict != "allowed":
                problems.append(f"{call['operation']}: {action} on {resource} is {verdict} for {role}")
            if not action.startswith("kms:") and decide(stack.resource_policy(resource), action, resource, context, who=role) == "denied":
                problems.append(f"{call['operation']}: {action} on {resource} is denied by its resource policy")
        for role, action, resource, context in aws_managed_key_requests(call, stack):
            if decide(roles.get(role, []), action, resource, context) == "denied":
                problems.append(f"{call['operation']}: {action} on the AWS-managed key is denied for {role}")
    return problems


def needed(stack, calls):
    """Role → the actions some call needs (least privilege: nothing else may be allowed)."""
    out = {}
    for call in calls:
        if applies(call, stack):
            for role, action, _, _ in requests(call, stack):
                out.setdefault(role, set()).add(action.lower())
    return out


# The delivered record's pruned buckets (30 days) and push mode's file records (400 days) are
# left to expire: src/cursor/dynamodb.rs writes this attribute, and DynamoDB deletes an item by
# it only in a table whose time to live names it (Amazon DynamoDB Developer Guide, "Using time
# to live (TTL) in DynamoDB"); moto never deletes anything, so only this rule sees it missing.
EXPIRY_ATTRIBUTE = "expires_at"


def expiry_problems(stack):
    problems = []
    for logical, resource in stack.resources.items():
        if resource["Type"] != "AWS::DynamoDB::Table":
            continue
        ttl = resource["Properties"].get("TimeToLiveSpecification") or {}
        if ttl.get("AttributeName") != EXPIRY_ATTRIBUTE or str(ttl.get("Enabled")).lower() != "true":
            problems.append(f"{logical} has no time to live on {EXPIRY_ATTRIBUTE}: pruned buckets would stay forever")
    return problems


def reservation_problems(stack):
    """AWS: "make sure that your function's reserved concurrency is greater than or equal to the
    total maximum concurrency for all Amazon SQS event sources on the function. Otherwise, Lambda
    may throttle your messages" (Lambda Developer Guide, "Configuring scaling behavior for SQS
    event source mappings"); each throttled receive counts toward the dead-letter queue."""
    reserved = stack.function["Properties"].get("ReservedConcurrentExecutions")
    sources = [r for r in stack.resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    at_once = sum(int(r["Properties"].get("ScalingConfig", {}).get("MaximumConcurrency", 1000)) for r in sources)
    if reserved is not None and sources and int(reserved) < at_once:
        return [f"reserved concurrency {reserved} is below the {at_once} runs the stream's queue may start at once"]
    return []


def knowledge_rules(stack, calls, roles, variant):
    problems = expiry_problems(stack)
    for role, statements in roles.items():
        for statement in statements:
            if statement["Effect"] == "Deny":
                problems.append(f"{role} has a Deny statement ({statement.get('Sid', 'no Sid')}): it beats every Allow")
    need = needed(stack, calls)
    for role, statements in roles.items():
        for statement in statements:
            for action in listed(statement["Action"]) if statement["Effect"] == "Allow" else []:
                if action.lower() not in need.get(role, set()) and action not in MANAGED_EXTRAS:
                    problems.append(f"{role} allows {action}, which no AWS call of src/aws_calls.rs needs")
    for logical, resource in stack.resources.items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        for action in resource["Properties"].get("AlarmActions", []):
            for topic_logical, topic in stack.resources.items():
                if topic["Type"] == "AWS::SNS::Topic" and action.endswith(f":{STACK}-{topic_logical}-1A2B3C4D"):
                    if "alias/aws/sns" in str(topic["Properties"].get("KmsMasterKeyId", "")):
                        problems.append(f"{logical} notifies {topic_logical}, under alias/aws/sns: CloudWatch cannot publish there")
    reserved = stack.function["Properties"].get("ReservedConcurrentExecutions")
    wanted = int(stack.parameters.get("MaxConcurrentRuns", 0))
    if (reserved is not None) != (wanted != 0) or (reserved is not None and int(reserved) != wanted):
        problems.append(f"reserved concurrency is {reserved!r} with MaxConcurrentRuns={wanted} (0 must mean none)")
    problems += reservation_problems(stack)
    if stack.parameters.get("PushMode") == "on":
        queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{stack.names['StreamQueue']}"
        context = {"aws:SecureTransport": "true", "aws:SourceAccount": ACCOUNT, "aws:SourceArn": f"arn:aws:s3:::{stack.names['StreamBucket']}"}
        if decide(stack.resource_policy(queue), "sqs:SendMessage", queue, context, who="s3.amazonaws.com") != "allowed":
            problems.append("the stream's queue policy does not let S3 announce files")
    return [f"{variant}: {p}" for p in problems]


def check(stack, calls, roles, variant):
    return evaluate(stack, calls, roles) + knowledge_rules(stack, calls, roles, variant)


def mutations_are_caught(stack, calls, roles, variant):
    """Each Allowed action removed, and a Deny added, must make the check fail: what it missed,
    and how many mutations it tried."""
    missed, tried = [], 0
    for role, statements in roles.items():
        for index, statement in enumerate(statements):
            if statement["Effect"] != "Allow":
                continue
            for action in listed(statement["Action"]):
                if action in MANAGED_EXTRAS:
                    continue
                mutated = copy.deepcopy(roles)
                kept = [a for a in listed(statement["Action"]) if a != action]
                if kept:
                    mutated[role][index]["Action"] = kept
                else:
                    del mutated[role][index]
                tried += 1
                if not check(stack, calls, mutated, variant):
                    missed.append(f"{role} without {action}")
        mutated = copy.deepcopy(roles)
        mutated[role].append({"Effect": "Deny", "Action": "kms:Decrypt", "Resource": "*"})
        tried += 1
        if not check(stack, calls, mutated, variant):
            missed.append(f"{role} with a Deny added")
    for logical, resource in stack.resources.items():
        if resource["Type"] == "AWS::DynamoDB::Table":
            without_ttl = copy.deepcopy(stack)
            without_ttl.resources[logical]["Properties"].pop("TimeToLiveSpecification", None)
            tried += 1
            if not check(without_ttl, calls, roles, variant):
                missed.append(f"{logical} without its time to live")
    if stack.function["Properties"].get("ReservedConcurrentExecutions") is not None and stack.names["StreamQueue"]:
        one_run = copy.deepcopy(stack)
        one_run.function["Properties"]["ReservedConcurrentExecutions"] = 1
        one_run.parameters["MaxConcurrentRuns"] = 1
        tried += 1
        if not check(one_run, calls, roles, variant):
            missed.append("a reservation of one run beside the stream's queue")
    return [f"{variant}: the check did not notice {m}" for m in missed], tried


def main():
    template_text = open(sys.argv[1]).read()
    template = yaml_parse(template_text)
    calls = json.load(open(sys.argv[2]))
    problems, mutations, report = [], 0, []
    for variant, (overrides, rule) in REFUSED.items():
        broken = broken_rules(template, parameters_of(template, overrides))
        if broken != [rule]:
            problems.append(f"{variant}: the template's Rules refuse it with {broken or 'none'}, not [{rule}]")
    for variant, overrides in VARIANTS.items():
        problems += [f"{variant}: refused by the template's rule {name}" for name in broken_rules(template, parameters_of(template, overrides))]
        resources, parameters = expand(template_text, overrides)
        stack = Stack(resources, parameters)
        roles = {logical: role_statements(r) for logical, r in resources.items() if r["Type"] == "AWS::IAM::Role"}
        problems += check(stack, calls, roles, variant)
        missed, tried = mutations_are_caught(stack, calls, roles, variant)
        problems += missed
        mutations += tried
        for role, statements in sorted(roles.items()):
            actions = sorted({a for s in statements for a in listed(s["Action"])})
            report.append(f"  {variant} / {role}: {', '.join(actions)}")
    if problems:
        sys.exit("policy check:\n  " + "\n  ".join(sorted(set(problems))))
    print(f"policy check OK: {len(calls)} AWS calls against {len(VARIANTS)} variants of the stack, each accepted by "
          f"the template's Rules, which refuse {len(REFUSED)} others; {mutations} mutations (an action removed, a Deny "
          f"added, the table's time to live removed, a reservation below the stream's runs) each caught")
    print("\n".join(report))


if __name__ == "__main__":
    main()
