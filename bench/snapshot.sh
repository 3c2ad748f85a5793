#!/bin/sh
# Snapshot benchmark: internal snapshot with memory of a running 256 MiB test guest (TCG, a
# 64 MiB qcow2 disk) - create, revert, delete - under vmmd and under libvirtd, in the same run.
# vmm through one kept-alive JSON-RPC connection and through vmctl; libvirt through one virsh
# shell and through virsh per call.
. "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-20}
URI=qemu:///system
VMM_DOM=vmmbench-snap-$$
LV_DOM=vmmbench-snap-lv-$$

# Both guests go down before lib.sh's cleanup (the Python side does this too; this covers it
# being killed). lib.sh turns signals into an exit.
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

"$ROOT/scripts/build-test-guest.sh" "$BUILD/test-guest"
start_vmmd --drivers qemu
start_libvirtd
WORK=$(mktemp -d /tmp/vmm-bench-snapshot-XXXXXX)
DIRS="$DIRS $WORK"
chmod 755 "$WORK"

python3 "$ROOT/bench/snapshot_bench.py" --runs "$RUNS" --guest "$BUILD/test-guest" --work "$WORK" \
  --vmctl "$BUILD/client/vmctl" --socket "$VMMD_SOCK" --vmmd-state "$VMMD_DIR/state" \
  --libvirt-uri "$URI" --vmm-domain "$VMM_DOM" --libvirt-domain "$LV_DOM" --out "$RESULTS/snapshot.json"
python3 "$ROOT/bench/report.py" --summary snapshot
