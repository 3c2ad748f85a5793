#!/bin/sh
# Installs the Debian 12 packages the benchmarks need beyond scripts/install-deps.sh (which builds
# and tests vmm): the references they compare against (libvirt with its C API for api_bench, LXD)
# and the tools the scripts call. Idempotent; run as root.
set -eu
PACKAGES="libvirt-daemon-system libvirt-clients libvirt-dev qemu-system-x86 qemu-utils busybox-static
  python3 iptables dnsmasq-base util-linux coreutils lxd"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && { echo "bench/deps.sh: all present"; exit 0; }
[ "$(id -u)" = 0 ] || { echo "bench/deps.sh: run as root (missing:$missing)" >&2; exit 1; }
echo "bench/deps.sh: installing$missing"
apt-get update -qq
# The benchmarks start the daemons they need (libvirtd, virtlogd, lxd) by hand and stop them.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
