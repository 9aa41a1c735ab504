#!/usr/bin/env bash
# Stop the local PostgreSQL: fast shutdown, immediate after a timeout.
# Idempotent; keeps the data.
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=common.sh
source "$INFRA_DIR/postgres/common.sh"

if ! pg_running; then
  log "postgres not running"
  exit 0
fi
log "stopping postgres"
if ! as_pg "$PG_CTL" stop -s -D "$PGDATA_DIR" -m fast -w -t "${BONYCHAT_PG_STOP_TIMEOUT:-30}"; then
  log "fast shutdown timed out: immediate shutdown"
  as_pg "$PG_CTL" stop -s -D "$PGDATA_DIR" -m immediate -w -t 30
fi
log "postgres stopped"
