#!/usr/bin/env python3
"""Enqueues a Palermo job from Python with pika, following docs/wire-format.md.

    python3 producer.py --to ada@example.com --subject Welcome     # job send_email on queue mail

A Rust worker with `#[palermo::job(queue = "mail")] async fn send_email(to: String,
subject: String)` runs it. Prints the job id once RabbitMQ has confirmed the message.
"""
import argparse
import json
import os
import sys
import time
import uuid

import pika


def enqueue(url, queue, job, args):
    """Publishes one job (persistent, mandatory, confirmed) and returns its id."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()  # publisher confirms: basic_publish raises if nacked or unroutable
        ch.exchange_declare("palermo", exchange_type="direct", durable=True)
        ch.queue_declare(queue, durable=True)  # so the job waits even if no worker runs yet
        ch.queue_bind(queue, "palermo", routing_key=queue)
        body = json.dumps(args)
        job_id = str(uuid.uuid4())
        ch.basic_publish(
            exchange="palermo",
            routing_key=queue,
            mandatory=True,
            body=body.encode(),
            properties=pika.BasicProperties(
                message_id=job_id,
                type=job,
                timestamp=int(time.time()),
                content_type="application/json",
                delivery_mode=2,
                app_id="palermo-python-example",
                headers={
                    "x-palermo-version": 1,
                    "x-palermo-job": job,
                    "x-palermo-serializer": "json",
                    "x-palermo-queue": queue,
                    "x-palermo-args-preview": body[:120],
                    "x-palermo-attempt": 1,
                    "x-palermo-enqueued-at": int(time.time() * 1000),
                },
            ),
        )
        return job_id
    finally:
        conn.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("PALERMO_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
                        help="RabbitMQ URL (defaults to PALERMO_AMQP_URL or the local broker)")
    parser.add_argument("--queue", default="mail", help="queue to enqueue to (defaults to mail)")
    parser.add_argument("--to", default="ada@example.com", help="the job's `to` argument")
    parser.add_argument("--subject", default="Welcome", help="the job's `subject` argument")
    opts = parser.parse_args()
    try:
        job_id = enqueue(opts.url, opts.queue, "send_email", {"to": opts.to, "subject": opts.subject})
    except pika.exceptions.AMQPError as e:
        print(f"error: could not enqueue: {e!r}", file=sys.stderr)
        return 1
    print(job_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
