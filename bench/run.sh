#!/bin/sh
# Disposable VM benchmark: `vmctl run --rm --image test-guest -- true` against the floor (vmmd's
# exact QEMU argv for the image on a fresh overlay, launched by bench/floor.py, one guest-agent
# connection, `true` through it, QEMU killed), in pairs. Same kernel, initrd, memory and TCG.
# RUNS pairs (default 20); results in $RESULTS/run.json.
. "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-20}
"$ROOT/scripts/build-test-guest.sh" "$BUILD/test-guest"
start_vmmd --drivers qemu
WORK=$(mktemp -d /tmp/vmm-bench-run-XXXXXX)
DIRS="$DIRS $WORK"
VMCTL="$BUILD/client/vmctl --connect $VMMD_SOCK"
qemu-img create -q -f qcow2 "$WORK/disk.qcow2" 64M
echo '{"memory": "256MiB", "vcpus": 1, "boot": {"cmdline": "console=ttyS0 panic=-1 quiet"}}' > "$WORK/template.json"
$VMCTL image import test-guest "$WORK/disk.qcow2" --kernel "$BUILD/test-guest/vmlinux" \
  --initrd "$BUILD/test-guest/full.cpio" --template "$WORK/template.json" >/dev/null
python3 "$ROOT/bench/run_bench.py" --runs "$RUNS" --work "$WORK" --vmctl "$BUILD/client/vmctl" \
  --socket "$VMMD_SOCK" --vmmd-state "$VMMD_DIR/state" --out "$RESULTS/run.json"
python3 "$ROOT/bench/report.py" --summary run
