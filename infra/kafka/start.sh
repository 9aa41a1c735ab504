#!/usr/bin/env bash
# Start the local single-node Kafka (KRaft, broker+controller) in the
# background; formats its storage on first run only. Returns at once when it
# is already up.
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

HOST=$BONYCHAT_KAFKA_HOST
PORT=$BONYCHAT_KAFKA_PORT
CPORT=$BONYCHAT_KAFKA_CONTROLLER_PORT
PROPS="$KAFKA_STATE/server.properties"
MARKER="kafka.Kafka $PROPS"          # what our broker's command line contains
TIMEOUT="${BONYCHAT_KAFKA_START_TIMEOUT:-90}"

# Fast path: our broker runs and listens.
if pid_alive "$KAFKA_PID_FILE" "$MARKER" && port_open "$HOST" "$PORT"; then
  log "kafka already running (pid $(<"$KAFKA_PID_FILE"), $HOST:$PORT)"
  exit 0
fi

need_python

print_logs() {
  local f
  for f in "$KAFKA_STATE/kafka.out" "$KAFKA_STATE/server.log"; do
    [[ -s $f ]] || continue
    printf -- '----- last lines of %s -----\n' "$f" >&2
    tail -n 40 "$f" >&2
  done
}

if pid_alive "$KAFKA_PID_FILE" "$MARKER"; then
  pid=$(<"$KAFKA_PID_FILE")
  log "kafka (pid $pid) is running but not listening yet; waiting for it"
else
  for p in "$PORT" "$CPORT"; do
    if port_open "$HOST" "$p"; then
      die "port $HOST:$p is taken by another process (not our Kafka): stop it, or pick other ports with BONYCHAT_KAFKA_PORT / BONYCHAT_KAFKA_CONTROLLER_PORT"
    fi
  done

  JAVA="${JAVA:-${JAVA_HOME:+$JAVA_HOME/bin/}java}"
  command -v "$JAVA" >/dev/null \
    || die "java not found: Kafka needs a Java 17+ runtime (apt-get install openjdk-17-jre-headless, or set JAVA_HOME)"
  jver=$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([0-9][0-9.]*\).*/\1/p' | head -n1)
  jmajor=${jver%%.*}
  [[ $jmajor == 1 ]] && jmajor=$(cut -d. -f2 <<<"$jver")
  [[ ${jmajor:-0} -ge 17 ]] \
    || die "java '$JAVA' is version ${jver:-unknown}; Kafka 4 needs Java 17 or newer (set JAVA_HOME)"

  "$KAFKA_DIR/fetch.sh"

  mkdir -p "$KAFKA_STATE/data"
  sed -e "s|@STATE@|$KAFKA_STATE|g" -e "s|@HOST@|$HOST|g" \
      -e "s|@CONTROLLER_PORT@|$CPORT|g" -e "s|@PORT@|$PORT|g" \
      "$KAFKA_DIR/server.properties.template" >"$PROPS"

  # JIT: C1 only (TieredStopAtLevel=1). This broker shares two cores with the
  # services and PostgreSQL; C2's compiler threads took as much CPU as the broker's
  # request threads while it warmed up (1M-event backlog: 6.4 s vs 6.6 s) and kept
  # ~0.2-0.3 cores busy for minutes after it, while C1's code served the backlog at
  # the same cost (docs/runtime.md, "The broker's JIT"). Set BONYCHAT_KAFKA_JIT_OPTS=
  # (empty) for the JVM's default tiered C1+C2, as a long-lived dedicated broker wants.
  # shellcheck disable=SC2206  # word splitting of the overrides is intended
  JVM_OPTS=(${BONYCHAT_KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}
    ${BONYCHAT_KAFKA_JIT_OPTS--XX:TieredStopAtLevel=1}
    ${BONYCHAT_KAFKA_GC_OPTS--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent}
    -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$KAFKA_DIR/log4j2.xml"
    "-Dkafka.logs.dir=$KAFKA_STATE")
  CP="$KAFKA_LIBS/*"

  if [[ ! -f $KAFKA_STATE/data/meta.properties ]]; then
    # an id starting with "-" would be read by StorageTool as an option (1 draw in 64;
    # Kafka's own Uuid.randomUuid() draws again for the same reason): so do we, and a
    # saved one from such a failed start is replaced
    while [[ ! -s $KAFKA_STATE/cluster.id || $(<"$KAFKA_STATE/cluster.id") == -* ]]; do
      head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' >"$KAFKA_STATE/cluster.id"
    done
    log "formatting kafka storage (cluster id $(<"$KAFKA_STATE/cluster.id"))"
    "$JAVA" -Xmx256m "-Dlog4j2.configurationFile=$KAFKA_DIR/log4j2.xml" "-Dkafka.logs.dir=$KAFKA_STATE" \
        -cp "$CP" kafka.tools.StorageTool format --ignore-formatted \
        -t "$(<"$KAFKA_STATE/cluster.id")" -c "$PROPS" >"$KAFKA_STATE/format.log" 2>&1 \
      || { cat "$KAFKA_STATE/format.log" >&2; die "kafka storage format failed"; }
  fi

  log "starting kafka on $HOST:$PORT (controller $CPORT)"
  rm -f "$KAFKA_PID_FILE"
  # setsid: own session, so it outlives the calling shell / make / CI step.
  # The inner shell writes its own pid and then execs java, keeping that pid.
  # 9>&-: don't inherit up.sh's lock fd (it would hold the lock forever).
  # shellcheck disable=SC2016  # expanded by the inner shell
  nohup setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$KAFKA_PID_FILE" \
      "$JAVA" "${JVM_OPTS[@]}" -cp "$CP" kafka.Kafka "$PROPS" \
      >"$KAFKA_STATE/kafka.out" 2>&1 </dev/null 9>&- &
  for _ in $(seq 50); do [[ -s $KAFKA_PID_FILE ]] && break; sleep 0.1; done
  [[ -s $KAFKA_PID_FILE ]] || die "kafka did not start (no pid file)"
  pid=$(<"$KAFKA_PID_FILE")
fi

t0=$(now_us)
rc=0
"$PY" "$KAFKA_DIR/wait_ready.py" --bootstrap "$HOST:$PORT" --timeout "$TIMEOUT" --pid "$pid" || rc=$?
case $rc in
  0) log "kafka up (pid $pid) after $(elapsed "$t0")" ;;
  2) print_logs; rm -f "$KAFKA_PID_FILE"; die "kafka exited during startup (logs above, state in $KAFKA_STATE)" ;;
  *) print_logs
     kill "$pid" 2>/dev/null || true
     die "kafka did not answer metadata on $HOST:$PORT within ${TIMEOUT}s (logs above); stopped it" ;;
esac
