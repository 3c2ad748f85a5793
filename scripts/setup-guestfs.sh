#!/bin/bash
# Prepares what libguestfs (direct backend) needs to launch its appliance on this machine, all
# under BUILD/guestfs, without changing the host:
#   BUILD/guestfs/kernel/boot/vmlinuz-KVER         a Debian kernel
#   BUILD/guestfs/kernel/lib/modules/KVER          the modules the appliance uses, depmod'ed
#   BUILD/guestfs/cache                            LIBGUESTFS_CACHEDIR (supermin's built appliance)
#   BUILD/guestfs/appliance                        a fixed appliance: a copy of supermin's, which
#                                                  an unprivileged helper can launch (LIBGUESTFS_PATH)
#   BUILD/guestfs/guestfs.env                      KEY=VALUE lines for vmm-customize (also printed)
# Then, every time, a smoke launch: vmm-customize --check starts supermin's appliance (on no
# image) as root in the helper's private mount namespace, and shuts it down; the script fails
# with libguestfs's reason when it cannot (this also builds supermin's cached appliance, which
# the fixed one is then copied from). The helper is BUILD/storage/customize/vmm-customize (or
# $VMM_CUSTOMIZE_HELPER).
# The kernel package is the one scripts/build-test-guest.sh caches (BUILD/test-guest/cache or
# ROOT/build/test-guest/cache); if neither has it, build-test-guest.sh fetches it once.
# The missing /lib/modules that supermin insists on is handled by vmm-customize in a private
# mount namespace, not here. A rerun with the same inputs does nothing.
# usage: setup-guestfs.sh [BUILD] (default ROOT/build)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
mkdir -p "$BUILD"
BUILD=$(cd "$BUILD" && pwd)
OUT=$BUILD/guestfs

find_deb() {
  local d
  for d in "$BUILD/test-guest/cache" "$ROOT/build/test-guest/cache"; do
    ls "$d"/linux-image-*_amd64.deb 2>/dev/null | grep -v -- '-dbg' | sort | tail -n1 && return 0
  done
  return 0
}

DEB=${VMM_KERNEL_DEB:-$(find_deb)}
if [ -z "$DEB" ]; then
  "$ROOT/scripts/build-test-guest.sh" "$BUILD/test-guest" >&2
  DEB=$(find_deb)
