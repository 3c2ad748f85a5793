#!/bin/sh
# Container benchmark: start -> first command and stop of a busybox system container, in pairs:
# vmm (one RPC connection, and vmctl processes), LXD (the lxc client), and the native floor
# (unshare + chroot + exec, no cgroups and no network). LXD runs privately: its own state
# directory (LXD_DIR), no network, a dir storage pool, a busybox image built here; stopped by its
# PID and removed at the end. Without a working LXD the result says why. Results in
# $RESULTS/container.json.
. "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-20}
WORK=$(mktemp -d /tmp/vmm-bench-containers-XXXXXX)
DIRS="$DIRS $WORK"
chmod 755 "$WORK"

# The rootfs: static busybox, an init that exits on SIGPWR/SIGTERM (what vmm and LXD send), in a
# root-only directory (vmm refuses a rootfs host users can reach).
install -d -m 0700 "$WORK/private"
ROOTFS=$WORK/private/rootfs
mkdir -p "$ROOTFS/bin" "$ROOTFS/sbin" "$ROOTFS/etc" "$ROOTFS/proc" "$ROOTFS/sys" "$ROOTFS/dev" "$ROOTFS/tmp" "$ROOTFS/root"
cp /bin/busybox "$ROOTFS/bin/"
for a in $("$ROOTFS/bin/busybox" --list); do [ -e "$ROOTFS/bin/$a" ] || ln -s busybox "$ROOTFS/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$ROOTFS/etc/passwd"
echo 'root:x:0:' > "$ROOTFS/etc/group"
printf '#!/bin/sh\ntrap "exit 0" PWR TERM\nwhile :; do sleep 100000 & wait; done\n' > "$ROOTFS/sbin/init"
chmod 755 "$ROOTFS/sbin/init"

start_vmmd --drivers lxc

# LXD, by hand. liblxc leaves empty lxc.pivot groups behind: removed at the end unless they
# were there before.
PIVOT_BEFORE=$(ls -d /sys/fs/cgroup/*/lxc.pivot 2>/dev/null || true)
VMM_CGROUPS_BEFORE=$(ls -d /sys/fs/cgroup/*/vmm 2>/dev/null || true)
export LXD_DIR="$WORK/lxd"
mkdir -p "$LXD_DIR"
chmod 711 "$LXD_DIR"
LXD_PID=""
stop_lxd() {
  [ -n "$LXD_PID" ] || return 0
  for c in $(lxc list --format csv -c n 2>/dev/null); do timeout 30 lxc delete -f "$c" >/dev/null 2>&1 || true; done
  kill "$LXD_PID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$LXD_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$LXD_PID" 2>/dev/null || true
  LXD_PID=""
  # Mounts LXD made under its directory (none are expected once it stopped).
  grep " $LXD_DIR" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m" || true; done
  if [ -z "$PIVOT_BEFORE" ]; then for g in /sys/fs/cgroup/*/lxc.pivot; do [ -d "$g" ] && rmdir "$g" 2>/dev/null || true; done; fi
}
# vmmd's parent groups (vmm/) go too when this run made them (rmdir: only if empty).
remove_vmm_cgroups() {
  if [ -z "$VMM_CGROUPS_BEFORE" ]; then for g in /sys/fs/cgroup/*/vmm /sys/fs/cgroup/vmm; do [ -d "$g" ] && rmdir "$g" 2>/dev/null || true; done; fi
}
trap 'stop_lxd; cleanup; remove_vmm_cgroups' EXIT
LXD_OK=0
LXD_STATUS=""
lxd_setup() {
  # No network (no lxdbr0), a dir storage pool, the busybox rootfs as an image.
  printf 'storage_pools:\n- name: default\n  driver: dir\nprofiles:\n- name: default\n  devices:\n    root:\n      path: /\n      pool: default\n      type: disk\n' |
    timeout 60 lxd init --preseed
  mkdir -p "$WORK/image"
  printf 'architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  description: busybox (vmm bench)\n  os: busybox\n' > "$WORK/image/metadata.yaml"
  tar -czf "$WORK/busybox-lxd.tar.gz" -C "$WORK/image" metadata.yaml -C "$WORK/private" rootfs
  timeout 60 lxc image import "$WORK/busybox-lxd.tar.gz" --alias vmmbench-busybox
}
if ! command -v lxd >/dev/null 2>&1; then
  LXD_STATUS="lxd is not installed (bench/deps.sh installs the Debian package lxd)"
else
  lxd --group lxd --logfile "$LXD_DIR/lxd.log" >"$LXD_DIR/lxd.out" 2>&1 &
  LXD_PID=$!
  if ! timeout 30 lxd waitready --timeout 25 >"$LXD_DIR/waitready.out" 2>&1; then
    LXD_STATUS="lxd did not become ready within 25 s: $(tail -n 5 "$LXD_DIR/lxd.log" "$LXD_DIR/lxd.out" "$LXD_DIR/waitready.out" 2>/dev/null | tr '\n' ' ')"
  elif ! lxd_setup >"$LXD_DIR/setup.out" 2>&1; then
    LXD_STATUS="lxd started, but its storage pool or image could not be set up: $(tail -n 5 "$LXD_DIR/setup.out" | tr '\n' ' ')"
  else
    LXD_OK=1
    LXD_STATUS="started by hand: its own LXD_DIR, a dir storage pool, no network"
  fi
fi
[ "$LXD_OK" = 1 ] || echo "container.sh: LXD not measured: $LXD_STATUS" >&2

python3 "$ROOT/bench/container_bench.py" --runs "$RUNS" --rootfs "$ROOTFS" --work "$WORK" \
  --vmctl "$BUILD/client/vmctl" --socket "$VMMD_SOCK" --lxd "$LXD_OK" --lxd-status "$LXD_STATUS" \
  --out "$RESULTS/container.json"
stop_lxd
python3 "$ROOT/bench/report.py" --summary container
