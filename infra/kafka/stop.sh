#!/usr/bin/env bash
# Stop the local Kafka: SIGTERM (controlled shutdown), SIGKILL after a timeout.
# Idempotent; keeps the data.
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

MARKER="kafka.Kafka $KAFKA_STATE/server.properties"
TIMEOUT="${BONYCHAT_KAFKA_STOP_TIMEOUT:-30}"

if ! pid_alive "$KAFKA_PID_FILE" "$MARKER"; then
  rm -f "$KAFKA_PID_FILE"
  log "kafka not running"
  exit 0
fi
pid=$(<"$KAFKA_PID_FILE")
log "stopping kafka (pid $pid)"
kill -TERM "$pid" 2>/dev/null || true
for _ in $(seq $((TIMEOUT * 10))); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
  log "kafka still running after ${TIMEOUT}s: killing it"
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
fi
rm -f "$KAFKA_PID_FILE"
log "kafka stopped"
