#!/usr/bin/env bash
# The demo: RabbitMQ up, the dashboard serving (its URL is printed), the demo worker running,
# a burst of sample jobs flowing, some failing into palermo.failed and onto the dashboard.
#   scripts/demo.sh           run until Ctrl-C
#   scripts/demo.sh --smoke   run one burst, check jobs ran, failures landed and the dashboard
#                             shows them, stop gracefully, check the worker exited 0 and stopped
#
# Ctrl-C: the worker and the dashboard run in sessions of their own (setsid), so the
# terminal's SIGINT reaches only this script, which sends each exactly one SIGTERM: the worker
# finishes its running jobs, exits 0 and shows as stopped. A second Ctrl-C stops at once.
# PALERMO_DEMO_BIND sets the dashboard's address (defaults to 127.0.0.1:9090).
set -euo pipefail
cd "$(dirname "$0")/.."
SMOKE=${1:-}

scripts/broker.sh
# PALERMO_DEMO_BUILT: scripts/test.sh has built the binaries already (with the tests' features).
if [ -z "${PALERMO_DEMO_BUILT:-}" ]; then
  echo "[demo] building the demo (first run takes a few minutes)"
  cargo build -q -p palermo-demo -p palermo-cli
fi
BIN=target/debug
LOG=target/demo-worker.log
# The second worker: both run the scheduler; one is active, each periodic tick runs once.
LOG2=target/demo-worker2.log
WEB_LOG=target/demo-web.log
# The admin store of the demo: the dashboard and `palermo failed list` and friends read it.
export PALERMO_DATABASE_URL=${PALERMO_DATABASE_URL:-sqlite:target/demo.db}
# The demo's deployment: `reports` is a priority queue. Every process reads it from here (the
# workers, their schedulers, enqueue-samples, the dashboard's retries), so they declare it alike.
export PALERMO_MAX_PRIORITY=${PALERMO_MAX_PRIORITY:-reports=10}
BIND=${PALERMO_DEMO_BIND:-127.0.0.1:9090}
# The smoke run (CI) takes any free port, so it never clashes with a dashboard left open.
[ "$SMOKE" = "--smoke" ] && BIND=127.0.0.1:0
# At info: one line per job, `job done` (the demo worker's JobLines middleware, counted by
# the smoke run) or the worker's `job failed` warning, beside the jobs' own lines.
WORKER_LOG_LEVEL=${RUST_LOG:-info}
WORKER=
WORKER2=
WEB=
TAIL=

say() { echo "[demo] $*"; }

# Failures recorded so far (each call first records what is in palermo.failed).
failed_total() { "$BIN/palermo" failed list --json --limit 1 | grep -o '"total": *[0-9]*' | head -1 | grep -o '[0-9]*$' || echo 0; }

# Waits up to $3 seconds for the two workers' logs to hold $2 lines matching $1; prints how
# many they hold.
count_in_logs() {
  local n=0
  for _ in $(seq "$3"); do
    n=$(cat "$LOG" "$LOG2" | grep -c "$1" || true)
    [ "$n" -ge "$2" ] && break
    sleep 1
  done
  echo "$n"
}

# Waits for the child `$1` to end (polling, so traps still run meanwhile); returns its status.
wait_for() {
  while kill -0 "$1" 2>/dev/null; do sleep 0.2; done
  local rc=0
  wait "$1" || rc=$?
  return "$rc"
}

