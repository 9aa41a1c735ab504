#!/usr/bin/env bash
# Download the Kafka broker jars (and their runtime deps) from Maven Central
# into infra/kafka/libs/, unless they are already there for this pom.xml.
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

POM="$KAFKA_DIR/pom.xml"
STAMP="$KAFKA_LIBS/.fetched"
kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")
want="kafka=$kafka_version pom-sha256=$(sha256sum "$POM" | cut -d' ' -f1)"

if [[ -f $STAMP && "$(<"$STAMP")" == "$want" ]]; then
  exit 0
fi

MVN="${MVN:-mvn}"
command -v "$MVN" >/dev/null \
  || die "'$MVN' (Apache Maven) not found: it is needed once to download Kafka $kafka_version from Maven Central (apt-get install maven, or set MVN=/path/to/mvn)"

log "fetching Kafka $kafka_version jars with Maven into ${KAFKA_LIBS#"$ROOT_DIR"/} ..."
t0=$(now_us)
tmp="$KAFKA_LIBS.tmp.$$"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
# -B: no colours/progress; run from the pom's dir so no stray files land in cwd.
if ! (cd "$KAFKA_DIR" && "$MVN" -B -q -f "$POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$tmp.log" 2>&1); then
  cat "$tmp.log" >&2 || true
  rm -f "$tmp.log"
  die "Maven could not fetch Kafka $kafka_version (see output above)"
fi
rm -f "$tmp.log"
ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "Maven ran but no kafka_2.13 jar landed in $tmp"
printf '%s\n' "$want" >"$tmp/.fetched"
rm -rf "$KAFKA_LIBS"
mv "$tmp" "$KAFKA_LIBS"
log "fetched $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars in $(elapsed "$t0")"
