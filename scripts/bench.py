#!/usr/bin/env python3
"""Throughput, CPU, memory, bytes and size of the release binaries, against the loopback simulator.

Each figure that has a reference is a ratio measured in the same run: the drain's wall time
against the serial floor (a bare client that only follows GitHub's rel="next" links, nothing
else), and the intake's wire bytes against the raw event bytes. Prints the table and writes it
to target/bench/throughput.txt. Run by `make bench` after a release build.
"""
import contextlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
TOKEN, KEY = "ghp_simulated_token", "simulated-intake-key"


def simulator(events, latency_ms=0, intake_latency_ms=0):
    """Starts the simulator; returns (process, its NAME=value environment)."""
    args = [os.path.join(RELEASE, "github-audit-sekoia-sim"), "--events", str(events), "--span", "72h",
            "--git-share", "0", "--rate-limit", "100000000", "--latency-ms", str(latency_ms),
            "--intake-latency-ms", str(intake_latency_ms)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    env = dict(word.split("=", 1) for word in line.split())
    return proc, env


def timed(cmd, env):
    """Runs `cmd` to the end under GNU time; returns (its standard output, wall s, CPU s (user +
    system), peak RSS MB)."""
    with tempfile.TemporaryDirectory() as work:
        timing = os.path.join(work, "time")
        out = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", "-o", timing, *cmd],
                             env=env, capture_output=True, text=True, check=True)
        wall, user, system, rss_kb = open(timing).read().split()
    return out.stdout, float(wall), float(user) + float(system), int(rss_kb) / 1024


@contextlib.contextmanager
def loopback_server(handler):
    """`handler` answering on a free loopback port for the block; yields the port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


def drain(env, state, **store):
    """One CLI run to the end (`CURSOR_TABLE=...`: the DynamoDB store); returns (summary, wall s,
    cpu s, peak RSS MB)."""
    run_env = dict(os.environ, **env, **store, GITHUB_TOKEN=TOKEN, SEKOIA_INTAKE_KEY=KEY, STATE_DIR=state,
                   FIRST_RUN_LOOKBACK="7d", LOG_LEVEL="warn", MAX_RUN_SECONDS="3600")
    stdout, wall, cpu, rss = timed([os.path.join(RELEASE, "github-audit-sekoia"), "run"], run_env)
    return json.loads(stdout.strip().splitlines()[-1]), wall, cpu, rss


def first_page_url(env):
    since = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 7 * 86400))
    query = urllib.parse.urlencode({"phrase": f"created:>={since}", "include": "web", "order": "asc", "per_page": "100"})
    return f"{env['GITHUB_API_URL']}/orgs/{env['GITHUB_ORG']}/audit-log?{query}"


def serial_floor(env):
    """Wall time of a client that only follows rel="next" over the same pages, and nothing else."""
    url = first_page_url(env)
    started, pages = time.monotonic(), 0
    while url:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request) as answer:
            answer.read()
            link = answer.headers.get("Link", "")
        pages += 1
        url = next((part.split(";")[0].strip()[1:-1] for part in link.split(",") if 'rel="next"' in part), None)
    return time.monotonic() - started, pages


def cursor_table():
    """A cursor table in moto's DynamoDB (bench.sh runs this script inside with-moto.sh)."""
    import boto3  # moto's own dependency
    name = f"bench-{os.getpid()}"
    boto3.client("dynamodb").create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "target", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "target", "AttributeType": "S"}])
    return name


def cpu_per_million(**store):
    """One drain of 1,000,000 events; returns (wall s, cpu s, peak RSS MB, the intake's stats)."""
    sim, env = simulator(1_000_000)
    try:
        with tempfile.TemporaryDirectory() as state:
            summary, wall, cpu, rss = drain(env, state, **store)
        assert summary["events_forwarded"] == 1_000_000, summary
        return wall, cpu, rss, stats(env)
    finally:
        sim.kill()


