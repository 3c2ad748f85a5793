#!/bin/sh
# The OpenAPI conformance test (openapi_conformance.mjs) where Node.js is installed: skipped
# without it outside strict mode (tests/support/require.sh).
#   tests/api/openapi_conformance.sh BUILD_DIR
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../support/require.sh"
require_tool node nodejs
exec node "$HERE/openapi_conformance.mjs" "$1"
