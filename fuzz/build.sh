#!/bin/sh
# Configures (once) and builds the libFuzzer targets in their own build directory, nested in
# the main one: fuzz/build.sh SOURCE_DIR FUZZ_BUILD_DIR. Incremental: a second run rebuilds only
# what changed. CTest runs it as the setup fixture of the fuzz.* tests (tests.cmake).
set -eu
SRC=$1
BUILD=$2
. "$SRC/tests/support/require.sh"
require_tool clang++ clang
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' >"$probe/p.cc"
clang++ -fsanitize=fuzzer,address,undefined "$probe/p.cc" -o "$probe/p" 2>"$probe/err" ||
	vmm_require_missing "libFuzzer and the sanitizer runtimes for clang (packages libfuzzer-14-dev, libclang-rt-14-dev): $(head -c 300 "$probe/err")"
pkg-config --exists yaml-0.1 || vmm_require_missing "libyaml (package libyaml-dev)"

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
	# -O1 with line tables: what libFuzzer's documentation recommends, and half the compile
	# time of -O2 -g for the same coverage.
	cmake -S "$SRC" -B "$BUILD" -DVMM_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		"-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" -DVMM_GUESTFS=OFF >/dev/null
fi
exec cmake --build "$BUILD" -j "${VMM_JOBS:-$(nproc)}" --target fuzz_all
