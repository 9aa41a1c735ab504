#!/usr/bin/env bash
# Start the local PostgreSQL cluster (initdb on first run), and make sure the
# 'bonychat' superuser role and database exist. Quick when already running.
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=common.sh
source "$INFRA_DIR/postgres/common.sh"

need_pg_server
PORT=$BONYCHAT_PG_PORT
PSQL="${PSQL:-$(command -v psql || echo "$PG_BIN/psql")}"
[[ -x $PSQL ]] || die "psql not found (apt-get install postgresql-client)"

if ! pg_running; then
  if [[ $EUID -eq 0 ]] && ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
    log "creating system user $PG_OS_USER to run PostgreSQL (it refuses to run as root)"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$PG_OS_USER"
  fi
  if [[ $EUID -eq 0 && ! -e $PG_STATE ]]; then
    mkdir -p "$STATE_DIR"
    if ! as_pg test -x "$STATE_DIR"; then
      # e.g. a clone inside a 0700 directory: the cluster lives elsewhere.
      ext="/var/tmp/bonychat-pg-$(printf '%s' "$STATE_DIR" | sha256sum | cut -c1-12)"
      log "user $PG_OS_USER cannot reach $STATE_DIR: keeping the cluster in $ext (symlinked from $PG_STATE)"
      mkdir -p "$ext"
      ln -sfn "$ext" "$PG_STATE"
      pg_paths
    fi
  fi
  mkdir -p "$PG_STATE" "$PG_SOCKET_DIR"
  if [[ $EUID -eq 0 ]]; then
    chown "$PG_OS_USER:" "$PG_STATE" "$PG_SOCKET_DIR"
    [[ -d $PGDATA_DIR ]] && chown -R "$PG_OS_USER:" "$PGDATA_DIR"
    as_pg test -w "$PG_STATE" \
      || die "user $PG_OS_USER cannot write $PG_STATE (a parent directory is not searchable by it?): make the repo path world-searchable (chmod o+x) or set BONYCHAT_INFRA_STATE"
  fi

  if [[ ! -f $PGDATA_DIR/PG_VERSION ]]; then
    log "initdb $PGDATA_DIR (as $PG_OS_USER)"
    rm -rf "$PGDATA_DIR"
    as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres -A trust -E UTF8 --locale=C \
        >"$PG_STATE/initdb.log" 2>&1 \
      || { cat "$PG_STATE/initdb.log" >&2; die "initdb failed"; }
    echo "include_if_exists = 'bonychat.conf'" | as_pg tee -a "$PGDATA_DIR/postgresql.conf" >/dev/null
  fi

  # WAL compression (of the full-page images written after each checkpoint): lz4
  # when this server build has it (PostgreSQL 15+ built --with-lz4), else pglz.
  wal_compression=on
  if [[ $(<"$PGDATA_DIR/PG_VERSION") -ge 15 ]] \
      && ldd "$PG_BIN/postgres" 2>/dev/null | grep -q liblz4; then
    wal_compression=lz4
  fi

  # Regenerated on every start, so edits here (and a new port) take effect: an
  # existing cluster picks the settings up at its next start.
  as_pg tee "$PGDATA_DIR/bonychat.conf" >/dev/null <<CONF
# Written by infra/postgres/start.sh on every start: edit that script, not this.
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$PG_SOCKET_DIR'
max_connections = 100
shared_buffers = 256MB
fsync = on
synchronous_commit = off
wal_level = replica
# Checkpoints (docs/runtime.md, "PostgreSQL settings"): with the default 1GB of WAL a
# 1M-event backlog forced one every 20-25 s, each followed by full-page images of the
# pages touched again, and the 5,000/s latency phase ran inside one. 4GB / 15min: none
# in a 1M-event run; min_wal_size keeps recycled segments instead of new files.
max_wal_size = 4GB
min_wal_size = 1GB
checkpoint_timeout = 15min
checkpoint_completion_target = 0.9
wal_compression = $wal_compression
logging_collector = off
log_min_messages = warning
log_timezone = 'UTC'
timezone = 'UTC'
CONF

  if port_open 127.0.0.1 "$PORT"; then
    die "port 127.0.0.1:$PORT is taken by another process: stop it or set BONYCHAT_PG_PORT"
  fi
  log "starting postgres on 127.0.0.1:$PORT"
  t0=$(now_us)
  # -s: quiet; -w: wait until it accepts connections; 9>&-: see kafka/start.sh.
  if ! as_pg "$PG_CTL" start -s -w -t 60 -D "$PGDATA_DIR" -l "$PG_STATE/postgres.log" 9>&-; then
    tail -n 40 "$PG_STATE/postgres.log" >&2 || true
    die "postgres failed to start (log above: $PG_STATE/postgres.log)"
  fi
  log "postgres up after $(elapsed "$t0")"
else
  log "postgres already running (127.0.0.1:$PORT)"
fi

# Idempotent role + database (one psql round trip when both exist).
"$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$PORT" -U postgres -d postgres >/dev/null <<SQL
SELECT 'CREATE ROLE $BONYCHAT_PG_USER LOGIN SUPERUSER'
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$BONYCHAT_PG_USER') \gexec
SELECT 'CREATE DATABASE $BONYCHAT_PG_DB OWNER $BONYCHAT_PG_USER'
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$BONYCHAT_PG_DB') \gexec
SQL
