# shellcheck shell=bash
# PostgreSQL helpers shared by start.sh / stop.sh / status.sh. Source after lib.sh.

# Directory holding the server binaries: $PG_BINDIR, else the one of initdb
# on PATH, else the newest Debian-style /usr/lib/postgresql/*/bin. Empty if
# none is found (start.sh then fails with a hint; stop/status see "down").
find_pg_bindir() {
  local d best=""
  if [[ -n ${PG_BINDIR:-} ]]; then echo "$PG_BINDIR"; return; fi
  if d=$(command -v initdb 2>/dev/null); then
    dirname "$(readlink -f "$d")"; return
  fi
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x $d/initdb ]] && best=$(printf '%s\n%s\n' "$best" "$d" | sort -V | tail -n1)
  done
  echo "$best"
}
PG_BIN=$(find_pg_bindir)
PG_CTL="$PG_BIN/pg_ctl"
need_pg_server() {
  [[ -n $PG_BIN && -x $PG_BIN/initdb && -x $PG_CTL ]] \
    || die "initdb/pg_ctl (PostgreSQL server) not found: install it (apt-get install postgresql) or set PG_BINDIR to the directory holding initdb, pg_ctl and postgres"
}

# The server must not run as root: use the 'postgres' system user if present,
# else a dedicated 'bonychatpg' one (created on demand by start.sh).
if [[ $EUID -eq 0 ]]; then
  if [[ -n ${BONYCHAT_PG_OS_USER:-} ]]; then PG_OS_USER=$BONYCHAT_PG_OS_USER
  elif id -u postgres >/dev/null 2>&1; then PG_OS_USER=postgres
  else PG_OS_USER=bonychatpg
  fi
else
  PG_OS_USER=$(id -un)
fi

as_pg() {
  if [[ $EUID -eq 0 ]]; then runuser -u "$PG_OS_USER" -- "$@"; else "$@"; fi
}

# PG_STATE may be a symlink to a dir outside the repo (see start.sh: used when
# the server's OS user cannot traverse the repo path); work on the real path.
# Unix socket dir: in the state dir unless that path is too long for a socket
# (108 bytes on Linux), then a per-port dir under /tmp.
pg_paths() {
  [[ -L $PG_STATE ]] && PG_STATE=$(readlink -f "$PG_STATE")
  PGDATA_DIR="$PG_STATE/data"
  PG_SOCKET_DIR="$PG_STATE/run"
  if (( ${#PG_SOCKET_DIR} + ${#BONYCHAT_PG_PORT} + 12 > 100 )); then
    PG_SOCKET_DIR="/tmp/bonychat-pg-$BONYCHAT_PG_PORT"
  fi
}
pg_paths

pg_running() { [[ -x $PG_CTL && -f $PGDATA_DIR/PG_VERSION ]] && as_pg "$PG_CTL" status -D "$PGDATA_DIR" >/dev/null 2>&1; }
