#!/bin/sh
# Defines each FILE.xml in libvirt's QEMU driver (qemu:///system) of a private libvirtd and
# prints one line per file: "defined FILE" or "refused FILE: <libvirt's error>".
#
# The libvirtd runs in a mount namespace of its own with empty tmpfs over libvirt's runtime,
# state, cache, log and QEMU config directories: it never sees or changes the host's libvirt
# (its domains and networks, or a libvirtd a benchmark is using), and what it defines vanishes
# with the namespace. It is started and stopped by pid here. Used by libvirt_xml_e2e_test.
#
# usage: libvirt_private_define.sh FILE.xml...
set -u
if [ "${VMM_LIBVIRT_PRIVATE_NS:-}" != 1 ]; then
  exec env VMM_LIBVIRT_PRIVATE_NS=1 unshare --mount --propagation private "$0" "$@"
fi
LIBVIRTD=$(command -v libvirtd || echo /usr/sbin/libvirtd)
for d in /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt /etc/libvirt/qemu; do
  mkdir -p "$d" && mount -t tmpfs -o mode=0755 vmm-libvirt "$d" || { echo "cannot mount a tmpfs on $d" >&2; exit 1; }
done
"$LIBVIRTD" --pid-file /run/libvirt/libvirtd.pid >/var/log/libvirt/libvirtd.out 2>&1 &
pid=$!
stop() { kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }
trap stop EXIT
i=0
until [ -S /run/libvirt/libvirt-sock ] && virsh -q -c qemu:///system version >/dev/null 2>&1; do
  i=$((i + 1))
  if [ $i -gt 600 ] || ! kill -0 "$pid" 2>/dev/null; then
    echo "libvirtd did not start:" >&2
    tail -n 20 /var/log/libvirt/libvirtd.out >&2
    exit 1
  fi
  sleep 0.05
done
for f in "$@"; do
  name=$(sed -n 's:.*<name>\(.*\)</name>.*:\1:p' "$f" | head -n 1)
  if out=$(virsh -q -c qemu:///system define "$f" 2>&1) && virsh -q -c qemu:///system dumpxml "$name" >/dev/null 2>&1; then
    echo "defined $f"
    virsh -q -c qemu:///system undefine "$name" >/dev/null 2>&1 || echo "undefine of $name failed" >&2
  else
    echo "refused $f: $(printf '%s' "$out" | tr '\n' ' ')"
  fi
done
