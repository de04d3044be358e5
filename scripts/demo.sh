#!/usr/bin/env bash
# The demo: RabbitMQ up, the demo worker running, a burst of sample jobs flowing, some
# failing into palermo.failed. Ctrl-C stops the worker gracefully.
#   scripts/demo.sh           run until Ctrl-C
#   scripts/demo.sh --smoke   run one burst, check jobs ran and failures landed, exit
set -euo pipefail
cd "$(dirname "$0")/.."
SMOKE=${1:-}

scripts/broker.sh
echo "[demo] building the demo (first run takes a few minutes)"
cargo build -q -p palermo-demo -p palermo-cli
BIN=target/debug
LOG=target/demo-worker.log
# The admin store of the demo: `palermo failed list` and friends read it.
export PALERMO_DATABASE_URL=${PALERMO_DATABASE_URL:-sqlite:target/demo.db}

# Failures recorded so far (each call first records what is in palermo.failed).
failed_total() { "$BIN/palermo" failed list --json --limit 1 | grep -o '"total": *[0-9]*' | head -1 | grep -o '[0-9]*$' || echo 0; }
before=$(failed_total)

"$BIN/worker" --queues mail,video,default --concurrency 4 >"$LOG" 2>&1 &
WORKER=$!
stop() { kill -TERM "$WORKER" 2>/dev/null && wait "$WORKER" 2>/dev/null || true; }
trap stop EXIT

"$BIN/enqueue-samples" --count 20
echo "[demo] worker pid $WORKER, log in $LOG"

if [ "$SMOKE" = "--smoke" ]; then
  for _ in $(seq 90); do
    done_jobs=$(grep -c "job done" "$LOG" || true)
    now=$(failed_total)
    if [ "$done_jobs" -ge 20 ] && [ "$now" -gt "$before" ]; then
      echo "[demo] smoke ok: $done_jobs jobs done, $((now - before)) new failures recorded from palermo.failed"
      "$BIN/palermo" queues mail video default
      "$BIN/palermo" failed list --limit 5
      exit 0
    fi
    sleep 1
  done
  echo "[demo] smoke FAILED: jobs done=$(grep -c 'job done' "$LOG" || true), failures before=$before now=$(failed_total)"
  tail -40 "$LOG"
  exit 1
fi

echo "[demo] jobs are flowing; Ctrl-C to stop. Queues every 5 s. In another terminal try:"
echo "[demo]   PALERMO_DATABASE_URL=$PALERMO_DATABASE_URL $BIN/palermo failed list"
echo "[demo]   PALERMO_DATABASE_URL=$PALERMO_DATABASE_URL $BIN/palermo failed retry --all"
echo "[demo]   $BIN/palermo workers    $BIN/palermo stats"
tail -n +1 -f "$LOG" &
TAIL=$!
trap 'kill $TAIL 2>/dev/null; stop' EXIT
while kill -0 "$WORKER" 2>/dev/null; do
  sleep 5
  "$BIN/palermo" queues mail video default || true
done
