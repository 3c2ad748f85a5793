#!/bin/sh
# QEMU start benchmark: spawn -> first console marker of the test guest, three ways in the
# same run, paired: the bare QEMU floor (the argv vmmd builds, started by hand), vmctl start
# through vmmd, and virsh start through libvirtd. Same kernel, initrd, memory and TCG.
. "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-10}
"$ROOT/scripts/build-test-guest.sh" "$BUILD/test-guest"
start_vmmd --drivers qemu
start_libvirtd
WORK=$(mktemp -d /tmp/vmm-bench-start-XXXXXX)
DIRS="$DIRS $WORK"
chmod 755 "$WORK"
python3 "$ROOT/bench/start_bench.py" --runs "$RUNS" --guest "$BUILD/test-guest" --work "$WORK" \
  --vmctl "$BUILD/client/vmctl" --socket "$VMMD_SOCK" --vmmd-state "$VMMD_DIR/state" > "$RESULTS/start.json"
cat "$RESULTS/start.json"
python3 "$ROOT/bench/report.py"
