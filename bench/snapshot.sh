#!/bin/sh
# Snapshot benchmark: internal snapshot with memory of a running 256 MiB test guest (TCG, a
# 64 MiB qcow2 disk) - create, revert, delete - under vmmd and under libvirtd, in the same run.
# vmm through one kept-alive JSON-RPC connection and through vmctl; libvirt through one virsh
# shell and through virsh per call.
. "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-10}
URI=qemu:///system
VMM_DOM=snapbench-vmm-$$
LV_DOM=snapbench-lv-$$

# lib.sh's cleanup only runs on exit: make signals exit too, and take both guests down first
# (the Python side does too; this covers it being killed).
snapshot_cleanup() {
  if [ -n "${VMMD_SOCK:-}" ] && [ -S "$VMMD_SOCK" ]; then
    "$BUILD/client/vmctl" --connect "$VMMD_SOCK" destroy "$VMM_DOM" >/dev/null 2>&1 || true
  fi
  virsh -q -c "$URI" destroy "$LV_DOM" >/dev/null 2>&1 || true
  virsh -q -c "$URI" undefine --snapshots-metadata "$LV_DOM" >/dev/null 2>&1 || true
  rm -f "/var/log/libvirt/qemu/$LV_DOM.log"
  cleanup
}
trap snapshot_cleanup EXIT
trap 'exit 130' INT TERM HUP

"$ROOT/scripts/build-test-guest.sh" "$BUILD/test-guest"
start_vmmd --drivers qemu
start_libvirtd
WORK=$(mktemp -d /tmp/vmm-bench-snapshot-XXXXXX)
DIRS="$DIRS $WORK"
chmod 755 "$WORK"

python3 "$ROOT/bench/snapshot_bench.py" --runs "$RUNS" --guest "$BUILD/test-guest" --work "$WORK" \
  --vmctl "$BUILD/client/vmctl" --socket "$VMMD_SOCK" --vmmd-state "$VMMD_DIR/state" \
  --libvirt-uri "$URI" --vmm-domain "$VMM_DOM" --libvirt-domain "$LV_DOM" > "$WORK/snapshot.json"
mv "$WORK/snapshot.json" "$RESULTS/snapshot.json"  # only a finished run replaces the last results
cat "$RESULTS/snapshot.json"
python3 "$ROOT/bench/report.py"
