#!/bin/sh
# QEMU start benchmark: issuing a start -> the test guest's marker on its serial console, in
# pairs: the floor (vmmd's exact QEMU argv and inherited descriptors, launched by bench/floor.py),
# `vmctl start` through vmmd (QEMU confined), the same through a vmmd whose QEMU runs as root, and
# `virsh start` through libvirtd. Same kernel, initrd, memory,
# vCPUs and TCG. RUNS pairs (default 20); results in $RESULTS/start.json.
. "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-20}
"$ROOT/scripts/build-test-guest.sh" "$BUILD/test-guest"
# A second vmmd whose QEMU runs as root in the host's namespaces: the same work but the confinement.
start_vmmd --drivers qemu --qemu-unprivileged no
ROOT_SOCK=$VMMD_SOCK
ROOT_STATE=$VMMD_DIR/state
start_vmmd --drivers qemu
start_libvirtd
WORK=$(mktemp -d /tmp/vmm-bench-start-XXXXXX)
DIRS="$DIRS $WORK"
chmod 755 "$WORK"
python3 "$ROOT/bench/start_bench.py" --runs "$RUNS" --guest "$BUILD/test-guest" --work "$WORK" \
  --vmctl "$BUILD/client/vmctl" --socket "$VMMD_SOCK" --vmmd-state "$VMMD_DIR/state" \
  --root-socket "$ROOT_SOCK" --root-vmmd-state "$ROOT_STATE" --out "$RESULTS/start.json"
python3 "$ROOT/bench/report.py" --summary start
