#!/bin/sh
# The two entry points of the README:
#   scripts/dev.sh run    install dependencies, build, run vmmd in the foreground with defaults
#   scripts/dev.sh test   install dependencies, build, run every test in strict mode: a test that
#                         cannot run because a tool, root, the test guest or the libguestfs
#                         appliance is missing fails and names it (VMM_TEST_STRICT=1; set
#                         VMM_TEST_STRICT=0 to get CTest's "Skipped" instead)
# One build directory (build/), built incrementally; test artefacts are cached under it.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${VMM_BUILD_DIR:-$ROOT/build}
JOBS=${VMM_JOBS:-$(nproc)}

build() {
  scripts/install-deps.sh
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD" -j "$JOBS"
}

case "${1:-}" in
  run)
    shift
    build
    exec "$BUILD/app/vmmd" "$@"
    ;;
  test)
    shift
    build
    cd "$BUILD"
    export VMM_TEST_STRICT="${VMM_TEST_STRICT:-1}"
    # Everything, the clang-instrumented tests included (the unit tests under ASan+UBSan and
    # TSan, the fuzz targets' short runs: two more builds of the libraries, nested in build/).
    # VMM_TEST_INSTRUMENTED=0 leaves those out for a quicker local run.
    if [ "${VMM_TEST_INSTRUMENTED:-1}" = 0 ]; then
      set -- -LE '^(fuzz|asan|tsan)$' "$@"
    fi
    # -j2: only the fuzz targets' short runs share the machine, two at a time; every other
    # test runs alone (RUN_SERIAL, tests/CMakeLists.txt).
    exec ctest --output-on-failure --timeout 1200 -j2 "$@"
    ;;
  build)
    build
    ;;
  *)
    echo "usage: scripts/dev.sh run [vmmd options] | test [ctest options] | build" >&2
    exit 2
    ;;
esac
