#!/bin/sh
# Runs every fuzz target (or the ones named) for SECONDS each, one after another, at the lowest
# priority: fuzz/campaign.sh SECONDS [TARGET...]. Waits while benchmarks hold the heavy lock
# (/tmp/vmm-heavy.lock) before each target, so that timing-sensitive runs are not disturbed.
# Prints one line per target: executions, seconds, and whether it found something.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
SECS=$1
shift
if [ $# -eq 0 ]; then
	set -- $(sed -n '/set(VMM_FUZZ_TARGETS/,/)/p' "$HERE/targets.cmake" | tr -d '()' | sed 's/set//; s/VMM_FUZZ_TARGETS//')
fi
BUILD=${VMM_FUZZ_BUILD:-$ROOT/build/asan}
for t in "$@"; do
	while ! flock -n /tmp/vmm-heavy.lock true; do sleep 10; done
	start=$(date +%s)
	if nice -n 19 "$HERE/run.sh" "$t" "$SECS" >/dev/null 2>&1; then result=clean; else result="FINDING (see $BUILD/artifacts/$t/)"; fi
	execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$BUILD/logs/$t.log" | tail -1 | awk '{print $2}')
	echo "$t execs=${execs:-?} seconds=$(( $(date +%s) - start )) $result"
done
