#!/usr/bin/env bash
# The whole test suite: services up, formatting and lints, every test, then the disruptive
# tests (broker restarts, killed processes) one at a time after the rest, then the cluster
# tests (tests/cluster_*.rs: they bring up scripts/cluster.sh's three nodes themselves).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/broker.sh
scripts/postgres.sh
scripts/chromium.sh   # the dashboard's browser test drives Debian's Chromium
scripts/python.sh     # examples/python and its test (tests/python_producer.rs) need pika

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p palermo --features opentelemetry --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
echo "== the OpenTelemetry bridge (an optional feature)"
cargo test -p palermo --features opentelemetry --lib trace
scripts/matrix.sh # the broker matrix: 3.10 and 4.0, classic and quorum queues
if ls tests/disruptive_*.rs >/dev/null 2>&1; then
  echo "== disruptive tests (one at a time)"
  trap 'scripts/broker.sh' EXIT   # whatever happens, leave the broker running
  cargo test --test 'disruptive_*' -- --ignored --test-threads=1
fi
if ls tests/cluster_*.rs >/dev/null 2>&1; then
  echo "== cluster tests (a three-node RabbitMQ cluster on 5681-5683, one test at a time)"
  # Whatever happens, take the cluster down and leave the main broker running.
  trap 'flock -x /tmp/palermo-cluster.lock scripts/cluster.sh down; scripts/broker.sh' EXIT
  cluster_started=$SECONDS
  # cluster_chaos is not run here: on RabbitMQ 3.10.8 about one run in three ends with one
  # confirmed job that no worker ever received and no queue holds, a loss the plain-lapin
  # baseline reproduces without Palermo (docs/scaling.md, "Chaos in the cluster"); on a 4.0
  # cluster (PALERMO_CLUSTER_RABBITMQ=4.0) neither lost anything in 20 runs each (the
  # 20 clean runs that would bring it here; not wired in yet). By hand:
  #   cargo test --test cluster_chaos -- --ignored --nocapture
  # --nocapture: the failover times belong in the CI log.
  cargo test --test cluster_failover -- --ignored --test-threads=1 --nocapture
  echo "== cluster tests took $((SECONDS - cluster_started)) s"
fi
echo "== demo smoke run"
scripts/demo.sh --smoke
