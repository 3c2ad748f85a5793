#!/usr/bin/env python3
"""Times issuing a start -> the test guest's marker on its serial console, three ways in pairs:
the floor (vmmd's exact QEMU argv and descriptors, launched by floor.py), vmm (`vmctl start`
through vmmd) and libvirt (`virsh start` through libvirtd). Same kernel, initrd, memory, vCPUs,
TCG. Writes JSON with every sample (see sampling.py for the pairing)."""
import argparse, json, os, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_clients, floor, sampling  # noqa: E402

p = argparse.ArgumentParser()
for a in ("--guest", "--work", "--vmctl", "--socket", "--vmmd-state", "--out"):
    p.add_argument(a, required=True)
p.add_argument("--runs", type=int, default=20)
p.add_argument("--libvirt-uri", default="qemu:///system")
args = p.parse_args()

KERNEL, INITRD = f"{args.guest}/vmlinux", f"{args.guest}/full.cpio"
CMDLINE = "console=ttyS0 panic=-1 quiet tg.marker=BENCH-MARKER"
MARKER = b"BENCH-MARKER"
VMCTL = [args.vmctl, "--connect", args.socket]
VIRSH = ["virsh", "-q", "-c", args.libvirt_uri]
VM_DOM, LV_DOM = "vmmbench-start", "vmmbench-start-lv"
VM_LOG = f"{args.vmmd_state}/qemu/{VM_DOM}/console.log"
LV_LOG = f"{args.work}/libvirt-console.log"
rpc = bench_clients.Rpc(args.socket, 120)


def run(argv):
    return bench_clients.cli(argv, 120)


def define():
    d = {"name": VM_DOM, "type": "qemu", "vcpus": 1, "memory": "256MiB", "guest_agent": False,
         "boot": {"kernel": KERNEL, "initrd": INITRD, "cmdline": CMDLINE}}
    path = f"{args.work}/{VM_DOM}.json"
    json.dump(d, open(path, "w"))
    run(VMCTL + ["define", path])
    xml = f"""<domain type='qemu'><name>{LV_DOM}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='q35'>hvm</type><kernel>{KERNEL}</kernel><initrd>{INITRD}</initrd><cmdline>{CMDLINE}</cmdline></os>
<cpu mode='maximum'/><features><acpi/></features>
<devices><emulator>/usr/bin/qemu-system-x86_64</emulator><serial type='file'><source path='{LV_LOG}'/><target port='0'/></serial>
<memballoon model='none'/></devices></domain>"""
    xpath = f"{args.work}/{LV_DOM}.xml"
    open(xpath, "w").write(xml)
    subprocess.run(VIRSH + ["undefine", LV_DOM], capture_output=True)
    run(VIRSH + ["define", xpath])


def undefine():
    subprocess.run(VMCTL + ["destroy", VM_DOM], capture_output=True)
    subprocess.run(VMCTL + ["undefine", VM_DOM], capture_output=True)
    subprocess.run(VIRSH + ["destroy", LV_DOM], capture_output=True)
    subprocess.run(VIRSH + ["undefine", LV_DOM], capture_output=True)


def vmm_pid():
    return rpc.call("domain.get", {"name": VM_DOM}).get("runtime", {}).get("pid")


def libvirt_pid():
    try:
        return int(open(f"/run/libvirt/qemu/{LV_DOM}.pid").read().strip())
    except (OSError, ValueError):
        return None


FLOOR = None  # floor.QemuFloor, once vmmd's argv is known


def floor_sample(_):
    t0 = sampling.now_ms()
    FLOOR.launch()
    returned = sampling.now_ms() - t0
    FLOOR.wait_console(MARKER)
    return {"marker": sampling.now_ms() - t0, "returned": returned}


def vmm_prepare(_):
    if os.path.exists(VM_LOG):
        os.remove(VM_LOG)


def vmm_sample(_):
    t0 = sampling.now_ms()
    run(VMCTL + ["start", VM_DOM])
    returned = sampling.now_ms() - t0
    return {"marker": sampling.wait_for_text(VM_LOG, MARKER, t0), "returned": returned}


def vmm_cleanup(_):
    pid = vmm_pid()
    subprocess.run(VMCTL + ["destroy", VM_DOM], capture_output=True)
    if pid:
        floor.wait_gone(pid)


def libvirt_prepare(_):
    if os.path.exists(LV_LOG):
        os.remove(LV_LOG)


def libvirt_sample(_):
    t0 = sampling.now_ms()
    run(VIRSH + ["start", LV_DOM])
    returned = sampling.now_ms() - t0
    return {"marker": sampling.wait_for_text(LV_LOG, MARKER, t0), "returned": returned}


def libvirt_cleanup(_):
    pid = libvirt_pid()
    subprocess.run(VIRSH + ["destroy", LV_DOM], capture_output=True)
    if pid:
        floor.wait_gone(pid)


def warm_boot(*_):
    """The preceding state of every sample: one untimed floor boot to the marker, killed."""
    FLOOR.launch()
    try:
        FLOOR.wait_console(MARKER)
    finally:
        FLOOR.kill()


targets = {
    "floor": sampling.Target(floor_sample, cleanup=lambda _: FLOOR.kill()),
    "vmm": sampling.Target(vmm_sample, prepare=vmm_prepare, cleanup=vmm_cleanup),
    "libvirt": sampling.Target(libvirt_sample, prepare=libvirt_prepare, cleanup=libvirt_cleanup),
}
PRECEDING = ("right before every timed boot, one untimed floor boot to the marker, killed (SIGKILL, reaped); "
             "the previous sample's teardown has finished (its QEMU gone) before that warm-up boot starts")
argv = []
try:
    define()
    # vmmd's own command line for this guest, and a first boot of each kind (caches, libvirt's
    # capabilities) before anything is timed.
    run(VMCTL + ["start", VM_DOM])
    argv = floor.capture_argv(vmm_pid())
    vmm_cleanup(0)
    FLOOR = floor.QemuFloor(argv, f"{args.work}/floor")
    for name, t in targets.items():
        try:
            if t.prepare:
                t.prepare(0)
            t.sample(0)
        except Exception as e:  # the pairs will show whether it persists
            print(f"first {name} boot (untimed) failed: {e}", file=sys.stderr)
        finally:
            t.cleanup(0)
    runner = sampling.PairedRun(targets, args.runs, ("marker", "returned"), warmup=warm_boot, preceding=PRECEDING)
    runner.run()
finally:
    if FLOOR:
        FLOOR.kill()
    undefine()

sampling.write_result(args.out, runner.result(
    diffs=[("marker", "vmm", "floor"), ("marker", "libvirt", "floor"),
           ("returned", "vmm", "floor"), ("returned", "libvirt", "floor")],
    floor_argv=argv, floor_descriptors=floor.chardev_fds(argv),
    guest={"kernel": KERNEL, "initrd": INITRD, "cmdline": CMDLINE, "memory": "256MiB", "vcpus": 1}))
