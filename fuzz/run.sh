#!/bin/sh
# Runs one fuzz target: fuzz/run.sh TARGET SECONDS [--ci] [libFuzzer flags...]
#
# Campaign (default): the working corpus build/asan/corpus/TARGET grows across runs (new inputs
# go there; the checked-in seeds in fuzz/corpus/TARGET are read, never written); crashes land in
# build/asan/artifacts/TARGET/; the log in build/asan/logs/TARGET.log (build/asan: the
# ASan+UBSan build that holds the fuzz targets and the asan.* unit tests).
# --ci: the short run of the test suite: a fresh working corpus, every seed (regression inputs
# included) run first, then SECONDS of fuzzing; the exit status is libFuzzer's.
# VMM_FUZZ_BUILD overrides build/asan. Flags in fuzz/options/TARGET are added (one per line).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
[ $# -ge 2 ] || { echo "usage: fuzz/run.sh TARGET SECONDS [--ci] [libFuzzer flags...]" >&2; exit 2; }
TARGET=$1
SECONDS_=$2
shift 2
CI_RUN=0
if [ "${1:-}" = --ci ]; then CI_RUN=1; shift; fi
BUILD=${VMM_FUZZ_BUILD:-$ROOT/build/asan}
BIN=$BUILD/fuzz/fuzz_$TARGET
[ -x "$BIN" ] || { echo "run.sh: $BIN is not built (tests/sanitizers/build.sh $ROOT $BUILD asan)" >&2; exit 1; }
SEEDS=$HERE/corpus/$TARGET
[ -d "$SEEDS" ] || { echo "run.sh: no seed corpus $SEEDS" >&2; exit 1; }

# libFuzzer's own exit status for a finding is 77, which CTest reads as "skipped": use 1.
set -- -max_total_time="$SECONDS_" -print_final_stats=1 -error_exitcode=1 -timeout_exitcode=1 "$@"
[ -f "$HERE/dict/$TARGET.dict" ] && set -- -dict="$HERE/dict/$TARGET.dict" "$@"
if [ -f "$HERE/options/$TARGET" ]; then
	# shellcheck disable=SC2046
	set -- $(grep -v '^#' "$HERE/options/$TARGET") "$@"
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_stack_use_after_return=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# The harnesses' own directories go under TMPDIR, removed here also when a finding aborts the
# target. 0711: the tar target's unprivileged tar must reach its sandbox inside by path.
RUN_TMP=$(mktemp -d /tmp/vmm-fuzz-$TARGET-XXXXXX)
trap 'rm -rf "$RUN_TMP"' EXIT
chmod 0711 "$RUN_TMP"
mkdir -m 0711 "$RUN_TMP/tmp"
export TMPDIR="$RUN_TMP/tmp"

if [ $CI_RUN = 1 ]; then
	WORK=$RUN_TMP
	mkdir -p "$WORK/corpus" "$WORK/artifacts"
	set +e
	"$BIN" "$@" -artifact_prefix="$WORK/artifacts/" "$WORK/corpus" "$SEEDS" >"$WORK/log" 2>&1
	status=$?
	set -e
	tail -n 60 "$WORK/log"
	for f in "$WORK/artifacts"/*; do
		[ -f "$f" ] || continue
		echo "run.sh: $TARGET: failing input $(basename "$f"): $(od -An -c "$f" | tr -s ' ' | head -c 600)" >&2
		[ "$status" = 0 ] && status=1
	done
	exit $status
fi
mkdir -p "$BUILD/corpus/$TARGET" "$BUILD/artifacts/$TARGET" "$BUILD/logs"
LOG=$BUILD/logs/$TARGET.log
echo "run.sh: $TARGET for ${SECONDS_}s, log $LOG" >&2
set +e
"$BIN" "$@" -artifact_prefix="$BUILD/artifacts/$TARGET/" "$BUILD/corpus/$TARGET" "$SEEDS" >"$LOG" 2>&1
status=$?
set -e
grep -E '^(#[0-9]+ *DONE|stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs)' "$LOG" >&2 || true
[ $status = 0 ] || { echo "run.sh: $TARGET failed (exit $status); see $LOG and $BUILD/artifacts/$TARGET/" >&2; tail -n 40 "$LOG" >&2; }
exit $status
