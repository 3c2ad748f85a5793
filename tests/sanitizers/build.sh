#!/bin/sh
# Configures (once, from its preset in CMakePresets.json) and builds a sanitizer build directory
# nested in the main one: tests/sanitizers/build.sh SOURCE_DIR BUILD_DIR PRESET (asan or tsan).
# Only the unit tests it runs and the libraries they link are built, incrementally. CTest runs
# it as the setup fixture of the asan.* / tsan.* tests (CMakeLists.txt in this folder). With
# clang it is also the check of the locking annotations (-Wthread-safety -Werror).
set -eu
SRC=$1
BUILD=$2
PRESET=$3
. "$SRC/tests/support/require.sh"
require_tool clang++ clang
case $PRESET in
asan) flag=address,undefined ;;
tsan) flag=thread ;;
*) echo "unknown preset $PRESET" >&2; exit 2 ;;
esac
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'int main() { return 0; }\n' >"$probe/p.cc"
clang++ -fsanitize=$flag "$probe/p.cc" -o "$probe/p" 2>"$probe/err" ||
	vmm_require_missing "the $flag sanitizer runtime for clang (package libclang-rt-14-dev): $(head -c 300 "$probe/err")"

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
	cmake -S "$SRC" -B "$BUILD" --preset "$PRESET" >/dev/null
fi
exec cmake --build "$BUILD" -j "${VMM_JOBS:-$(nproc)}" --target vmm_sanitizer_tests
