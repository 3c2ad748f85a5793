#!/usr/bin/env python3
"""Times issuing a start -> the test guest's marker on its serial console, four ways in pairs:
the floor (vmmd's exact QEMU argv and descriptors, launched by floor.py), vmm (`vmctl start`
through vmmd, QEMU confined), vmm-root (the same through a second vmmd run with
`--qemu-unprivileged no`: the difference is what the confinement costs) and libvirt (`virsh start`
through libvirtd). Same kernel, initrd, memory, vCPUs,
TCG. Writes JSON with every sample (see sampling.py for the pairing)."""
import argparse, json, os, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_clients, floor, sampling  # noqa: E402

p = argparse.ArgumentParser()
for a in ("--guest", "--work", "--vmctl", "--socket", "--vmmd-state", "--root-socket", "--root-vmmd-state", "--out"):
    p.add_argument(a, required=True)
p.add_argument("--runs", type=int, default=20)
p.add_argument("--libvirt-uri", default="qemu:///system")
args = p.parse_args()

KERNEL, INITRD = f"{args.guest}/vmlinux", f"{args.guest}/full.cpio"
CMDLINE = "console=ttyS0 panic=-1 quiet tg.marker=BENCH-MARKER"
MARKER = b"BENCH-MARKER"
VIRSH = ["virsh", "-q", "-c", args.libvirt_uri]
VM_DOM, LV_DOM = "vmmbench-start", "vmmbench-start-lv"
LV_LOG = f"{args.work}/libvirt-console.log"


def run(argv):
    return bench_clients.cli(argv, 120)


class Vmm:
    """One vmmd and the benchmark's domain in it: `vmctl start`, the marker from its console.log."""

    def __init__(self, socket, state):
        self.vmctl = [args.vmctl, "--connect", socket]
        self.rpc = bench_clients.Rpc(socket, 120)
        self.log = f"{state}/qemu/{VM_DOM}/console.log"

    def pid(self):
        return self.rpc.call("domain.get", {"name": VM_DOM}).get("runtime", {}).get("pid")

    def prepare(self, _):
        if os.path.exists(self.log):
            os.remove(self.log)

    def sample(self, _):
        t0 = sampling.now_ms()
        run(self.vmctl + ["start", VM_DOM])
        returned = sampling.now_ms() - t0
        return {"marker": sampling.wait_for_text(self.log, MARKER, t0), "returned": returned}

    def cleanup(self, _):
        pid = self.pid()
        subprocess.run(self.vmctl + ["destroy", VM_DOM], capture_output=True)
        if pid:
            floor.wait_gone(pid)

    def undefine(self):
        subprocess.run(self.vmctl + ["destroy", VM_DOM], capture_output=True)
        subprocess.run(self.vmctl + ["undefine", VM_DOM], capture_output=True)


VMM = Vmm(args.socket, args.vmmd_state)
VMM_ROOT = Vmm(args.root_socket, args.root_vmmd_state)


def define():
    d = {"name": VM_DOM, "type": "qemu", "vcpus": 1, "memory": "256MiB", "guest_agent": False,
         "boot": {"kernel": KERNEL, "initrd": INITRD, "cmdline": CMDLINE}}
    path = f"{args.work}/{VM_DOM}.json"
    json.dump(d, open(path, "w"))
    for v in (VMM, VMM_ROOT):
        run(v.vmctl + ["define", path])
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
    for v in (VMM, VMM_ROOT):
        v.undefine()
    subprocess.run(VIRSH + ["destroy", LV_DOM], capture_output=True)
    subprocess.run(VIRSH + ["undefine", LV_DOM], capture_output=True)


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
    "vmm": sampling.Target(VMM.sample, prepare=VMM.prepare, cleanup=VMM.cleanup),
    "vmm-root": sampling.Target(VMM_ROOT.sample, prepare=VMM_ROOT.prepare, cleanup=VMM_ROOT.cleanup),
    "libvirt": sampling.Target(libvirt_sample, prepare=libvirt_prepare, cleanup=libvirt_cleanup),
}
PRECEDING = ("right before every timed boot, one untimed floor boot to the marker, killed (SIGKILL, reaped); "
             "the previous sample's teardown has finished (its QEMU gone) before that warm-up boot starts")
argv = []
try:
    define()
    # vmmd's own command line for this guest, and a first boot of each kind (caches, libvirt's
    # capabilities) before anything is timed.
    run(VMM.vmctl + ["start", VM_DOM])
    captured = floor.Captured(VMM.pid(), f"{args.work}/floor-files")
    argv = captured.argv
    VMM.cleanup(0)
    FLOOR = floor.QemuFloor(captured, f"{args.work}/floor")
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
    diffs=[("marker", "vmm", "floor"), ("marker", "vmm-root", "floor"), ("marker", "libvirt", "floor"), ("marker", "vmm", "vmm-root"),
           ("returned", "vmm", "floor"), ("returned", "vmm-root", "floor"), ("returned", "libvirt", "floor"), ("returned", "vmm", "vmm-root")],
    floor_argv=argv, floor_descriptors=floor.chardev_fds(argv), floor_files=FLOOR.files if FLOOR else {},
    guest={"kernel": KERNEL, "initrd": INITRD, "cmdline": CMDLINE, "memory": "256MiB", "vcpus": 1}))
