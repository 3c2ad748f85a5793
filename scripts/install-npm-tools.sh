#!/bin/sh
# Installs the npm packages the API tests use (tests/api/package.json, pinned by its
# package-lock.json) into BUILD_DIR/npm-tools with `npm ci`. Idempotent: nothing is fetched
# while the installed lock file matches the checked-in one.
#   scripts/install-npm-tools.sh BUILD_DIR
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:?usage: scripts/install-npm-tools.sh BUILD_DIR}
DEST="$BUILD/npm-tools"
# As a test fixture: npm missing is a skip, or a failure naming it in strict mode (CI).
. "$ROOT/tests/support/require.sh"
require_tool npm npm
mkdir -p "$DEST"
if [ -d "$DEST/node_modules" ] && cmp -s "$ROOT/tests/api/package-lock.json" "$DEST/node_modules/.vmm-lock.json"; then
  exit 0
fi
cp "$ROOT/tests/api/package.json" "$ROOT/tests/api/package-lock.json" "$DEST/"
(cd "$DEST" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
cp "$ROOT/tests/api/package-lock.json" "$DEST/node_modules/.vmm-lock.json"
