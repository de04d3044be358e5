#!/usr/bin/env bash
# Makes sure RabbitMQ answers on 127.0.0.1:5672: installs Debian's rabbitmq-server if it is
# missing, starts it if it is not running, and waits. Used by the demo and the test command.
set -euo pipefail

HOST=127.0.0.1
PORT=5672
WAIT_SECONDS=${PALERMO_BROKER_WAIT:-90}

say() { echo "[broker] $*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
answers() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

if answers; then
  say "RabbitMQ answers on $HOST:$PORT"
  exit 0
fi

if ! command -v rabbitmq-server >/dev/null 2>&1; then
  say "installing rabbitmq-server from Debian's packages"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
fi

if ! answers; then
  say "starting RabbitMQ"
  as_root rabbitmq-server -detached || true
fi

for _ in $(seq "$WAIT_SECONDS"); do
  if answers; then
    say "RabbitMQ answers on $HOST:$PORT"
    exit 0
  fi
  sleep 1
done
say "ERROR: RabbitMQ did not answer on $HOST:$PORT within ${WAIT_SECONDS}s."
say "Look at /var/log/rabbitmq/ and try 'rabbitmq-server -detached' by hand."
exit 1