fi
[ -f "$DEB" ] || { echo "setup-guestfs: no linux-image .deb found (run scripts/build-test-guest.sh)" >&2; exit 1; }
PKG=$(basename "$DEB")
PKG=${PKG%%_*}
KVER=${PKG#linux-image-}

KROOT=$OUT/kernel
ENVFILE=$OUT/guestfs.env
# A /dev/kvm that QEMU cannot use would make every launch fail or hang; the appliance then runs
# under TCG. Seen: "failed to set MSR 0x10a", then an abort; and kvm-pvm (a paravirtual KVM on
# hosts that are VMs themselves), which accepts a paused machine but never runs an ordinary
# kernel - the appliance then hangs until its deadline (the smoke launch below found that).
kvm_broken() {
  [ -c /dev/kvm ] || return 1
  [ -e /sys/module/kvm_pvm ] && return 0
  ! (echo quit | timeout 20 qemu-system-x86_64 -accel kvm -cpu max -machine pc -nodefaults -display none -S \
    -monitor stdio) >/dev/null 2>&1
}
# $1: the fixed appliance's directory, or nothing while supermin's is being built.
write_env() {
  cat > "$ENVFILE.tmp" <<EOF
SUPERMIN_KERNEL=$KROOT/boot/vmlinuz-$KVER
SUPERMIN_MODULES=$KROOT/lib/modules/$KVER
SUPERMIN_KERNEL_VERSION=$KVER
LIBGUESTFS_BACKEND=direct
LIBGUESTFS_CACHEDIR=$OUT/cache
EOF
  if kvm_broken; then echo "LIBGUESTFS_BACKEND_SETTINGS=force_tcg" >> "$ENVFILE.tmp"; fi
  if [ -n "${1:-}" ]; then echo "LIBGUESTFS_PATH=$1" >> "$ENVFILE.tmp"; fi
  mv "$ENVFILE.tmp" "$ENVFILE"
  cat "$ENVFILE"
}

# A fixed appliance (libguestfs finds README.fixed and launches kernel, initrd and root as they
# are): what vmmd's unprivileged helper launches, since it may neither run supermin nor see the
# host files supermin copies. Renewed whenever supermin rebuilt its appliance.
make_fixed() {
  local built=$OUT/cache/.guestfs-0/appliance.d fixed=$OUT/appliance
  [ -f "$built/root" ] || { echo "setup-guestfs: supermin left no appliance in $built" >&2; exit 1; }
  if [ -f "$fixed/README.fixed" ] && [ "$(stat -c %Y "$fixed/root")" = "$(stat -c %Y "$built/root")" ]; then return 0; fi
  rm -rf "$fixed.tmp" && mkdir -p "$fixed.tmp"
  cp --sparse=always -p "$built/kernel" "$built/initrd" "$built/root" "$fixed.tmp/"
  echo "A fixed libguestfs appliance copied from supermin's by scripts/setup-guestfs.sh." > "$fixed.tmp/README.fixed"
  chmod -R a+rX "$fixed.tmp"
  rm -rf "$fixed" && mv "$fixed.tmp" "$fixed"
}

# supermin's appliance is (re)built and launched as root, then copied.
prepare_appliance() {
  write_env
  smoke_launch
  make_fixed
  write_env "$OUT/appliance"
}

HELPER=${VMM_CUSTOMIZE_HELPER:-$BUILD/storage/customize/vmm-customize}
smoke_launch() {
  [ -x "$HELPER" ] || { echo "setup-guestfs: no vmm-customize helper at $HELPER (build the vmm-customize target first)" >&2; exit 1; }
  local reply
  if ! reply=$(set -a; . "$ENVFILE"; set +a; timeout 600 "$HELPER" --check </dev/null 2>"$OUT/check.log"); then
    echo "setup-guestfs: the libguestfs appliance does not start: $reply" >&2
    tail -n 20 "$OUT/check.log" >&2
    exit 1
  fi
  echo "setup-guestfs: appliance started and stopped: $reply"
}

# The fixed appliance's daemon must speak this libguestfs's protocol: its version is an input.
STAMP="$PKG $(dpkg-query -W -f '${Version}' libguestfs0 2>/dev/null) $(cat "$0" | sha256sum | cut -c1-16)"
if [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$STAMP" ] && [ -f "$KROOT/boot/vmlinuz-$KVER" ]; then
  prepare_appliance
  exit 0
fi

# The appliance needs block/virtio drivers, filesystems, device-mapper and their library
# dependencies; the whole package (~400 MB) would make every appliance rebuild copy it all.
M=./lib/modules/$KVER
patterns=("./boot/vmlinuz-$KVER" "$M/modules.order" "$M/modules.builtin" "$M/modules.builtin.modinfo"
  "$M/kernel/fs" "$M/kernel/lib" "$M/kernel/crypto" "$M/kernel/arch" "$M/kernel/block"
  "$M/kernel/drivers/virtio" "$M/kernel/drivers/block" "$M/kernel/drivers/scsi" "$M/kernel/drivers/char"
  "$M/kernel/drivers/md" "$M/kernel/drivers/ata" "$M/kernel/drivers/acpi" "$M/kernel/drivers/input"
  "$M/kernel/drivers/nvdimm" "$M/kernel/drivers/dax" "$M/kernel/drivers/net/virtio_net.ko"
  "$M/kernel/drivers/net/net_failover.ko" "$M/kernel/net/core")
rm -rf "$OUT/kernel.tmp" && mkdir -p "$OUT/kernel.tmp" "$OUT/cache"
# Directories absent from this kernel's package are skipped (tar warns about them).
dpkg-deb --fsys-tarfile "$DEB" | tar -x -C "$OUT/kernel.tmp" "${patterns[@]}" 2>/dev/null || true
[ -f "$OUT/kernel.tmp/boot/vmlinuz-$KVER" ] || { echo "setup-guestfs: $DEB has no boot/vmlinuz-$KVER" >&2; exit 1; }
/sbin/depmod -b "$OUT/kernel.tmp" "$KVER"
rm -rf "$KROOT" && mv "$OUT/kernel.tmp" "$KROOT"
# A different kernel makes supermin's cached appliance stale.
rm -rf "$OUT/cache" "$OUT/appliance" && mkdir -p "$OUT/cache"
echo "$STAMP" > "$OUT/stamp"
prepare_appliance
