#!/usr/bin/env bash
# Fetch the pinned Chart.js UMD build from npm into services/http/static/vendor/,
# with its licence. The result is committed so the pages work offline (no CDN);
# run this again only to change the version. Needs npm (or curl) and tar.
set -euo pipefail
VERSION="${CHARTJS_VERSION:-4.5.1}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$HERE/services/http/static/vendor"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
if command -v npm >/dev/null; then
    npm pack --silent "chart.js@$VERSION" >/dev/null
else
    curl -fsSLO "https://registry.npmjs.org/chart.js/-/chart.js-$VERSION.tgz"
fi
tar -xzf "chart.js-$VERSION.tgz"
mkdir -p "$DEST"
cp package/dist/chart.umd.min.js "$DEST/chart.umd.min.js"
cp package/LICENSE.md "$DEST/chart.js-LICENSE.md"
printf 'chart.js %s (npm), dist/chart.umd.min.js; MIT licence in chart.js-LICENSE.md\n' \
    "$VERSION" > "$DEST/VERSIONS"
echo "chart.js $VERSION -> $DEST"
