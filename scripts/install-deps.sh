#!/bin/sh
# Installs the Debian 12 packages vmm needs to build, run and test. Idempotent: packages
# already present are not downloaded again. Run as root (or with sudo available).
set -eu

BUILD="cmake g++ make pkg-config nlohmann-json3-dev libsqlite3-dev libssl-dev libcpp-httplib-dev
  libcli11-dev libedit-dev libgtest-dev libgmock-dev libbenchmark-dev libiscsi-dev libnfs-dev libnl-3-dev libnl-route-3-dev libguestfs-dev libseccomp-dev libsimdjson-dev
  libpugixml-dev libxen-dev
  clang libfuzzer-14-dev libclang-rt-14-dev libyaml-dev lld"
# lld links the ~90 test and fuzz binaries in about a third of ld.bfd's time.
# clang, libFuzzer and the sanitizer runtimes build the fuzz targets (fuzz/), whose cloud-init
# target reads the rendered YAML back with libyaml.
# lvm2 for logical pools; qemu-block-extra holds QEMU's iscsi and nfs block drivers.
# nftables and dnsmasq for virtual networks (NAT, ACLs, DHCP/DNS).
RUNTIME="iproute2 procps qemu-system-x86 qemu-utils qemu-block-extra lvm2 nftables dnsmasq-base"
# First-boot configuration: genisoimage writes cloud-init seed ISOs (and isoinfo reads them back);
# supermin builds the libguestfs appliance; e2fsprogs (mkfs.ext4 -d, debugfs) for its tests.
RUNTIME="$RUNTIME genisoimage supermin e2fsprogs"
# The test guest: a Debian kernel (fetched with apt-get download), busybox and qemu-ga.
# libvirt is the reference the benchmarks compare against.
# tgt, nfs-ganesha and rpcbind are the real iSCSI and NFS servers the storage tests run on loopback.
# syslinux, mtools, dosfstools and fdisk (sfdisk) make the bootable disk the storage tests boot from.
# openssl makes the CA and server certificates of the https image import test.
TEST="python3 curl openssl sqlite3 busybox-static qemu-guest-agent cpio xz-utils
  libvirt-daemon-system libvirt-clients tgt libiscsi-bin nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils python3-yaml
  syslinux mtools dosfstools fdisk
  dpkg-dev debhelper help2man lintian"
# The Debian package test: dpkg-deb, help2man man pages, lintian. (Benchmarks also use lxd, and
# tests/data/libvirt-xml/generate.sh uses virt-install from virtinst: both optional.)

# The OpenAPI conformance test (tests/api) runs its validators, npm packages installed by
# scripts/install-npm-tools.sh, on Node.js. A Node.js installed otherwise (with its own npm) is kept.
command -v node >/dev/null || TEST="$TEST nodejs"
command -v npm >/dev/null || TEST="$TEST npm"

PACKAGES="$BUILD $RUNTIME $TEST"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root (missing:$missing)" >&2; exit 1; }
  SUDO=sudo
fi
echo "install-deps: installing$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
