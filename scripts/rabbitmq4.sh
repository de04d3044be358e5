#!/usr/bin/env bash
# RabbitMQ 4.0 beside the 3.10 broker of scripts/broker.sh, for the broker matrix
# (scripts/matrix.sh) and trying Palermo on 4.0 by hand. It never touches the broker on 5672.
#
#   scripts/rabbitmq4.sh up        make the root if needed, start the node, wait until AMQP answers
#   scripts/rabbitmq4.sh down      stop the node (every process `up` started, by pid), remove its data
#   scripts/rabbitmq4.sh status    the server's version, or "not running"
#   scripts/rabbitmq4.sh url       its AMQP URL (PALERMO_AMQP_URL)
#   scripts/rabbitmq4.sh ctl ...   rabbitmqctl on the node (e.g. `ctl list_queues name`)
#   scripts/rabbitmq4.sh root      only make the root (scripts/cluster.sh uses it)
#   scripts/rabbitmq4.sh in CMD... CMD in the root as its rabbitmq user (HOME and PATH set)
#
# Debian 12 carries RabbitMQ 3.10; Debian 13 (trixie) carries 4.0 on Erlang 27. The 4.0 node
# runs from a minimal trixie root made once by `debootstrap --variant=minbase` (about 40 s
# and 490 MB, kept under $PALERMO_RABBITMQ4_ROOT, default /var/lib/palermo/rabbitmq4-root),
# as that root's own `rabbitmq` user (`chroot --userspec`), served by the host's epmd.
# Node rabbit4@localhost: AMQP on 127.0.0.1:5700, management on 15700, Erlang distribution
# on 25700; its config, data and logs under /var/lib/palermo-rabbit4 inside the root.
set -euo pipefail

ROOT=${PALERMO_RABBITMQ4_ROOT:-/var/lib/palermo/rabbitmq4-root}
NODE=rabbit4@localhost
PORT=5700
MANAGEMENT_PORT=15700
DIST_PORT=25700
STATE=/var/lib/palermo-rabbit4 # inside the root
WAIT_SECONDS=${PALERMO_BROKER_WAIT:-120}
SUITE=trixie

