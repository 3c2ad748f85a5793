#!/bin/sh
# Network benchmark: start and stop of a NAT network with DHCP, on vmmd and on libvirt, in the
# same run. vmm through one kept-alive JSON-RPC connection and through vmctl; libvirt through
# one virsh shell and through virsh per call.
#
# Starting a network makes a bridge, a dnsmasq and firewall rules, so everything runs in a
# private network + mount namespace: the script re-executes itself under unshare, and the
# vmmd, libvirtd and dnsmasq processes started there inherit it. Inside, sysfs is remounted
# (it shows the namespace's links) and libvirt's directories are private tmpfs mounts, so the
# private libvirtd shares no socket, pid file, configuration or state with any other libvirtd.
set -eu
if [ "${VMM_BENCH_NETNS:-}" != 1 ]; then
  [ "$(id -u)" = 0 ] || { echo "network.sh: needs root (network + mount namespace)" >&2; exit 1; }
  VMM_BENCH_NETNS=1 exec unshare --net --mount --propagation private -- sh "$0" "$@"
fi

. "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-20}
URI=qemu:///system
VMM_NET=benchnet
LV_NET=benchnet
WORK=$(mktemp -d /tmp/vmm-bench-network-XXXXXX)
DIRS="$DIRS $WORK"

ip link set lo up
umount -l /sys && mount -t sysfs sysfs /sys
# A warm copy of libvirt's capability cache (as a long-running libvirtd has), private.
mkdir "$WORK/lvcache"
[ -d /var/cache/libvirt ] && cp -a /var/cache/libvirt/. "$WORK/lvcache/"
mount -t tmpfs -o mode=0755 tmpfs /run  # libvirt socket, pid files, xtables lock
mkdir -p /run/libvirt
for d in /etc/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt; do
  mkdir -p "$d" && mount -t tmpfs -o mode=0755 tmpfs "$d"
done
cp -a "$WORK/lvcache/." /var/cache/libvirt/

# dnsmasq runs detached from both daemons: the benchmark notes every dnsmasq pid it sees in
# this file, and exit stops any of them still running (by pid, and only if it is dnsmasq).
: > "$WORK/dnsmasq.pids"
network_cleanup() {
  "$BUILD/client/vmctl" --connect "$VMMD_SOCK" net stop "$VMM_NET" >/dev/null 2>&1 || true
  virsh -q -c "$URI" net-destroy "$LV_NET" >/dev/null 2>&1 || true
  seen=$(cat "$WORK/dnsmasq.pids" 2>/dev/null || true)
  for p in $seen; do
    [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = /usr/sbin/dnsmasq ] && kill "$p" 2>/dev/null || true
  done
  cleanup
  for p in $seen; do
    [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = /usr/sbin/dnsmasq ] && echo "network.sh: dnsmasq $p still running" >&2
  done
  true
}
VMMD_SOCK=/nonexistent
trap network_cleanup EXIT

start_vmmd --drivers test
# lib.sh waits 4 s for "vmmd ready"; a loaded machine may need longer
for _ in $(seq 1000); do [ -S "$VMMD_SOCK" ] && break; sleep 0.02; done
[ -S "$VMMD_SOCK" ] || { echo "vmmd did not start:" >&2; cat "$VMMD_DIR/log" >&2; exit 1; }
LIBVIRT_LOG_OUTPUTS="3:file:$WORK/libvirtd.log" /usr/sbin/libvirtd -p "$WORK/libvirtd.pid" >"$WORK/libvirtd.out" 2>&1 &
LIBVIRTD_PID=$!
PIDS="$PIDS $LIBVIRTD_PID"
for _ in $(seq 500); do [ -S /run/libvirt/libvirt-sock ] && break; sleep 0.02; done
virsh -q -c "$URI" version >/dev/null

# The same network on both sides: NAT, a /24, DHCP over the upper half, no STP, no forward delay.
cat > "$WORK/libvirt-net.xml" <<EOF
<network>
  <name>$LV_NET</name>
  <forward mode='nat'/>
  <bridge name='lvbench0' stp='off' delay='0'/>
  <ip address='10.231.2.1' netmask='255.255.255.0'>
    <dhcp><range start='10.231.2.128' end='10.231.2.254'/></dhcp>
  </ip>
</network>
EOF

python3 "$ROOT/bench/network_bench.py" --runs "$RUNS" --vmctl "$BUILD/client/vmctl" --socket "$VMMD_SOCK" \
  --vmm-network "$VMM_NET" --vmm-ipv4 10.231.1.1/24 --vmm-dhcp 10.231.1.128,10.231.1.254 \
  --libvirt-uri "$URI" --libvirt-network "$LV_NET" --libvirt-xml "$WORK/libvirt-net.xml" \
  --dnsmasq-pids "$WORK/dnsmasq.pids" --out "$RESULTS/network.json" || {
  echo "network_bench.py failed; vmmd and libvirtd logs:" >&2; tail -n 50 "$VMMD_DIR/log" "$WORK/libvirtd.log" >&2; exit 1; }
python3 "$ROOT/bench/report.py" --summary network
