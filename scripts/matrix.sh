#!/usr/bin/env bash
# The broker matrix: the suites that speak to RabbitMQ again on the combinations of broker
# (Debian 12's 3.10 on 5672, Debian 13's 4.0 on 5700 from scripts/rabbitmq4.sh) and queue
# type (classic, quorum) that `cargo test --workspace` (3.10, classic) does not cover.
# Called by scripts/test.sh after the workspace's tests; builds nothing new but the 4.0 root
# (once). Leaves the 4.0 node down and the 3.10 broker running, whatever happens.
#
# What runs where, and why (docs/brokers.md has the table):
#   3.10 quorum   the worker suites                          quorum on the tested broker
#   4.0 classic   the worker suites, the dashboard's actions, the Python producer
#   4.0 quorum    the worker suites (priority: the ordering test on quorum queues), and
#                 tests/quorum.rs (the quorum layout; the 4.0 delivery limit)
#   4.0 quorum    the restart test (disruptive_reconnect; 50 s a pass, so one: quorum, which
#                 no other CI step restarts; 4.0 classic passes too, by hand)
#   both, quorum  the poison test (disruptive_poison): the same deaths counted on 3.10 and 4.0
# The dashboard's actions and the Python producer declare their queues themselves, as
# classic queues, so the queue type is no dimension for them: they run once on 4.0.
# On 2 cores this takes about 5.5 minutes (measured step by step: docs/brokers.md), in place of
# the minute of the quorum pass it replaces; the 4.0 node starts in ~5 s.
set -euo pipefail
cd "$(dirname "$0")/.."

# The worker suites, as `cargo test` arguments: one place to change when the suites move
# (after the merge into tests/suite/: `--test suite -- core:: malformed:: ...`).
WORKER_SUITES=(--test core --test malformed --test retries --test unique --test priority
  --test periodic --test middleware)
# The broker-restart test, and the poison test.
RESTART=(--test disruptive_reconnect)
POISON=(--test disruptive_poison)
DISRUPTIVE_ARGS=(-- --ignored --test-threads=1)

started=$SECONDS
step() { echo "== matrix: $* ($((SECONDS - started)) s in)"; }

# Runs `cargo test ARGS` on broker $1 (3.10 or 4.0) and queue type $2.
on() {
  local broker=$1 queue_type=$2
  shift 2
  local url
  if [ "$broker" = 4.0 ]; then url=$(scripts/rabbitmq4.sh url); else url=amqp://guest:guest@127.0.0.1:5672/%2f; fi
  PALERMO_TEST_BROKER=$broker PALERMO_AMQP_URL=$url PALERMO_TEST_QUEUE_TYPE=$queue_type \
    cargo test "$@"
}

scripts/broker.sh
trap 'scripts/rabbitmq4.sh down; scripts/broker.sh' EXIT
scripts/rabbitmq4.sh up

step "3.10, quorum: the worker suites"
on 3.10 quorum "${WORKER_SUITES[@]}"
step "4.0, classic: the worker suites, the dashboard's actions, the Python producer"
on 4.0 classic "${WORKER_SUITES[@]}" --test python_producer
on 4.0 classic -p palermo-web --test actions
step "4.0, quorum: the worker suites and the quorum layout"
on 4.0 quorum "${WORKER_SUITES[@]}" --test quorum
step "4.0, quorum: the broker restart test"
on 4.0 quorum "${RESTART[@]}" "${DISRUPTIVE_ARGS[@]}"
step "the poison test on quorum queues, 3.10 and 4.0"
on 3.10 quorum "${POISON[@]}" "${DISRUPTIVE_ARGS[@]}"
on 4.0 quorum "${POISON[@]}" "${DISRUPTIVE_ARGS[@]}"
step "done"
