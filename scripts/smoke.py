"""After `sam deploy`: is the deployed stack wired the way AWS will run it?

1. The stack is complete and names its function.
2. The function, invoked with {"check": true}, reads its secret, its table and GitHub, and each
   check it reports is printed (a denied permission shows here, with the permission it needs).
3. The alarm path: one alarm is set to ALARM by hand and back to OK, and CloudWatch's history
   says whether it could publish to the topic (a topic under alias/aws/sns, or a key whose policy
   leaves CloudWatch out, fails here); the topic's subscriptions say who should get an e-mail.

Standard AWS configuration (profile, region, AWS_ENDPOINT_URL); exit 0 when everything passed.
Usage: smoke.py STACK_NAME
"""

import json
import sys
import time

import boto3
from botocore.exceptions import ClientError

HISTORY_WAIT_SECONDS = 60


def say(mark, text):
    print(f"{mark} {text}", flush=True)


def stack_outputs(cloudformation, stack):
    found = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    if not found["StackStatus"].endswith("_COMPLETE") or "ROLLBACK" in found["StackStatus"]:
        raise SystemExit(f"FAIL stack {stack} is {found['StackStatus']}: deploy it again and read its events")
    return {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}


def invoke_check(lambda_client, function):
    answer = lambda_client.invoke(FunctionName=function, Payload=json.dumps({"check": True}).encode())
    body = answer["Payload"].read().decode()
    if answer.get("FunctionError"):
        say("FAIL", f"{function} failed the check invocation: {body}")
        return False
    report = json.loads(body)
    lines = [("", report["configuration"])]
    lines += [(f"{t['target']}: ", c) for t in report.get("targets", []) for c in t["checks"]]
    for scope, verdict in lines:
        mark = {"pass": "ok  ", "fail": "FAIL", "skip": "skip"}[verdict["status"]]
        remedy = f" -> {verdict['remedy']}" if verdict.get("remedy") else ""
        say(mark, f"{scope}{verdict['check']}: {verdict['detail']}{remedy}")
    return bool(report["ok"])


def topic_problems(sns, topic):
    """What would keep CloudWatch from publishing to `topic`, or nobody from reading it."""
    problems = []
    attributes = sns.get_topic_attributes(TopicArn=topic)["Attributes"]
    key = attributes.get("KmsMasterKeyId", "")
    if key.endswith("alias/aws/sns"):
        problems.append(f"{topic} is encrypted with alias/aws/sns, which CloudWatch cannot use: no alarm reaches it")
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    for s in subscriptions:
        pending = s["SubscriptionArn"] == "PendingConfirmation"
        say("warn" if pending else "ok  ", f"{topic} -> {s['Protocol']} {s['Endpoint']}"
            + (": not confirmed yet; open the confirmation e-mail AWS sent it" if pending else ""))
    if not subscriptions:
        say("warn", f"{topic} has no subscription: alarms reach nobody until one is added")
    return problems


def alarm_round_trip(cloudwatch, alarm):
    """ALARM then OK by hand; CloudWatch's history says whether the notification went out."""
    since = time.time() - 1
    cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="smoke test: make smoke")
    verdict = None
    deadline = time.time() + HISTORY_WAIT_SECONDS
    while verdict is None and time.time() < deadline:
        try:
            items = cloudwatch.describe_alarm_history(AlarmName=alarm, HistoryItemType="Action")["AlarmHistoryItems"]
        except ClientError as err:
            say("warn", f"cannot read {alarm}'s history ({err.response['Error'].get('Code')})")
            break
        for item in items:
            if item["Timestamp"].timestamp() < since:
                continue
            summary = item["HistorySummary"]
            verdict = "failed" if summary.startswith("Failed") else "sent"
            if verdict == "failed":
                say("FAIL", f"{alarm}: {summary}: {item.get('HistoryData', '')}")
                break
        if verdict is None:
            time.sleep(2)
    else:
        if verdict is None:
            say("warn", f"{alarm}'s history shows no notification within {HISTORY_WAIT_SECONDS} s")
    cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="smoke test done: make smoke")
    return verdict


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: smoke.py STACK_NAME")
    stack = sys.argv[1]
    session = boto3.session.Session()
    cloudformation, cloudwatch = session.client("cloudformation"), session.client("cloudwatch")
    outputs = stack_outputs(cloudformation, stack)
    function = outputs["FunctionName"]
    say("ok  ", f"stack {stack}: function {function}")
    ok = invoke_check(session.client("lambda"), function)

    alarm = f"{stack}-errors"  # the template names it
    found = cloudwatch.describe_alarms(AlarmNames=[alarm])["MetricAlarms"]
    if not found:
        say("FAIL", f"alarm {alarm} not found: is {stack} a github-audit-sekoia stack?")
        return 1
    actions = found[0]["AlarmActions"]
    if not actions:
        say("warn", "the alarms notify nobody: deploy with AlarmEmail or AlarmTopicArn to be told")
        return 0 if ok else 1
    sns = session.client("sns")
    for topic in actions:
        for problem in topic_problems(sns, topic):
            say("FAIL", problem)
            ok = False
    verdict = alarm_round_trip(cloudwatch, alarm)
    if verdict == "sent":
        say("ok  ", f"{alarm} set to ALARM and back to OK: CloudWatch published to {', '.join(actions)}. "
            f"Expect one e-mail per confirmed subscription, subject 'ALARM: \"{alarm}\" in {session.region_name}'.")
    elif verdict is None:
        say("warn", f"{alarm} set to ALARM and back to OK, the notification not confirmed: "
            f"check the mailbox for 'ALARM: \"{alarm}\"' before trusting the alarms")
    else:
        ok = False
    say("ok  " if ok else "FAIL", "smoke check " + ("passed" if ok else "failed"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
