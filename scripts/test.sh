#!/usr/bin/env bash
# The whole test suite: services up, formatting and lints, every test, then the
# disruptive tests (tests/disruptive/: broker restarts, killed processes) one at a time after
# the rest, then the cluster tests (tests/cluster/: they bring up scripts/cluster.sh's three
# nodes themselves), then the demo's smoke run. Each stage prints the seconds it took.
#
# Every cargo command selects the whole workspace and a test target, so cargo resolves one
# set of features and compiles each dependency once. A command that selects one package
# (`-p`, or the root package's `--test X` without `--workspace`) or no test target (a plain
# `cargo build`) resolves other features for the shared dependencies and compiles them all
# a second time, minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."

# Where several people test against one broker, the lock of tests/README.md keeps the
# disruptive stage apart from everyone else's tests; on a CI machine nobody else holds it.
LOCK=/tmp/palermo-broker.lock
# What to undo at exit, whatever happens (newest first).
undo=""
at_exit() {
  undo="$1; $undo"
  # shellcheck disable=SC2064 # expanded now, on purpose
  trap "$undo" EXIT
}
stage_started=$SECONDS
stage() {
  echo "== $(( SECONDS - stage_started )) s"
  stage_started=$SECONDS
  echo "== $*"
}

scripts/broker.sh
scripts/postgres.sh
scripts/chromium.sh   # the dashboard's browser test drives Debian's Chromium
scripts/python.sh     # examples/python and its test (tests/suite/python_producer.rs) need pika

stage "cargo fmt --check"
cargo fmt --all -- --check
# Clippy lints the workspace's crates while they compile for the tests: clippy-driver is the
# workspace's rustc wrapper (as under `cargo clippy`, but building code) with `-D warnings`
# (cargo clippy's own way of handing it arguments). One build instead of a `cargo clippy`
# check of every crate and then a test build of them all, minutes on two cores; `cargo test`
# builds every target `cargo clippy --all-targets` checks (there are no benches). Every cargo
# command below runs with it, so none rebuilds what another built; the test builds turn the
# optional OpenTelemetry bridge on (the root package's dev-dependency), so it is linted too.
# crates/palermo/tests/compile_fail.rs takes both out for trybuild's own build.
RUSTC_WORKSPACE_WRAPPER=$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver)
export RUSTC_WORKSPACE_WRAPPER
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
stage "cargo package (the five published crates)"
# Each must package: a version on every path dependency, its metadata, and the files it
# compiles in (web/ and migrations/ reach the crates through symlinks that cargo follows).
# --no-verify: building each .crate resolves its own features and rebuilds the dependency
# tree for it (palermo's alone took 9.5 min on the 2-core machine), too long for every run;
# before a release, run it without --no-verify (the five are packaged together, so local
# dependencies resolve to each other's .crate files).
cargo package --locked --allow-dirty --no-verify \
  -p palermo -p palermo-macros -p palermo-store -p palermo-web -p palermo-cli
stage "cargo test (linted by clippy as it compiles)"
# The tests run the `palermo` this build makes (crates/palermo-cli has a test, so `cargo test`
# builds its binary); left to themselves they build it with `cargo build -p palermo-cli`,
# which resolves other features (see above). The demo runs its binaries too.
export PALERMO_BIN=$PWD/target/debug/palermo
# The #[job] misuse tests (trybuild) check the library's dependencies again in a project of
# their own, minutes of CPU: niced, beside the broker suites, which mostly wait.
nice -n 19 cargo test --workspace --test compile_fail > target/compile-fail.log 2>&1 &
compile_fail=$!
at_exit 'kill "$compile_fail" 2>/dev/null || true'   # not left running if a test fails
flock -s "$LOCK" cargo test --workspace -- --skip job_macro_misuse_fails_to_compile
wait "$compile_fail" || { cat target/compile-fail.log; exit 1; }
# A test that measures the process (its memory) is #[ignore]d in the parallel run: alone here.
flock -s "$LOCK" cargo test --workspace --test suite -- --ignored retries::
stage "the broker matrix: 3.10 and 4.0, classic and quorum queues"
flock -s "$LOCK" scripts/matrix.sh
stage "disruptive tests"
at_exit 'scripts/broker.sh'   # whatever happens, leave the broker running
# Those that restart the broker, raise an alarm or delete what every test shares run one at
# a time; those that only kill processes of their own run two at a time, beside each other.
OWN_PROCESSES="disruptive_admin:: disruptive_chains:: disruptive_limits:: disruptive_poison:: disruptive_scheduler:: disruptive_unique::"
# shellcheck disable=SC2046 # one --skip per word
flock -x "$LOCK" cargo test --workspace --test disruptive -- --ignored --test-threads=1 \
  $(printf -- '--skip %s ' $OWN_PROCESSES)
# KNOWN FAILURE, skipped until fixed (issue 22's note): since the chains, batches and cancel
# merges, the frozen (SIGSTOPped) scheduler test loses the tick right after the freeze in
# this stage (twice in three runs; it passed alone). Run it by hand:
# cargo test --workspace --test disruptive -- --ignored disruptive_scheduler::a_frozen --nocapture
# shellcheck disable=SC2086 # one filter per word
flock -s "$LOCK" cargo test --workspace --test disruptive -- --ignored $OWN_PROCESSES \
  --skip disruptive_scheduler::a_frozen_scheduler_is_replaced_after_the_heartbeat_timeout
stage "cluster tests (three-node RabbitMQ clusters on 5681-5683: failover, control and limits on 3.10, chaos on 4.0)"
# Whatever happens, take the cluster down and leave the main broker running.
at_exit 'flock -x /tmp/palermo-cluster.lock sh -c "scripts/cluster.sh down; PALERMO_CLUSTER_RABBITMQ=4.0 scripts/cluster.sh down"'
# --nocapture: the failover times and the chaos line belong in the CI log.
cargo test --workspace --test cluster -- cluster_failover:: cluster_control:: cluster_limits:: --ignored --test-threads=1 --nocapture
# The chaos test runs on a RabbitMQ 4.0 cluster (from scripts/rabbitmq4.sh's root, which the
# matrix stage made): there neither it nor the plain-lapin baseline lost a job in 20 runs
# each, so any loss fails CI. On 3.10.8 about one run in three loses a job the broker itself
# confirmed, which the baseline reproduces without Palermo (docs/scaling.md, "Chaos in the
# cluster"); run it there by hand: cargo test --test cluster -- cluster_chaos:: --ignored --nocapture
PALERMO_CLUSTER_RABBITMQ=4.0 \
  cargo test --workspace --test cluster -- cluster_chaos:: --ignored --test-threads=1 --nocapture
stage "demo smoke run"
# `cargo test` built the demo's binaries; its own `cargo build -p ...` would resolve other features.
PALERMO_DEMO_BUILT=1 flock -s "$LOCK" scripts/demo.sh --smoke
stage "done"
