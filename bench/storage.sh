#!/bin/sh
# Storage benchmark: volume create, linked and full clone, delete, and refresh and list of a
# pool holding 1,000 volumes, on vmmd's dir pool and on a libvirt dir pool over a temporary
# directory, in the same run. vmm through one kept-alive JSON-RPC connection and through
# vmctl; libvirt through one virsh shell and through virsh per call.
. "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-20}
FULL_RUNS=${FULL_RUNS:-$RUNS}
BULK=${BULK:-1000}
BULK_RUNS=${BULK_RUNS:-10}
URI=qemu:///system
LV_POOL=vmmbench-storage-$$

# Our libvirt pool goes before lib.sh's cleanup (it is transient: destroying it forgets it; the
# files go with the temp dir). lib.sh turns signals into an exit.
LV_POOL_MADE=""
storage_cleanup() {
  [ -n "$LV_POOL_MADE" ] && virsh -q -c "$URI" pool-destroy "$LV_POOL" >/dev/null 2>&1 || true
  cleanup
}
trap storage_cleanup EXIT

start_vmmd --drivers test
start_libvirtd
WORK=$(mktemp -d /tmp/vmm-bench-storage-XXXXXX)
DIRS="$DIRS $WORK"
mkdir "$WORK/pool"
virsh -q -c "$URI" pool-create-as "$LV_POOL" dir --target "$WORK/pool" >/dev/null
LV_POOL_MADE=1

python3 "$ROOT/bench/storage_bench.py" --runs "$RUNS" --full-runs "$FULL_RUNS" --bulk "$BULK" --bulk-runs "$BULK_RUNS" \
  --vmctl "$BUILD/client/vmctl" --socket "$VMMD_SOCK" --vmm-pool-dir "$VMMD_DIR/state/pools/default" \
  --libvirt-uri "$URI" --libvirt-pool "$LV_POOL" --libvirt-pool-dir "$WORK/pool" --work "$WORK" \
  --out "$RESULTS/storage.json"
python3 "$ROOT/bench/report.py" --summary storage
