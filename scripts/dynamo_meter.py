#!/usr/bin/env python3
"""A DynamoDB meter: a loopback proxy in front of moto's server that bills each request the way
AWS bills on-demand tables, then runs a command with the SDK pointed at it.

    scripts/dynamo_meter.py COMMAND [ARGS...]     (inside scripts/with-moto.sh)

The command gets AWS_ENDPOINT_URL_DYNAMODB (the proxy) and DYNAMO_METER_URL; `GET $URL` answers
the units counted so far as JSON ({"write_units", "read_units", "requests", "by_operation"}),
`POST $URL/reset` zeroes them. moto returns no consumed capacity worth the name, so the proxy
reads the items itself (a GetItem to moto before and after each write) and applies AWS's rules
(Amazon DynamoDB Developer Guide, "DynamoDB read and write operations" and "Amazon DynamoDB
Transactions: capacity management"):
- item size: attribute names' UTF-8 bytes plus values (strings in UTF-8 bytes, binary in bytes,
  numbers about one byte per two significant digits plus one, Booleans and nulls one byte,
  lists and maps three bytes plus one a member);
- a write (PutItem, UpdateItem, DeleteItem) costs one unit per 1 KB of the larger of the item
  before and after, at least one, also when its condition fails;
- a read costs one unit per 4 KB (each item of a batch rounded on its own, an absent item
  costing as a smallest one), half that when eventually consistent;
- every action of a transaction costs twice its single-item cost; a ConditionCheck is billed
  as a write of the item it checks.
"""
import base64
import http.server
import json
import math
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

UPSTREAM = os.environ.get("AWS_ENDPOINT_URL", "")
HEADERS_TO_UPSTREAM = ("content-type", "authorization", "x-amz-date", "x-amz-security-token")


def value_size(value):
    (kind, inner), = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        digits = inner.lstrip("-").replace(".", "").strip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind == "B":
        return len(base64.b64decode(inner))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: member}) for member in inner)
    if kind == "L":
        return 3 + sum(1 + value_size(member) for member in inner)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + value_size(member) for name, member in inner.items())
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item):
    return sum(len(name.encode()) + value_size(value) for name, value in (item or {}).items())


def write_units(size):
    return max(1, math.ceil(size / 1024))


def read_units(size, consistent):
    units = max(1, math.ceil(size / 4096))
    return units if consistent else units / 2


class Meter:
    def __init__(self):
        self.lock = threading.Lock()
        self.key_names = {}
        self.reset()

    def reset(self):
        with self.lock:
            self.write_units, self.read_units, self.requests, self.by_operation = 0.0, 0.0, 0, {}

    def add(self, operation, writes=0.0, reads=0.0):
        with self.lock:
            self.write_units += writes
            self.read_units += reads
            self.requests += 1
            entry = self.by_operation.setdefault(operation, {"requests": 0, "write_units": 0.0, "read_units": 0.0})
            entry["requests"] += 1
            entry["write_units"] += writes
            entry["read_units"] += reads

    def snapshot(self):
        with self.lock:
            return {"write_units": self.write_units, "read_units": self.read_units, "requests": self.requests,
                    "by_operation": json.loads(json.dumps(self.by_operation))}


METER = Meter()


def call(target, body, headers):
    """One request to moto; returns (status, headers, body bytes)."""
    request = urllib.request.Request(UPSTREAM + "/", data=json.dumps(body).encode(), method="POST")
    for name, value in headers.items():
        if name.lower() in HEADERS_TO_UPSTREAM:
            request.add_header(name, value)
    request.add_header("X-Amz-Target", target)
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def key_of(table, item, headers):
    if table not in METER.key_names:
        _, _, answer = call("DynamoDB_20120810.DescribeTable", {"TableName": table}, headers)
        schema = json.loads(answer)["Table"]["KeySchema"]
        METER.key_names[table] = [element["AttributeName"] for element in schema]
    return {name: item[name] for name in METER.key_names[table]}


def stored_size(table, key, headers):
    _, _, answer = call("DynamoDB_20120810.GetItem", {"TableName": table, "Key": key, "ConsistentRead": True}, headers)
    return item_size(json.loads(answer or b"{}").get("Item"))


def single_write(action, headers):
    """The keys and table of one write, as (table, key)."""
    table = action["TableName"]
    return table, action.get("Key") or key_of(table, action["Item"], headers)


def forward_write(operation, target, body, headers):
    if operation == "TransactWriteItems":
        touched = []
        for entry in body["TransactItems"]:
            (kind, action), = entry.items()
            touched.append((kind, *single_write(action, headers)))
        before = [stored_size(table, key, headers) for _, table, key in touched]
        status, answer_headers, answer = call(target, body, headers)
        units = 0
        for (kind, table, key), size in zip(touched, before):
            after = size if kind == "ConditionCheck" else stored_size(table, key, headers)
            units += 2 * write_units(max(size, after))
        return status, answer_headers, answer, units
    table, key = single_write(body, headers)
    before = stored_size(table, key, headers)
    status, answer_headers, answer = call(target, body, headers)
    return status, answer_headers, answer, write_units(max(before, stored_size(table, key, headers)))


def read_cost(operation, body, answer):
    if operation not in ("GetItem", "BatchGetItem"):
        return 0.0
    found = json.loads(answer or b"{}")
    if operation == "GetItem":
        return read_units(item_size(found.get("Item")), body.get("ConsistentRead", False))
    units = 0.0
    for table, asked in body["RequestItems"].items():
        consistent = asked.get("ConsistentRead", False)
        unprocessed = len(found.get("UnprocessedKeys", {}).get(table, {}).get("Keys", []))
        items = found.get("Responses", {}).get(table, [])
        units += sum(read_units(item_size(item), consistent) for item in items)
        units += read_units(0, consistent) * (len(asked["Keys"]) - unprocessed - len(items))
    return units


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Headers and body leave in separate writes: without this, each answer waits for a
        # delayed acknowledgement (tens of milliseconds).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self):
        self.answer(200, {"Content-Type": "application/json"}, json.dumps(METER.snapshot()).encode())

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path.startswith("/_meter/reset"):
            METER.reset()
            return self.answer(200, {"Content-Type": "application/json"}, b"{}")
        target = self.headers.get("X-Amz-Target", "")
        operation = target.rsplit(".", 1)[-1]
        headers = dict(self.headers)
        if operation in ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"):
            status, answer_headers, answer, units = forward_write(operation, target, body, headers)
            METER.add(operation, writes=units)
        else:
            status, answer_headers, answer = call(target, body, headers)
            METER.add(operation, reads=read_cost(operation, body, answer) if status == 200 else 0.0)
        self.answer(status, answer_headers, answer)

    def answer(self, status, headers, body):
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    if not UPSTREAM.startswith("http://127.0.0.1"):
        sys.exit("dynamo_meter.py runs inside scripts/with-moto.sh (AWS_ENDPOINT_URL must be moto's)")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    env = dict(os.environ, AWS_ENDPOINT_URL_DYNAMODB=url, DYNAMO_METER_URL=url + "/_meter")
    sys.exit(subprocess.call(sys.argv[1:], env=env))


if __name__ == "__main__":
    main()