say() { echo "[rabbitmq4] $*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

# The root, made once: debootstrap into a side folder renamed when complete, so an
# interrupted run is started over rather than half-reused. rabbitmq-server is installed with
# a policy-rc.d that forbids starting services, and /proc mounted (Erlang reads it).
make_root() {
  mount_proc_if_root
  [ -x "$ROOT/usr/lib/rabbitmq/bin/rabbitmq-server" ] && return
  if ! command -v debootstrap >/dev/null 2>&1; then
    say "installing debootstrap"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  if [ ! -x "$ROOT/usr/bin/apt-get" ]; then
    local partial="$ROOT.partial"
    say "making a minimal Debian $SUITE root in $ROOT (about a minute)"
    as_root rm -rf "$partial"
    as_root mkdir -p "$(dirname "$ROOT")"
    as_root debootstrap --variant=minbase "$SUITE" "$partial" >/dev/null
    as_root mv "$partial" "$ROOT"
  fi
  printf '#!/bin/sh\nexit 101\n' | as_root tee "$ROOT/usr/sbin/policy-rc.d" >/dev/null
  as_root chmod 755 "$ROOT/usr/sbin/policy-rc.d"
  mount_proc_if_root
  say "installing rabbitmq-server in the root"
  as_root chroot "$ROOT" apt-get update -qq
  as_root chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends rabbitmq-server >/dev/null
  # The root's nodes (this one, scripts/cluster.sh's) share this cookie; made here so that
  # three nodes starting at once do not race to write it.
  as_root chroot "$ROOT" sh -c 'umask 077; [ -s /var/lib/rabbitmq/.erlang.cookie ] ||
    head -c 30 /dev/urandom | od -An -tx1 | tr -d " \n" >/var/lib/rabbitmq/.erlang.cookie;
    chown rabbitmq:rabbitmq /var/lib/rabbitmq/.erlang.cookie'
}

mount_proc_if_root() {
  if [ -d "$ROOT/proc" ] && ! mountpoint -q "$ROOT/proc"; then
    as_root mount -t proc proc "$ROOT/proc"
  fi
}

# CMD in the root as its rabbitmq user, with a clean environment plus $IN_ENV.
in_root() {
  as_root chroot --userspec=rabbitmq:rabbitmq "$ROOT" env -i HOME=/var/lib/rabbitmq \
    PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 ${IN_ENV:-} "$@"
}

node_env() { IN_ENV="RABBITMQ_CONF_ENV_FILE=$STATE/env.conf" in_root "$@"; }
ctl() { node_env /usr/lib/rabbitmq/bin/rabbitmqctl -n "$NODE" "$@"; }

prepare() {
  local d="$ROOT$STATE"
  as_root mkdir -p "$d/mnesia" "$d/log"
  cat <<EOF | as_root tee "$d/env.conf" >/dev/null
NODENAME=$NODE
DIST_PORT=$DIST_PORT
MNESIA_BASE=$STATE/mnesia
LOG_BASE=$STATE/log
ENABLED_PLUGINS_FILE=$STATE/enabled_plugins
PID_FILE=$STATE/pid
CONFIG_FILE=$STATE/rabbitmq.conf
ERL_EPMD_ADDRESS=127.0.0.1
export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"
EOF
  cat <<EOF | as_root tee "$d/rabbitmq.conf" >/dev/null
listeners.tcp.local = 127.0.0.1:$PORT
management.tcp.ip = 127.0.0.1
management.tcp.port = $MANAGEMENT_PORT
loopback_users = none
EOF
  echo '[rabbitmq_management].' | as_root tee "$d/enabled_plugins" >/dev/null
  as_root chroot "$ROOT" chown -R rabbitmq:rabbitmq "$STATE"
}

# The pids of the session `up` started the node in (its shell, the Erlang VM and the VM's
# helpers), from the session id `up` wrote down, and only those that run in the root (a
# stale id from before a reboot names someone else's session); empty when none runs.
session_pids() {
  local sid p
  sid=$(cat "$ROOT$STATE.session" 2>/dev/null || true)
  [ -n "$sid" ] || return 0
  for p in $(pgrep -s "$sid" || true); do
    if [ "$(readlink "/proc/$p/root" 2>/dev/null)" = "$ROOT" ]; then echo "$p"; fi
  done
}

up() {
  make_root
  if [ -n "$(session_pids)" ]; then
    wait_answers
    say "RabbitMQ $(version) answers on 127.0.0.1:$PORT (already up)"
    return
  fi
  if answers; then
    say "ERROR: something else listens on 127.0.0.1:$PORT"
    exit 1
  fi
  prepare
  (
    # The node outlives this script: it must not inherit its descriptors (a flock's, say).
    for fd in $(ls "/proc/$BASHPID/fd"); do
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
    done
    cd /
    # Its own session, so that `down` finds every process it is made of.
    exec setsid bash -c 'echo $$ >"$0"; exec "$@"' "$ROOT$STATE.session" \
      chroot --userspec=rabbitmq:rabbitmq "$ROOT" env -i HOME=/var/lib/rabbitmq \
      PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
      "RABBITMQ_CONF_ENV_FILE=$STATE/env.conf" /usr/sbin/rabbitmq-server \
      </dev/null >"$ROOT$STATE/log/console.log" 2>&1
  ) &
  wait_answers
  say "RabbitMQ $(version) answers on 127.0.0.1:$PORT"
}

wait_answers() {
  for _ in $(seq "$((WAIT_SECONDS * 4))"); do
    if answers; then
      return
    fi
    # Not session_pids: for an instant after `up`, the session has not entered the root yet.
    if ! pgrep -s "$(cat "$ROOT$STATE.session" 2>/dev/null || echo 0)" >/dev/null; then
      say "ERROR: the node stopped while starting; see $ROOT$STATE/log/console.log"
      tail -20 "$ROOT$STATE/log/console.log" >&2 || true
      exit 1
    fi
    sleep 0.25
  done
  say "ERROR: $NODE did not answer on 127.0.0.1:$PORT within ${WAIT_SECONDS}s; see $ROOT$STATE/log"
  exit 1
}

version() {
  node_env /usr/lib/rabbitmq/bin/rabbitmq-diagnostics -n "$NODE" -q server_version 2>/dev/null ||
    echo unknown
}

# Stops the node (rabbitmqctl stop, then SIGKILL by pid to whatever of its session is left)
# and removes its data, so the next `up` starts from an empty broker.
down() {
  local pids pid
  pids=$(session_pids)
  if [ -n "$pids" ]; then
    timeout 60 "$0" ctl stop >/dev/null 2>&1 || true
    for _ in $(seq 60); do
      [ -n "$(session_pids)" ] || break
      sleep 0.25
    done
    for pid in $(session_pids); do
      say "pid $pid is left; SIGKILL"
      as_root kill -KILL "$pid" 2>/dev/null || true
    done
  fi
  as_root rm -rf "$ROOT$STATE" "$ROOT$STATE.session"
  # /proc of the root goes too, unless something still runs in the root (the nodes of
  # `PALERMO_CLUSTER_RABBITMQ=4.0 scripts/cluster.sh`).
  if mountpoint -q "$ROOT/proc" && ! in_use; then
    as_root umount "$ROOT/proc" || true
  fi
  say "down"
}

# Whether any process runs inside the root.
in_use() {
  local p
  for p in /proc/[0-9]*; do
    if [ "$(readlink "$p/root" 2>/dev/null)" = "$ROOT" ]; then return 0; fi
  done
  return 1
}

status() {
  if [ -n "$(session_pids)" ] && answers; then
    echo "RabbitMQ $(version) on 127.0.0.1:$PORT (node $NODE, management on $MANAGEMENT_PORT)"
  elif [ -n "$(session_pids)" ]; then
    echo "starting or stopping (pids $(session_pids | tr '\n' ' '))"
  else
    echo "not running"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  url) echo "amqp://guest:guest@127.0.0.1:$PORT/%2f" ;;
  ctl)
    shift
    ctl "$@"
    ;;
  root) make_root ;;
  in)
    shift
    in_root "$@"
    ;;
  *)
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