def cpu_floor_per_million():
    """CPU of examples/cpu_floor.rs over the same 1,000,000 events: the two requests a page and
    the event handling the intake needs, none of the connector's bookkeeping."""
    sim, env = simulator(1_000_000)
    try:
        stdout, _, cpu, _ = timed([os.path.join(RELEASE, "examples", "cpu_floor"), first_page_url(env),
                                   env["SEKOIA_INTAKE_URL"] + "/batch"],
                                  dict(os.environ, GITHUB_TOKEN=TOKEN, SEKOIA_INTAKE_KEY=KEY))
        assert stdout.strip() == "1000000", stdout
        return cpu
    finally:
        sim.kill()


class InstantDynamoDB(http.server.BaseHTTPRequestHandler):
    """DynamoDB as the connector meets it on AWS, one connection kept for many requests, but
    answering at once and keeping nothing: every answer is `{}` (no item, no attributes), which
    one run from an empty table takes as it comes. Moto closes the connection after each answer,
    and its own slowness makes a drain wait; this leaves the connector's CPU alone."""
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def instant_dynamodb():
    """The NAME=value environment of a client of an InstantDynamoDB on a free loopback port."""
    with loopback_server(InstantDynamoDB) as port:
        yield {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_REGION": "us-east-1",
               "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "CURSOR_TABLE": "bench"}


def save_floor_per_million(dynamodb):
    """CPU of examples/save_floor.rs: 10,000 saves (a million events at 100 a page) of a bucket
    and the checkpoint through the connector's DynamoDB store, against `dynamodb`."""
    _, _, cpu, _ = timed([os.path.join(RELEASE, "examples", "save_floor"), "10000"],
                         dict(os.environ, **dynamodb, GITHUB_ORG="acme", GITHUB_TOKEN=TOKEN))
    return cpu


def stats(env):
    with urllib.request.urlopen(env["SEKOIA_INTAKE_URL"] + "/_sim/stats") as answer:
        return json.load(answer)


def against_the_floor(events, latency_ms, intake_latency_ms):
    sim, env = simulator(events, latency_ms, intake_latency_ms)
    try:
        floor, pages = serial_floor(env)
        with tempfile.TemporaryDirectory() as state:
            summary, wall, _, _ = drain(env, state)
        assert summary["events_forwarded"] == events, summary
        return wall, floor, pages
    finally:
        sim.kill()


def first_runtime_poll():
    """Time from exec of the Lambda binary to its first GET of the next invocation."""
    polled = threading.Event()

    class Runtime(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            polled.set()
            time.sleep(1)

        def log_message(self, *args):
            pass

    samples = []
    with loopback_server(Runtime) as port:
        env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{port}",
                   AWS_LAMBDA_FUNCTION_NAME="bench", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256",
                   AWS_LAMBDA_FUNCTION_VERSION="1", AWS_REGION="eu-west-1", AWS_ACCESS_KEY_ID="x",
                   AWS_SECRET_ACCESS_KEY="x", GITHUB_ORG="acme", SECRET_ID="bench", CURSOR_TABLE="bench")
        for _ in range(5):
            polled.clear()
            started = time.monotonic()
            proc = subprocess.Popen([os.path.join(RELEASE, "github-audit-sekoia-lambda")], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if polled.wait(10):
                samples.append((time.monotonic() - started) * 1000)
            proc.kill()
            proc.wait()
    return sorted(samples)[len(samples) // 2] if samples else float("nan")


def size_mb(path):
    return os.path.getsize(path) / 1e6 if os.path.exists(path) else float("nan")


def main():
    rows = []
    for events, page_ms, post_ms in [(20_000, 100, 50), (100_000, 20, 10)]:
        wall, floor, pages = against_the_floor(events, page_ms, post_ms)
        rows.append((f"wall / serial floor, {events:,} events, {page_ms} ms/page + {post_ms} ms/post",
                     f"{wall / floor:.2f}x", f"{wall:.1f} s against {floor:.1f} s for {pages} pages", "<= 1.05x"))

    floor = cpu_floor_per_million()
    rows.append(("CPU floor per 1,000,000 events (GET + POST a page, nothing else)", f"{floor:.1f} s",
                 "examples/cpu_floor.rs: what any connector pays on this machine", "-"))
    wall, cpu, rss, wire = cpu_per_million()
    rows.append(("CPU per 1,000,000 events, file store (user + system)", f"{cpu:.1f} s",
                 f"{cpu / floor:.1f}x the floor; drained in {wall:.1f} s, every save synced to disk", "-"))
    with instant_dynamodb() as dynamodb:
        saves = save_floor_per_million(dynamodb)
        _, instant_cpu, _, _ = cpu_per_million(**dynamodb)
    rows.append(("CPU of a save a page alone, per 1,000,000 events (DynamoDB store)", f"{saves:.1f} s",
                 f"examples/save_floor.rs: a bucket and the checkpoint, 2 requests, against a DynamoDB that answers "
                 f"at once; with the floor, {floor + saves:.1f} s is the least a drain saving every page takes here", "-"))
    rows.append(("CPU per 1,000,000 events, DynamoDB store (the Lambda's), DynamoDB answering at once",
                 f"{instant_cpu:.1f} s", f"{instant_cpu / floor:.1f}x the floor, {instant_cpu - floor - saves:.1f} s "
                 "above the floor and the saves; connections kept, as AWS keeps them", "<= 5 s"))
    if os.environ.get("AWS_ENDPOINT_URL"):
        dynamo_wall, dynamo_cpu, _, _ = cpu_per_million(CURSOR_TABLE=cursor_table())
        rows.append(("CPU per 1,000,000 events, DynamoDB store (the Lambda's), moto", f"{dynamo_cpu:.1f} s",
                     f"{dynamo_cpu / floor:.1f}x the floor; drained in {dynamo_wall:.1f} s (moto's own CPU not counted; "
                     "it closes the connection after every answer)", "<= 5 s"))
    rows.append(("peak RSS, 1,000,000 events", f"{rss:.1f} MB", "", "<= 30 MB"))
    rows.append(("intake bytes on the wire / raw event bytes", f"{wire['wire_bytes'] / wire['event_bytes']:.3f}",
                 f"{wire['wire_bytes'] / 1e6:.0f} MB for {wire['event_bytes'] / 1e6:.0f} MB", "<= 0.2"))
    rows.append(("Lambda binary, x86_64, stripped", f"{size_mb(os.path.join(RELEASE, 'github-audit-sekoia-lambda')):.1f} MB", "", "<= 12 MB"))
    arm64 = os.path.join(ROOT, "target", "lambda", "github-audit-sekoia-lambda", "bootstrap")
    rows.append(("Lambda binary, arm64, stripped", f"{size_mb(arm64):.1f} MB",
                 "" if os.path.exists(arm64) else "needs cargo-lambda (make tools)", "<= 9 MB"))
    rows.append(("exec -> first runtime poll (median of 5)", f"{first_runtime_poll():.0f} ms", "", "<= 20 ms"))

    width = max(len(r[0]) for r in rows)
    lines = [f"{'figure':<{width}}  {'value':>10}  {'goal':>9}  detail"]
    lines += [f"{name:<{width}}  {value:>10}  {goal:>9}  {detail}" for name, value, detail, goal in rows]
    report = "\n".join(lines) + "\n"
    print(report, end="")
    os.makedirs(os.path.join(ROOT, "target", "bench"), exist_ok=True)
    with open(os.path.join(ROOT, "target", "bench", "throughput.txt"), "w") as out:
        out.write(report)


if __name__ == "__main__":
    if not shutil.which("/usr/bin/time"):
        sys.exit("needs GNU time: apt-get install time")
    main()
