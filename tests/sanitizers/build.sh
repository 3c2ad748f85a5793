#!/bin/sh
# Configures (once, from its preset in CMakePresets.json) and builds a sanitizer build directory
# nested in the main one: tests/sanitizers/build.sh SOURCE_DIR BUILD_DIR PRESET (asan or tsan).
# Only what its tests run and the libraries they link are built, incrementally: in asan the
# unit tests and the libFuzzer targets (fuzz/), in tsan the concurrent unit tests. CTest runs
# it as the setup fixture of the asan.* / fuzz.* / tsan.* tests (CMakeLists.txt in this
# folder). With clang it is also the check of the locking annotations (-Wthread-safety -Werror).
set -eu
SRC=$1
BUILD=$2
PRESET=$3
. "$SRC/tests/support/require.sh"
require_tool clang++ clang
probe=$(mktemp -d /tmp/vmm-sanitizer-probe.XXXXXX)
trap 'rm -rf "$probe"' EXIT
case $PRESET in
asan)
	targets="vmm_sanitizer_tests fuzz_all"
	printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' >"$probe/p.cc"
	clang++ -fsanitize=fuzzer,address,undefined "$probe/p.cc" -o "$probe/p" 2>"$probe/err" ||
		vmm_require_missing "libFuzzer and the sanitizer runtimes for clang (packages libfuzzer-14-dev, libclang-rt-14-dev): $(head -c 300 "$probe/err")"
	pkg-config --exists yaml-0.1 || vmm_require_missing "libyaml (package libyaml-dev)"
	;;
tsan)
	targets=vmm_sanitizer_tests
	printf 'int main() { return 0; }\n' >"$probe/p.cc"
	clang++ -fsanitize=thread "$probe/p.cc" -o "$probe/p" 2>"$probe/err" ||
		vmm_require_missing "the thread sanitizer runtime for clang (package libclang-rt-14-dev): $(head -c 300 "$probe/err")"
	;;
*) echo "unknown preset $PRESET" >&2; exit 2 ;;
esac

# The probe is done; exec below would skip the EXIT trap.
rm -rf "$probe"
trap - EXIT

# Configured every time (a few seconds, nothing rebuilt): a build directory made by an older
# preset picks up the current one.
cmake -S "$SRC" -B "$BUILD" --preset "$PRESET" >/dev/null
# shellcheck disable=SC2086 # two target names
exec cmake --build "$BUILD" -j "${VMM_JOBS:-$(nproc)}" --target $targets