# A GET to the dashboard (no curl needed): prints status line, headers and body.
http_get() {
  local host=${URL#http://}
  host=${host%%/*}
  exec 3<>"/dev/tcp/${host%:*}/${host##*:}"
  printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$1" "$host" >&3
  cat <&3
  exec 3<&-
}

# The orderly stop: one SIGTERM to the worker, wait for it, then to the dashboard (whose
# recorder has meanwhile recorded the worker's last heartbeat), wait for it.
stopping=
stop_all() {
  [ -n "$stopping" ] && return 0
  stopping=1
  trap 'say "second stop: ending now"; kill -TERM $WORKER $WORKER2 $WEB 2>/dev/null || true' INT TERM
  [ -n "$TAIL" ] && kill "$TAIL" 2>/dev/null
  WORKER_STATUS=none
  if [ -n "$WORKER" ]; then
    say "stopping: the worker finishes its running jobs (Ctrl-C again to end at once)"
    kill -TERM "$WORKER" 2>/dev/null || true
    WORKER_STATUS=0
    wait_for "$WORKER" || WORKER_STATUS=$?
    say "worker exited with status $WORKER_STATUS"
  fi
  if [ -n "$WORKER2" ]; then
    kill -TERM "$WORKER2" 2>/dev/null || true
    local rc2=0
    wait_for "$WORKER2" || rc2=$?
    say "second worker exited with status $rc2"
    [ "$rc2" = 0 ] || WORKER_STATUS=$rc2
  fi
  if [ -n "$WEB" ]; then
    kill -TERM "$WEB" 2>/dev/null || true
    local rc=0
    wait_for "$WEB" || rc=$?
    say "dashboard exited with status $rc"
  fi
  trap - INT TERM
}
on_signal() { stop_all; "$BIN/palermo" workers || true; exit 130; }
trap stop_all EXIT
trap on_signal INT TERM HUP

before=$(failed_total)

setsid "$BIN/palermo" web --bind "$BIND" --env-name demo >"$WEB_LOG" 2>&1 &
WEB=$!
URL=
for _ in $(seq 100); do
  URL=$(grep -o 'http://[0-9.:]*' "$WEB_LOG" | head -1 || true)
  [ -n "$URL" ] && break
  kill -0 "$WEB" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$URL" ]; then
  say "the dashboard did not start:"
  cat "$WEB_LOG"
  exit 1
fi

RUST_LOG=$WORKER_LOG_LEVEL setsid "$BIN/worker" --queues mail,video,default,reports --concurrency 4 --scheduler >"$LOG" 2>&1 &
WORKER=$!
RUST_LOG=$WORKER_LOG_LEVEL setsid "$BIN/worker" --queues default --scheduler >"$LOG2" 2>&1 &
WORKER2=$!

if [ "$SMOKE" = "--smoke" ]; then
  "$BIN/enqueue-samples" --count 20
else
  # With a 60 s export_report to cancel by hand (palermo jobs cancel ID, or the Workers page).
  "$BIN/enqueue-samples" --count 20 --long-job
fi
say "workers $WORKER and $WORKER2 (both --scheduler), logs in $LOG and $LOG2; dashboard log in $WEB_LOG"
say "the dashboard: $URL/"

if [ "$SMOKE" = "--smoke" ]; then
  ok=
  for _ in $(seq 90); do
    done_jobs=$(grep -c "job done" "$LOG" || true)
    now=$(failed_total)
    if [ "$done_jobs" -ge 20 ] && [ "$now" -gt "$before" ]; then
      ok=1
      break
    fi
    sleep 1
  done
  if [ -z "$ok" ]; then
    say "smoke FAILED: jobs done=$(grep -c 'job done' "$LOG" || true), failures before=$before now=$(failed_total)"
    tail -40 "$LOG"
    exit 1
  fi
  say "smoke: $done_jobs jobs done, $((now - before)) new failures recorded from palermo.failed"
  "$BIN/palermo" queues mail video default
  "$BIN/palermo" failed list --limit 5
  health=$(http_get /health) || true
  failed_page=$(http_get /failed) || true
  workers_page=$(http_get /workers) || true
  if ! grep -q '^HTTP/1.1 200' <<<"$health" || ! grep -q '^HTTP/1.1 200' <<<"$failed_page" ||
    ! grep -q 'send_email' <<<"$failed_page" ||
    ! grep ":$WORKER:" <<<"$workers_page" | grep -q 'data-status="alive"'; then
    say "smoke FAILED: the dashboard at $URL did not show the failures and the worker"
    head -5 <<<"$health"
    head -20 <<<"$failed_page"
    grep -i "worker-row" <<<"$workers_page" || true
    cat "$WEB_LOG"
    exit 1
  fi
  ticks=$(count_in_logs "periodic job enqueued" 2 40)
  twice=$(cat "$LOG" "$LOG2" | grep "periodic job enqueued" | grep -o 'id=[0-9a-f-]*' | sort | uniq -d)
  if [ "$ticks" -lt 2 ] || [ -n "$twice" ]; then
    say "smoke FAILED: periodic ticks enqueued=$ticks, twice: $twice"
    exit 1
  fi
  say "smoke: $ticks periodic ticks, each enqueued once by the active scheduler of two"
  "$BIN/palermo" schedules
  indexed=$(count_in_logs "rebuilding the search index" 1 10)
  if [ "$indexed" != 1 ]; then
    say "smoke FAILED: the unique job enqueued twice ran $indexed times"
    exit 1
  fi
  say "smoke: the unique job enqueued twice ran once"
  say "smoke: the dashboard answers /health, lists the failures and shows the worker alive"
  stop_all
  workers=$("$BIN/palermo" workers)
  if [ "$WORKER_STATUS" != 0 ] || ! grep -Eq ":$WORKER:[^ ]* +stopped " <<<"$workers"; then
    say "smoke FAILED: the worker exited with $WORKER_STATUS; workers: $workers"
    exit 1
  fi
  say "smoke ok: the worker stopped gracefully (exit 0) and is listed as stopped"
  exit 0
fi

say "jobs are flowing; open $URL/ (or run '$BIN/palermo web' yourself later). Ctrl-C to stop."
say "In another terminal try:"
say "  PALERMO_DATABASE_URL=$PALERMO_DATABASE_URL $BIN/palermo failed list"
say "  PALERMO_DATABASE_URL=$PALERMO_DATABASE_URL $BIN/palermo failed retry --all"
say "  $BIN/palermo workers    $BIN/palermo stats"
tail -n +1 -f "$LOG" &
TAIL=$!
while kill -0 "$WORKER" 2>/dev/null; do
  sleep 5
  "$BIN/palermo" queues mail video default || true
done
