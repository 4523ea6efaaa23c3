#!/usr/bin/env python3
"""Push mode's throughput and peak memory: one streamed file of 200,000 events (as the simulator
writes GitHub's stream) in moto's S3, forwarded by the release `forward-s3` into the simulated
intake. Run under scripts/with-moto.sh by `make bench`; writes target/bench/push.txt."""
import json
import os
import subprocess
import sys
import tempfile
import urllib.request

import boto3

from bench import RELEASE, ROOT, timed

EVENTS = 200_000

with tempfile.TemporaryDirectory() as work:
    stream_file = os.path.join(work, "stream.json.gz")
    sim = subprocess.Popen(
        [os.path.join(RELEASE, "github-audit-sekoia-sim"), "--events", str(EVENTS), "--span", "6h",
         "--git-share", "0.1", "--write-stream-file", stream_file],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        env = dict(word.split("=", 1) for word in sim.stdout.readline().split())
        s3 = boto3.client("s3")
        bucket = f"bench-audit-stream-{os.getpid()}"
        s3.create_bucket(Bucket=bucket)
        s3.upload_file(stream_file, bucket, "2026/11/22/10/00/00000000-0000-4000-8000-000000000001.json.gz")
        gzipped = os.path.getsize(stream_file)
        run_env = dict(os.environ, SEKOIA_INTAKE_URL=env["SEKOIA_INTAKE_URL"], SEKOIA_INTAKE_KEY="simulated-intake-key",
                       STATE_DIR=os.path.join(work, "state"), LOG_LEVEL="warn")
        stdout, wall, cpu, rss = timed([os.path.join(RELEASE, "github-audit-sekoia"), "forward-s3", "--bucket", bucket],
                                       run_env)
        summary = json.loads(stdout.strip().splitlines()[-1])
        stats = json.load(urllib.request.urlopen(env["SEKOIA_INTAKE_URL"] + "/_sim/stats"))
    finally:
        sim.terminate()

assert summary["events_forwarded"] == EVENTS, summary
assert stats["unique_events"] == EVENTS and stats["duplicate_events"] == 0, stats
lines = [
    f"push mode, one streamed file of {EVENTS:,} events ({gzipped / 1e6:.1f} MB gzipped), moto S3 -> simulated intake:",
    f"  {EVENTS / wall:,.0f} events/s ({wall:.1f} s wall, {cpu:.1f} s CPU), peak RSS {rss:.1f} MB",
]
os.makedirs(os.path.join(ROOT, "target", "bench"), exist_ok=True)
with open(os.path.join(ROOT, "target", "bench", "push.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
print("\n".join(lines))
sys.exit(0)
