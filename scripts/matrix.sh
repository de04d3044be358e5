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

# The worker suites: modules of the tests/suite binary, selected by name. Every cargo command
# names --workspace, as scripts/test.sh does: one feature resolution, so nothing is compiled
# again.
WORKER_SUITES=(core:: malformed:: retries:: unique:: priority:: periodic:: middleware:: limits::)
SUITE=(--workspace --test suite --)
# The broker-restart test, and the poison test (modules of tests/disruptive).
RESTART=(--workspace --test disruptive -- --ignored --test-threads=1 disruptive_reconnect::)
POISON=(--workspace --test disruptive -- --ignored --test-threads=1 disruptive_poison::)

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
on 3.10 quorum "${SUITE[@]}" "${WORKER_SUITES[@]}"
# The memory test is #[ignore]d in the parallel run (it measures its own process): alone.
on 3.10 quorum "${SUITE[@]}" --ignored retries::
step "4.0, classic: the worker suites, the dashboard's actions, the Python producer"
on 4.0 classic "${SUITE[@]}" "${WORKER_SUITES[@]}" python_producer::
on 4.0 classic --workspace --test web -- actions::
step "4.0, quorum: the worker suites and the quorum layout"
on 4.0 quorum "${SUITE[@]}" "${WORKER_SUITES[@]}" quorum::
step "4.0, quorum: the broker restart test"
on 4.0 quorum "${RESTART[@]}"
step "the poison test on quorum queues, 3.10 and 4.0"
on 3.10 quorum "${POISON[@]}"
on 4.0 quorum "${POISON[@]}"
step "done"
