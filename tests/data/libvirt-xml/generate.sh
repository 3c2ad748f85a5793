#!/bin/sh
# Regenerates the libvirt domain XML corpus with a real producer: virt-install (package virtinst)
# against libvirt's test driver, with --print-xml --dry-run (nothing is created).
# The outputs are committed test inputs; run this again only to refresh them:
#   tests/data/libvirt-xml/generate.sh
# virt-install writes a random UUID and MAC each run: they are pinned here so the files are stable.
set -eu
cd "$(dirname "$0")"
gen() {
  name=$1; shift
  out=$name.xml
  timeout 60 virt-install --connect test:///default --print-xml --dry-run --noautoconsole \
    --name "$name" --uuid "$(printf '%s' "$name" | md5sum | sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12}).*/\1-\2-\3-\4-\5/')" "$@" >"$out.tmp"
  mv "$out.tmp" "$out"
  echo "$out"
}
# A few variants again as qemu/KVM guests (the test driver's own capabilities are i686 "test"):
# same producer, domain type and architecture rewritten. q35 has no IDE bus: IDE disks become
# SATA (as virt-install itself chooses for q35), with the sdX names libvirt gives SATA disks.
kvm() {
  sed -e "s/<domain type=\"test\">/<domain type=\"kvm\">/" -e 's/arch="i686"/arch="x86_64" machine="q35"/' \
      -e 's/<target dev="hd\([a-z]\)" bus="ide"\/>/<target dev="sd\1" bus="sata"\/>/' \
      -e '/<emulator>/d' -e "s/<name>$1</<name>$1-kvm</" "$1.xml" >"$1-kvm.xml"
  echo "$1-kvm.xml"
}

gen basic-ide --memory 1024 --vcpus 2 --osinfo debian11 --import \
  --disk path=/var/lib/libvirt/images/basic.qcow2,size=1,bus=ide --network network=default,mac=52:54:00:00:00:01 --graphics vnc
gen virtio-bridge-spice --memory 2048 --vcpus 4,sockets=1,cores=2,threads=2 --osinfo fedora36 --import \
  --disk path=/var/lib/libvirt/images/fedora.qcow2,size=1,bus=virtio,format=qcow2,cache=none \
  --network bridge=br0,model=virtio,mac=52:54:00:00:00:02 --graphics spice,listen=127.0.0.1 \
  --channel unix,target.type=virtio,target.name=org.qemu.guest_agent.0
gen sata-cdrom-direct --memory 1536 --osinfo win10 --import \
  --disk path=/var/lib/libvirt/images/win.raw,size=1,bus=sata,format=raw \
  --disk path=/var/lib/libvirt/images/install.iso,size=1,device=cdrom,bus=sata \
  --network type=direct,source=eth0,source.mode=bridge,mac=52:54:00:00:00:03,model=e1000e --graphics vnc,port=5905
gen scsi-serial --memory 768 --osinfo centos-stream8 --import \
  --disk path=/var/lib/libvirt/images/scsi.img,size=1,bus=scsi --controller type=scsi,model=virtio-scsi \
  --network network=default,mac=52:54:00:00:00:04 --serial pty --console pty,target.type=serial --graphics none
gen kernel-boot --memory 512 --osinfo generic --import \
  --boot kernel=/var/lib/vmm/vmlinuz,initrd=/var/lib/vmm/initrd.img,kernel_args="console=ttyS0 root=/dev/vda" \
  --disk path=/dev/loop0,bus=virtio --network none --graphics none --console pty,target.type=virtio
gen uefi-loader --memory 4096 --osinfo ubuntu20.04 --import \
  --boot loader=/usr/share/OVMF/OVMF_CODE_4M.fd,loader.readonly=yes,loader.type=pflash,nvram=/var/lib/libvirt/qemu/nvram/uefi_VARS.fd \
  --disk path=/var/lib/libvirt/images/uefi.qcow2,size=1,bus=virtio --network network=default,mac=52:54:00:00:00:06 --graphics vnc
gen devices-rng-watchdog-tpm --memory 1024 --osinfo debian11 --import \
  --disk path=/var/lib/libvirt/images/dev.qcow2,size=1 --network network=default,mac=52:54:00:00:00:07,model=rtl8139 \
  --rng /dev/urandom --watchdog i6300esb,action=reset --tpm emulator,model=tpm-crb,version=2.0 \
  --memballoon virtio --sound ich9 --video virtio --input keyboard,bus=usb
gen filesystem --memory 1024 --osinfo debian11 --import \
  --disk path=/var/lib/libvirt/images/fs.qcow2,size=1 --filesystem /srv/share,share --network none --graphics none
gen boot-order-cpu --memory 2048 --vcpus 2 --cpu host-passthrough --osinfo rhel8.6 \
  --boot network,cdrom,hd --disk path=/var/lib/libvirt/images/bo.qcow2,size=1,bus=virtio --network network=default,mac=52:54:00:00:00:09 \
  --events on_poweroff=preserve,on_reboot=restart,on_crash=restart --import
gen cpu-model-features-clock --memory 1024 --vcpus 2 --cpu Skylake-Client,+vmx,-hle --osinfo opensuse15.3 --import \
  --features acpi=on,apic=on,hyperv.relaxed.state=on --clock offset=localtime,rtc_tickpolicy=catchup \
  --disk path=/var/lib/libvirt/images/cpu.qcow2,size=1 --network network=default,mac=52:54:00:00:00:0a --graphics vnc
gen metadata-title --memory 1024,currentMemory=512 --osinfo alpinelinux3.15 --import \
  --metadata title="Web server",description="Serves the intranet" \
  --disk path=/var/lib/libvirt/images/meta.qcow2,size=1 --network network=default,mac=52:54:00:00:00:0b --graphics none
gen multi-nic-disk --memory 1024 --osinfo freebsd13.0 --import \
  --disk path=/var/lib/libvirt/images/m1.qcow2,size=1,bus=virtio,boot.order=1 \
  --disk path=/var/lib/libvirt/images/m2.raw,size=1,bus=virtio,readonly=on,serial=DATA01 \
  --disk path=/default-pool/vol1.img,size=1,bus=scsi \
  --network network=default,mac=52:54:00:00:00:0c --network bridge=virbr1,mac=52:54:00:00:00:0d,model=e1000 \
  --network user,mac=52:54:00:00:00:0e --graphics vnc,listen=0.0.0.0,password=secret
gen channels-consoles --memory 1024 --osinfo debian11 --import \
  --disk path=/var/lib/libvirt/images/ch.qcow2,size=1 --network network=default,mac=52:54:00:00:00:0f \
  --channel unix,target.type=virtio,target.name=org.qemu.guest_agent.0 --channel spicevmc \
  --serial pty --serial file,path=/var/log/vmm/serial1.log --graphics spice
kvm basic-ide
kvm virtio-bridge-spice
kvm kernel-boot
kvm multi-nic-disk
kvm cpu-model-features-clock
