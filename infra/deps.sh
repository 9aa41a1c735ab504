#!/usr/bin/env bash
# Debian packages the tests need, installed when missing. The ONE place for
# them: add a line to DEPS (command it provides, Debian package) and nothing
# else. Idempotent: nothing is fetched when every command is already there.
#   kcat  librdkafka's command-line client: integration tests publish with it
#         (a producer that is not ours, with gzip/snappy/lz4/zstd compression)
#   promtool  Prometheus's checker: /metrics exposition, alert rules and their unit
#         tests (infra/prometheus/); the package's server is not used
#   chromium  the Reports/Dashboard browser tests: Playwright drives the system
#         Chromium (Playwright's own browser download is not used)
set -euo pipefail

DEPS=(
  "kcat kcat"
  "promtool prometheus"
  "chromium chromium"
)

missing=()
for dep in "${DEPS[@]}"; do
  read -r cmd pkg <<<"$dep"
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

printf '[deps] installing Debian packages: %s\n' "${missing[*]}" >&2
if [[ $(id -u) -ne 0 ]]; then
  SUDO=sudo
  command -v sudo >/dev/null 2>&1 \
    || { printf '[deps] ERROR: not root and no sudo: install %s yourself\n' "${missing[*]}" >&2; exit 1; }
else
  SUDO=
fi
# Serialise concurrent runs (two make test at once): apt holds its own lock, but
# a second run would fail on it instead of waiting.
exec 9>/tmp/bonychat-deps.lock
flock -w 600 9
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for dep in "${DEPS[@]}"; do
  read -r cmd pkg <<<"$dep"
  command -v "$cmd" >/dev/null 2>&1 || { printf '[deps] ERROR: %s did not provide %s\n' "$pkg" "$cmd" >&2; exit 1; }
done
