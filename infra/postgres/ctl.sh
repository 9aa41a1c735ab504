#!/usr/bin/env bash
# pg_ctl on the local cluster, as the server's OS user: fault tests use it
# (tests/faults) on their own instance, e.g. `infra/postgres/ctl.sh restart -m immediate`.
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=common.sh
source "$INFRA_DIR/postgres/common.sh"

need_pg_server
[[ $# -ge 1 ]] || die "usage: infra/postgres/ctl.sh start|stop|restart [pg_ctl options]"
action=$1; shift
as_pg "$PG_CTL" "$action" -s -w -t 60 -D "$PGDATA_DIR" -l "$PG_STATE/postgres.log" "$@" 9>&-
