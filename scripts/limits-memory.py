#!/usr/bin/env python3
"""Broker memory of limits (docs/limits.md, "Broker cost"): 1,000 live keys of a concurrency
limit (one exclusive slot queue each, as a worker holds them), 1,000 live keys of a rate
limit (one rate queue each, one recorded start in it), and one rate limit with a full window
of 1,000 starts. Reads `rabbitmqctl list_queues name memory`; deletes everything it made.
Needs pika (scripts/python.sh) and rabbitmqctl. Usage: scripts/limits-memory.py [KEYS]"""

import subprocess
import sys
import uuid

import pika

KEYS = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
TAG = "palermo.limit.memtest-" + uuid.uuid4().hex[:8]


def memory(prefix):
    out = subprocess.run(
        ["rabbitmqctl", "list_queues", "--silent", "--no-table-headers", "name", "memory"],
        capture_output=True, text=True, check=True,
    ).stdout
    rows = [line.split("\t") for line in out.splitlines() if line.startswith(prefix)]
    return len(rows), sum(int(m) for _, m in rows)


def rate_args(count, window_ms, per_key):
    args = {"x-message-ttl": window_ms + 50, "x-max-length": count, "x-overflow": "reject-publish"}
    if per_key:
        args["x-expires"] = window_ms + 50 + 10_000
    return args


conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
ch = conn.channel()
ch.confirm_delivery()
made = []
try:
    slots = f"{TAG}.slots"
    for i in range(KEYS):
        name = f"{slots}.k{i:016x}.c0"
        ch.queue_declare(name, exclusive=True)
        made.append(name)
    n, total = memory(slots)
    print(f"concurrency, {n} live keys (a held slot queue each): {total / 1024:.0f} KiB, {total / max(n, 1):.0f} B per key")

    rates = f"{TAG}.rates"
    for i in range(KEYS):
        name = f"{rates}.k{i:016x}.rate"
        ch.queue_declare(name, durable=True, arguments=rate_args(10, 60_000, True))
        ch.basic_publish("", name, b"x", pika.BasicProperties(delivery_mode=2))
        made.append(name)
    n, total = memory(rates)
    print(f"rate 10/min, {n} live keys (one start recorded each): {total / 1024:.0f} KiB, {total / max(n, 1):.0f} B per key")

    full = f"{TAG}.full.rate"
    ch.queue_declare(full, durable=True, arguments=rate_args(KEYS, 600_000, False))
    made.append(full)
    for i in range(KEYS):
        ch.basic_publish("", full, str(uuid.uuid4()).encode(), pika.BasicProperties(delivery_mode=2))
    n, total = memory(full)
    print(f"one rate limit {KEYS}/10min with a full window: {total / 1024:.0f} KiB")
finally:
    for name in made:
        ch.queue_delete(name)
    conn.close()
