#!/usr/bin/env bash
# Bring up the local dev/test infrastructure (Kafka + PostgreSQL), create the
# topics, and write infra/local.env. Idempotent; ~1-2 s when already up.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

t0=$(now_us)
need_python
# Serialise concurrent up/down runs (e.g. parallel make jobs, two terminals).
mkdir -p "$STATE_DIR"
exec 9>"$STATE_DIR/.lock"
flock -w 120 9 || die "timed out waiting for $STATE_DIR/.lock (another infra/up.sh or down.sh running?)"
"$INFRA_DIR/kafka/fetch.sh"
"$INFRA_DIR/kafka/start.sh"
"$PY" "$INFRA_DIR/kafka/topics.py" --bootstrap "$BONYCHAT_KAFKA_BOOTSTRAP" | sed 's/^/[infra] /' >&2
"$INFRA_DIR/postgres/start.sh"

# BONYCHAT_INFRA_ENV_FILE: write it elsewhere (a second, private instance: tests/faults).
env_file="$ENV_FILE"
cat >"$env_file.tmp" <<ENV
# Written by infra/up.sh; source it or load it as a dotenv file.
BONYCHAT_KAFKA_BOOTSTRAP=$BONYCHAT_KAFKA_BOOTSTRAP
BONYCHAT_KAFKA_PORT=$BONYCHAT_KAFKA_PORT
BONYCHAT_DATABASE_URL=$BONYCHAT_DATABASE_URL
BONYCHAT_PG_PORT=$BONYCHAT_PG_PORT
ENV
mv "$env_file.tmp" "$env_file"

cat >&2 <<SUMMARY
[infra] up in $(elapsed "$t0"):
  kafka     $BONYCHAT_KAFKA_BOOTSTRAP  (logs: ${KAFKA_STATE#"$ROOT_DIR"/}/server.log)
  postgres  $BONYCHAT_DATABASE_URL  (logs: ${PG_STATE#"$ROOT_DIR"/}/postgres.log)
  env       ${env_file#"$ROOT_DIR"/}
SUMMARY
