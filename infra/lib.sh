# shellcheck shell=bash disable=SC2034  # variables are used by the sourcing scripts
# Shared helpers for infra/*.sh. Source it; don't execute it.
#   INFRA_DIR / ROOT_DIR are resolved from this file's location, so callers work
#   from any cwd. All settings can be overridden through the environment.

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT_DIR="$(cd "$INFRA_DIR/.." && pwd -P)"
STATE_DIR="${BONYCHAT_INFRA_STATE:-$INFRA_DIR/.state}"
# Where up.sh writes the settings to use (and down.sh --purge deletes them): a
# private instance (the fault harness) keeps its own file beside its state.
ENV_FILE="${BONYCHAT_INFRA_ENV_FILE:-$INFRA_DIR/local.env}"

BONYCHAT_KAFKA_HOST=127.0.0.1
BONYCHAT_KAFKA_PORT="${BONYCHAT_KAFKA_PORT:-19092}"
BONYCHAT_KAFKA_CONTROLLER_PORT="${BONYCHAT_KAFKA_CONTROLLER_PORT:-19093}"
BONYCHAT_KAFKA_BOOTSTRAP="$BONYCHAT_KAFKA_HOST:$BONYCHAT_KAFKA_PORT"
BONYCHAT_PG_HOST=127.0.0.1
BONYCHAT_PG_PORT="${BONYCHAT_PG_PORT:-15432}"
BONYCHAT_PG_DB=bonychat
BONYCHAT_PG_USER=bonychat
BONYCHAT_DATABASE_URL="postgresql://$BONYCHAT_PG_USER@$BONYCHAT_PG_HOST:$BONYCHAT_PG_PORT/$BONYCHAT_PG_DB"

KAFKA_DIR="$INFRA_DIR/kafka"
KAFKA_LIBS="${BONYCHAT_KAFKA_LIBS:-$KAFKA_DIR/libs}"
KAFKA_STATE="$STATE_DIR/kafka"
KAFKA_PID_FILE="$KAFKA_STATE/kafka.pid"
PG_STATE="$STATE_DIR/pg"
PGDATA_DIR="$PG_STATE/data"

# Python with aiokafka (the project's venv unless PY is set; relative paths
# are taken from the repo root, so `make PY=.venv/bin/python` works).
PY="${PY:-$ROOT_DIR/.venv/bin/python}"
case "$PY" in /*) ;; */*) PY="$ROOT_DIR/$PY" ;; esac

log() { printf '[infra] %s\n' "$*" >&2; }
die() { printf '[infra] ERROR: %s\n' "$*" >&2; exit 1; }

# port_open HOST PORT: true if something accepts TCP connections there.
port_open() {
  # shellcheck disable=SC2016  # expanded by the inner shell
  timeout 1 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# pid_alive PIDFILE PATTERN: true if the pid in PIDFILE runs and its command
# line contains PATTERN (guards against pid reuse after a reboot).
pid_alive() {
  local pidfile=$1 pattern=$2 pid
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pattern"
}

need_python() {
  [[ -x $PY ]] || die "python not found at $PY: create the project's virtualenv first, or set PY=/path/to/python"
  "$PY" -c 'import aiokafka' 2>/dev/null \
    || die "$PY cannot import aiokafka: install the project's dependencies into it"
}

# now_us: microseconds since the epoch; elapsed START_US: "1.23s" since then.
now_us() { local t=${EPOCHREALTIME/[.,]/}; echo "$t"; }
elapsed() {
  local us=$(( $(now_us) - $1 ))
  printf '%d.%02ds' $((us / 1000000)) $((us % 1000000 / 10000))
}
