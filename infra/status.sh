#!/usr/bin/env bash
# Print whether the local Kafka and PostgreSQL are up.
# Exit status: 0 if both are up, 1 otherwise.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=postgres/common.sh
source "$INFRA_DIR/postgres/common.sh"

rc=0
if pid_alive "$KAFKA_PID_FILE" "kafka.Kafka $KAFKA_STATE/server.properties"; then
  if port_open "$BONYCHAT_KAFKA_HOST" "$BONYCHAT_KAFKA_PORT"; then
    echo "kafka:    up    $BONYCHAT_KAFKA_BOOTSTRAP (pid $(<"$KAFKA_PID_FILE"))"
  else
    echo "kafka:    starting/unhealthy, pid $(<"$KAFKA_PID_FILE") alive but $BONYCHAT_KAFKA_BOOTSTRAP closed"; rc=1
  fi
else
  echo "kafka:    down"; rc=1
fi
if pg_running && port_open "$BONYCHAT_PG_HOST" "$BONYCHAT_PG_PORT"; then
  echo "postgres: up    $BONYCHAT_DATABASE_URL"
else
  echo "postgres: down"; rc=1
fi
exit $rc
