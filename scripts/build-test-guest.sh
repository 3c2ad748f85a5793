#!/bin/bash
# Builds the test guest the suite and the benchmarks boot under QEMU (TCG):
#   OUT/vmlinux       the Debian kernel's ELF image (PVH entry: boots without decompressing)
#   OUT/vmlinuz       the same kernel as a bzImage, for a bootloader (tests that boot from a disk)
#   OUT/min.cpio.gz   busybox + /init: boots to a console marker
#   OUT/full.cpio     + virtio/SCSI/ACPI-button modules and qemu-ga (uncompressed: faster under TCG)
# The kernel package is fetched once with apt-get download and cached in OUT/cache; a rerun
# with the same inputs does nothing. usage: build-test-guest.sh [OUT] (default build/test-guest)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/build/test-guest}
GUEST=$ROOT/tests/guest
mkdir -p "$OUT/cache"
OUT=$(cd "$OUT" && pwd)

# The kernel package linux-image-amd64 points at (e.g. linux-image-6.1.0-56-amd64).
PKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$PKG" ] || { echo "build-test-guest: apt knows no linux-image-amd64 (run apt-get update)" >&2; exit 1; }
KVER=${PKG#linux-image-}

STAMP="$PKG $(cat "$0" "$GUEST/init" "$GUEST/extract-vmlinux.py" /usr/sbin/qemu-ga /bin/busybox | sha256sum | cut -c1-16)"
if [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$STAMP" ]; then
  exit 0
fi

DEB=$(ls "$OUT"/cache/"${PKG}"_*.deb 2>/dev/null | head -n1 || true)
if [ -z "$DEB" ]; then
  (cd "$OUT/cache" && apt-get download -q "$PKG" >/dev/null)
  DEB=$(ls "$OUT"/cache/"${PKG}"_*.deb | head -n1)
fi

# Only the kernel image and the few modules the guest loads (dpkg -x of everything is ~400 MB).
MODULES="drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_modern_dev
  drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci drivers/virtio/virtio_mmio
  drivers/char/virtio_console drivers/block/virtio_blk drivers/scsi/scsi_common drivers/scsi/scsi_mod
  drivers/scsi/sd_mod drivers/scsi/virtio_scsi net/core/failover drivers/net/net_failover
  drivers/net/virtio_net drivers/input/evdev drivers/acpi/button"
KROOT=$OUT/cache/kernel
rm -rf "$KROOT" && mkdir -p "$KROOT"
patterns=("./boot/vmlinuz-$KVER")
for m in $MODULES; do patterns+=("./lib/modules/$KVER/kernel/$m.ko"); done
# Modules that are built into this kernel are simply absent: tar warns, the guest skips them.
dpkg-deb --fsys-tarfile "$DEB" | tar -x -C "$KROOT" "${patterns[@]}" 2>/dev/null || true
[ -f "$KROOT/boot/vmlinuz-$KVER" ] || { echo "build-test-guest: $DEB has no boot/vmlinuz-$KVER" >&2; exit 1; }
python3 "$GUEST/extract-vmlinux.py" "$KROOT/boot/vmlinuz-$KVER" "$OUT/vmlinux.tmp"
mv "$OUT/vmlinux.tmp" "$OUT/vmlinux"
cp "$KROOT/boot/vmlinuz-$KVER" "$OUT/vmlinuz.tmp"
mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"

make_root() {  # DIR
  local R=$1
  rm -rf "$R" && mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc/acpi/PWRF,root,var/log,lib}
  cp /bin/busybox "$R/bin/busybox"
  for applet in $(/bin/busybox --list-full); do
    [ "$applet" = bin/busybox ] || ln -sf /bin/busybox "$R/$applet"
  done
  install -m 755 "$GUEST/init" "$R/init"
  echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
  echo 'root:x:0:' > "$R/etc/group"
  printf '#!/bin/sh\ncase "$1" in bound|renew)\n  ip addr flush dev "$interface"; ip addr add "$ip/${mask:-24}" dev "$interface"\n  [ -n "$router" ] && ip route add default via "${router%%%% *}";;\nesac\n' > "$R/etc/udhcpc.script"
  chmod 755 "$R/etc/udhcpc.script"
  # busybox acpid: the power button event runs PWRF/00000080 (an empty acpid.conf would
  # disable the built-in table, so it names the one action).
  printf '#!/bin/sh\necho GUEST-POWERBUTTON > /dev/console\nsync\npoweroff -f\n' > "$R/etc/acpi/PWRF/00000080"
  chmod 755 "$R/etc/acpi/PWRF/00000080"
  echo "PWRF PWRF/00000080" > "$R/etc/acpid.conf"
  # qemu-ga's guest-shutdown runs /sbin/shutdown -h -P|-H|-r +0 ...; busybox has no shutdown.
  # The pause lets the console line drain through the emulated UART before the power goes.
  rm -f "$R/sbin/shutdown"
  printf '#!/bin/sh\necho "GUEST-SHUTDOWN $*" > /dev/console\ncase " $* " in *" -r "*) a=reboot;; *" -H "*) a=halt;; *) a=poweroff;; esac\n(sleep 1; sync; $a -f) &\nexit 0\n' > "$R/sbin/shutdown"
  chmod 755 "$R/sbin/shutdown"
}

pack() {  # DIR NAME
  (cd "$1" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner=0:0 --quiet) > "$OUT/$2.cpio.tmp"
  mv "$OUT/$2.cpio.tmp" "$OUT/$2.cpio"
}

WORK=$OUT/cache/rootfs
make_root "$WORK-min"
pack "$WORK-min" min
gzip -9 -n -c "$OUT/min.cpio" > "$OUT/min.cpio.gz"

make_root "$WORK-full"
mkdir -p "$WORK-full/lib/modules" "$WORK-full/lib/x86_64-linux-gnu" "$WORK-full/lib64"
find "$KROOT/lib/modules" -name '*.ko' -exec cp {} "$WORK-full/lib/modules/" \;
cp /usr/sbin/qemu-ga "$WORK-full/usr/sbin/qemu-ga"
for lib in $(ldd /usr/sbin/qemu-ga | awk '/=>/ {print $3} /ld-linux/ {print $1}'); do
  case "$lib" in
    /lib64/*) cp -L "$lib" "$WORK-full/lib64/" ;;
    *) cp -L "$lib" "$WORK-full/lib/x86_64-linux-gnu/" ;;
  esac
done
pack "$WORK-full" full
rm -rf "$WORK-min" "$WORK-full" "$OUT/min.cpio"
echo "$STAMP" > "$OUT/stamp"
echo "test guest ready in $OUT ($PKG)"
