#!/usr/bin/env bash
# A three-node RabbitMQ cluster on 127.0.0.1 beside the main broker, for the cluster tests
# (tests/cluster/), the bench (palermo-bench scale --amqp-url "$(scripts/cluster.sh urls)")
# and trying Palermo on quorum queues by hand. It never touches the main broker on 5672.
#
#   scripts/cluster.sh up        start the three nodes, cluster them, wait until each answers
#   scripts/cluster.sh down      stop them and remove everything they wrote
#   scripts/cluster.sh status    the members, and which of them run
#   scripts/cluster.sh urls      their AMQP URLs on one line, comma-separated (PALERMO_AMQP_URL)
#   scripts/cluster.sh kill N    SIGKILL node N (1..3), as a crash would
#   scripts/cluster.sh start N   start node N again; waits until it is back in the cluster
#   scripts/cluster.sh node N    node N's name (for rabbitmqctl -n)
#   scripts/cluster.sh ctl N ... rabbitmqctl on node N (e.g. `ctl 1 list_queues name leader`)
#
# Node N is palermo-cN@localhost, AMQP on 568N, Erlang distribution on 2568N, with its env
# file, config, data, logs and pid file under $PALERMO_CLUSTER_DIR (default
# /tmp/palermo-cluster/cN). rabbitmq-server run as root drops to the `rabbitmq` user, so the
# folders belong to it, and the nodes share the main broker's Erlang cookie (that user's).
# Uses of the cluster from several shells should hold `flock -x /tmp/palermo-cluster.lock`.
#
# PALERMO_CLUSTER_RABBITMQ=4.0 builds the nodes from RabbitMQ 4.0 instead of the host's 3.10:
# from the Debian 13 root of scripts/rabbitmq4.sh (made if missing), as that root's rabbitmq
# user, with their folders under the same path inside the root. Same node names and ports
# (5681-5683, 25681-25683), so the cluster tests need nothing else: the two clusters never
# run at once (the lock above serialises their users, and `up` refuses while the other one
# answers on these ports). Give `down` the same variable as `up`.
set -euo pipefail

BASE=${PALERMO_CLUSTER_DIR:-/tmp/palermo-cluster}
NODES=(1 2 3)
WAIT_SECONDS=${PALERMO_CLUSTER_WAIT:-120}
RMQ_BIN=/usr/lib/rabbitmq/bin
RMQ_USER=rabbitmq
RMQ_HOME=/var/lib/rabbitmq
DLX_CONFIRM_TIMEOUT_MS=${PALERMO_CLUSTER_DLX_CONFIRM_TIMEOUT_MS:-5000}
VERSION=${PALERMO_CLUSTER_RABBITMQ:-3.10}
case "$VERSION" in
  3.10) ROOT="" ;; # the host's own RabbitMQ
  4.0) ROOT=${PALERMO_RABBITMQ4_ROOT:-/var/lib/palermo/rabbitmq4-root} ;;
  *)
    echo "[cluster] PALERMO_CLUSTER_RABBITMQ must be 3.10 or 4.0 (got '$VERSION')" >&2
    exit 2
    ;;
esac

