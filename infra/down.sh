#!/usr/bin/env bash
# Stop the local Kafka and PostgreSQL (data is kept).
#   infra/down.sh --purge   also deletes infra/.state (all data) and local.env
#                           (BONYCHAT_INFRA_STATE / BONYCHAT_INFRA_ENV_FILE: those instead)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

purge=0
for arg in "$@"; do
  case $arg in
    --purge) purge=1 ;;
    -h|--help) sed -n '2,3s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument: $arg (usage: infra/down.sh [--purge])" ;;
  esac
done

if [[ -d $STATE_DIR ]]; then exec 9>"$STATE_DIR/.lock"; flock -w 120 9 || die "timed out waiting for $STATE_DIR/.lock (another infra/up.sh or down.sh running?)"; fi

rc=0
"$INFRA_DIR/kafka/stop.sh" || rc=1
"$INFRA_DIR/postgres/stop.sh" || rc=1
[[ $rc -eq 0 ]] || die "could not stop everything (see above)"

if [[ $purge -eq 1 ]]; then
  log "purging $STATE_DIR and ${ENV_FILE#"$ROOT_DIR"/}"
  # infra/.state/pg is a symlink to /var/tmp/... when postgres' OS user could
  # not reach the repo path (see postgres/start.sh)
  if [[ -L $STATE_DIR/pg ]]; then rm -rf "$(readlink -f "$STATE_DIR/pg")"; fi
  rm -rf "$STATE_DIR" "$ENV_FILE"
  # socket dir used when the state path is too long for a unix socket
  rm -rf "/tmp/bonychat-pg-$BONYCHAT_PG_PORT"
fi