say() { echo "[cluster] $*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

name() { echo "palermo-c$1@localhost"; }
port() { echo "$((5680 + $1))"; }
dir() { echo "$BASE/c$1"; }
url() { echo "amqp://guest:guest@127.0.0.1:$(port "$1")/%2f"; }
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$(port "$1")") 2>/dev/null; }

# Runs a RabbitMQ tool as the rabbitmq user, on node N's own env file (so that
# /etc/rabbitmq/rabbitmq-env.conf, which pins the main broker's node name, is not read).
# On 4.0, in the root as the root's own rabbitmq user.
as_node() {
  local n=$1
  shift
  local env=(env "HOME=$RMQ_HOME" "RABBITMQ_CONF_ENV_FILE=$(dir "$n")/env.conf")
  if [ -n "$ROOT" ]; then
    as_root chroot --userspec="$RMQ_USER:$RMQ_USER" "$ROOT" env -i \
      PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "${env[@]:1}" "$@"
  elif [ "$(id -un)" = "$RMQ_USER" ]; then
    "${env[@]}" "$@"
  elif [ "$(id -u)" -eq 0 ]; then
    runuser -u "$RMQ_USER" -- "${env[@]}" "$@"
  else
    sudo -u "$RMQ_USER" "${env[@]}" "$@"
  fi
}
ctl() {
  local n=$1
  shift
  (cd / && as_node "$n" "$RMQ_BIN/rabbitmqctl" -n "$(name "$n")" "$@")
}

# The rabbitmq user's uid (the root's own on 4.0), for pgrep.
rmq_uid() {
  awk -F: -v u="$RMQ_USER" '$1 == u { print $3 }' "$ROOT/etc/passwd"
}

ensure_installed() {
  if [ -n "$ROOT" ]; then
    "$(dirname "$0")/rabbitmq4.sh" root
  elif [ ! -x "$RMQ_BIN/rabbitmq-server" ]; then
    say "installing rabbitmq-server from Debian's packages"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
  fi
}

# Node N's folders and files, owned by the rabbitmq user.
prepare() {
  local n=$1 d
  d=$(dir "$n")
  as_root mkdir -p "$ROOT$d/mnesia" "$ROOT$d/log"
  cat <<EOF | as_root tee "$ROOT$d/env.conf" >/dev/null
NODENAME=$(name "$n")
DIST_PORT=$((25680 + n))
MNESIA_BASE=$d/mnesia
LOG_BASE=$d/log
ENABLED_PLUGINS_FILE=$d/enabled_plugins
PID_FILE=$d/pid
CONFIG_FILE=$d/rabbitmq.conf
ADVANCED_CONFIG_FILE=$d/advanced.config
ERL_EPMD_ADDRESS=127.0.0.1
export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"
EOF
  cat <<EOF | as_root tee "$ROOT$d/rabbitmq.conf" >/dev/null
listeners.tcp.local = 127.0.0.1:$(port "$n")
EOF
  # A quorum queue that dead-letters at-least-once (the delay levels) re-publishes a message
  # whose publish was not confirmed only after this timeout: 180 s by default, so a
  # delayed job caught mid-hop when the job queue's leader dies would wait three minutes.
  # docs/scaling.md recommends the same setting for production clusters.
  echo "[{rabbit, [{dead_letter_worker_publisher_confirm_timeout, $DLX_CONFIRM_TIMEOUT_MS}]}]." |
    as_root tee "$ROOT$d/advanced.config" >/dev/null
  echo '[].' | as_root tee "$ROOT$d/enabled_plugins" >/dev/null
  if [ -n "$ROOT" ]; then
    as_root chroot "$ROOT" chown -R "$RMQ_USER:$RMQ_USER" "$BASE"
  else
    as_root chown -R "$RMQ_USER:$RMQ_USER" "$BASE"
  fi
}

# The pid of node N's Erlang VM, if it runs: from its pid file, else from the environment
# of the rabbitmq user's VMs (the one that boots RabbitMQ on node N's env file, not a
# rabbitmqctl talking to it). Never another node's.
pid_of() {
  local n=$1 pid env p
  env="RABBITMQ_CONF_ENV_FILE=$(dir "$n")/env.conf"
  pid=$(cat "$ROOT$(dir "$n")/pid" 2>/dev/null || true)
  for p in $pid $(pgrep -u "$(rmq_uid)" -x beam.smp || true); do
    if alive "$p" && { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -qxF "$env" &&
      { tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null | grep -qF -- '-s rabbit boot'; then
      echo "$p"
      return
    fi
  done
}

# Whether process $1 runs (a zombie waiting for init to reap it does not).
alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)
  [ -n "$state" ] && [ "$state" != Z ]
}

start_node() {
  local n=$1
  if [ -n "$(pid_of "$n")" ]; then
    return
  fi
  if answers "$n"; then
    say "ERROR: something else answers on 127.0.0.1:$(port "$n") (a cluster of the other RabbitMQ version? take it down with its own PALERMO_CLUSTER_RABBITMQ)"
    exit 1
  fi
  [ -f "$ROOT$(dir "$n")/env.conf" ] || prepare "$n"
  (
    # The node outlives this script: it must not inherit its descriptors, such as the one
    # of `flock /tmp/palermo-cluster.lock scripts/cluster.sh up`, or it would hold that lock.
    for fd in $(ls "/proc/$BASHPID/fd"); do
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
    done
    cd / && as_node "$n" "$RMQ_BIN/rabbitmq-server" -detached
  )
}

wait_answers() {
  local n=$1
  for _ in $(seq "$((WAIT_SECONDS * 4))"); do
    if answers "$n"; then
      return
    fi
    if [ -z "$(pid_of "$n")" ] && [ -f "$ROOT$(dir "$n")/pid" ]; then
      sleep 1 # the VM may still be starting; the pid file comes early
    fi
    sleep 0.25
  done
  say "ERROR: $(name "$n") did not answer on 127.0.0.1:$(port "$n") within ${WAIT_SECONDS}s; see $ROOT$(dir "$n")/log"
  exit 1
}

# The nodes the cluster of node N says are running (empty if N does not answer).
running_nodes() {
  ctl "$1" cluster_status --formatter json 2>/dev/null | jq -r '.running_nodes[]' 2>/dev/null || true
}
members() {
  ctl "$1" cluster_status --formatter json 2>/dev/null | jq -r '.disk_nodes[], .ram_nodes[]?' 2>/dev/null || true
}

join() {
  local n=$1
  if members 1 | grep -qxF "$(name "$n")"; then
    return
  fi
  say "joining $(name "$n") to $(name 1)"
  ctl "$n" stop_app >/dev/null
  ctl "$n" join_cluster "$(name 1)" >/dev/null
  ctl "$n" start_app >/dev/null
}

# Waits until node N answers on AMQP and the cluster counts it as running.
wait_member() {
  local n=$1 other
  wait_answers "$n"
  for _ in $(seq "$((WAIT_SECONDS * 4))"); do
    for other in "${NODES[@]}"; do
      if [ "$other" != "$n" ] && running_nodes "$other" | grep -qxF "$(name "$n")"; then
        return
      fi
    done
    sleep 0.25
  done
  say "ERROR: $(name "$n") is not back in the cluster within ${WAIT_SECONDS}s"
  exit 1
}

up() {
  ensure_installed
  local n
  for n in "${NODES[@]}"; do
    start_node "$n"
  done
  for n in "${NODES[@]}"; do
    wait_answers "$n"
    ctl "$n" await_startup --timeout "$WAIT_SECONDS" >/dev/null
  done
  for n in "${NODES[@]:1}"; do
    join "$n"
  done
  for n in "${NODES[@]}"; do
    wait_answers "$n"
  done
  say "up (RabbitMQ $VERSION): $(urls)"
}

stop_node() {
  local n=$1 pid
  pid=$(pid_of "$n")
  [ -n "$pid" ] || return 0
  timeout 60 "$0" ctl "$n" stop >/dev/null 2>&1 || true
  for _ in $(seq 40); do
    alive "$pid" || return 0
    sleep 0.25
  done
  say "$(name "$n") hangs; SIGKILL $pid"
  as_root kill -KILL "$pid" 2>/dev/null || true
}

# Stops every node (all at once: the cluster goes away whole, so no member needs to be
# told that another left) and removes its folders.
down() {
  local n
  for n in "${NODES[@]}"; do
    stop_node "$n" &
  done
  wait
  for n in "${NODES[@]}"; do
    if [ -n "$(pid_of "$n")" ]; then
      say "ERROR: $(name "$n") still runs (pid $(pid_of "$n"))"
      exit 1
    fi
  done
  as_root rm -rf "${ROOT}$BASE"
  say "down"
}

status() {
  local n seen=""
  for n in "${NODES[@]}"; do
    if answers "$n"; then
      seen=$n
      break
    fi
  done
  if [ -z "$seen" ]; then
    echo "no node runs"
    return
  fi
  local running member
  running=$(running_nodes "$seen")
  for member in $(members "$seen" | sort); do
    if grep -qxF "$member" <<<"$running"; then
      echo "$member running"
    else
      echo "$member stopped"
    fi
  done
}

urls() {
  local n out=""
  for n in "${NODES[@]}"; do
    out+="${out:+,}$(url "$n")"
  done
  echo "$out"
}

node_arg() {
  case "${1:-}" in
    1 | 2 | 3) echo "$1" ;;
    *)
      say "expected a node number, 1 to 3 (got '${1:-}')"
      exit 2
      ;;
  esac
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  urls) urls ;;
  node) name "$(node_arg "${2:-}")" ;;
  ctl)
    n=$(node_arg "${2:-}")
    shift 2
    ctl "$n" "$@"
    ;;
  kill)
    n=$(node_arg "${2:-}")
    pid=$(pid_of "$n")
    if [ -z "$pid" ]; then
      say "$(name "$n") does not run"
      exit 1
    fi
    as_root kill -KILL "$pid"
    while alive "$pid"; do sleep 0.05; done
    say "killed $(name "$n") (pid $pid)"
    ;;
  start)
    n=$(node_arg "${2:-}")
    start_node "$n"
    wait_member "$n"
    say "$(name "$n") is back"
    ;;
  *)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
