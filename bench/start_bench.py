#!/usr/bin/env python3
"""Times spawn -> console marker for one guest started by bare QEMU, by vmmd (vmctl start)
and by libvirtd (virsh start), interleaved run by run. Prints JSON with every sample."""
import argparse, json, os, statistics, subprocess, time

import bench_clients

p = argparse.ArgumentParser()
for a in ("--guest", "--work", "--vmctl", "--socket", "--vmmd-state"):
    p.add_argument(a, required=True)
p.add_argument("--runs", type=int, default=10)
args = p.parse_args()

KERNEL, INITRD = f"{args.guest}/vmlinux", f"{args.guest}/full.cpio"
CMDLINE = "console=ttyS0 panic=-1 quiet tg.marker=BENCH-MARKER"
MARKER = b"BENCH-MARKER"
VMCTL = [args.vmctl, "--connect", args.socket]


def wait_marker(path, t0, timeout=60):
    while time.perf_counter() - t0 < timeout:
        try:
            with open(path, "rb") as f:
                if MARKER in f.read():
                    return (time.perf_counter() - t0) * 1000
        except FileNotFoundError:
            pass
        time.sleep(0.002)
    raise RuntimeError(f"no marker in {path}")


FLOOR_ARGV = []


def floor_run(i):
    # vmmd's own QEMU command line, started by hand: its inherited socket fds become a
    # monitor socket path and a console file, and without -S the guest runs at once.
    log = f"{args.work}/floor-{i}.log"
    argv = bench_clients.floor_argv(FLOOR_ARGV, args.work, i)
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return wait_marker(log, t0)
    finally:
        proc.kill()
        proc.wait()


def capture_argv():
    """Starts bench0 once through vmmd (also warming caches) and keeps its QEMU argv."""
    vmm_run(0, keep=True)
    info = json.loads(subprocess.run(VMCTL + ["info", "bench0", "-o", "json"], check=True, capture_output=True).stdout)
    pid = info["runtime"]["pid"]
    FLOOR_ARGV.extend(open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\0")[:-1])
    subprocess.run(VMCTL + ["destroy", "bench0"], stdout=subprocess.DEVNULL)


def vmm_run(i, keep=False):
    name = f"bench{i}"
    log = f"{args.vmmd_state}/qemu/{name}/console.log"
    if os.path.exists(log):
        os.remove(log)
    t0 = time.perf_counter()
    subprocess.run(VMCTL + ["start", name], check=True, stdout=subprocess.DEVNULL)
    try:
        return wait_marker(log, t0)
    finally:
        if not keep:
            subprocess.run(VMCTL + ["destroy", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def libvirt_run(i):
    name = f"vmmbench{i}"
    log = f"{args.work}/libvirt-{i}.log"
    t0 = time.perf_counter()
    subprocess.run(["virsh", "-q", "-c", "qemu:///system", "start", name], check=True, stdout=subprocess.DEVNULL)
    try:
        return wait_marker(log, t0)
    finally:
        subprocess.run(["virsh", "-q", "-c", "qemu:///system", "destroy", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def define_all():
    for i in range(args.runs):
        d = {"name": f"bench{i}", "type": "qemu", "vcpus": 1, "memory": "256MiB", "guest_agent": False,
             "boot": {"kernel": KERNEL, "initrd": INITRD, "cmdline": CMDLINE}}
        path = f"{args.work}/bench{i}.json"
        json.dump(d, open(path, "w"))
        subprocess.run(VMCTL + ["define", path], check=True, stdout=subprocess.DEVNULL)
        xml = f"""<domain type='qemu'><name>vmmbench{i}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='q35'>hvm</type><kernel>{KERNEL}</kernel><initrd>{INITRD}</initrd><cmdline>{CMDLINE}</cmdline></os>
<cpu mode='maximum'/><features><acpi/></features>
<devices><emulator>/usr/bin/qemu-system-x86_64</emulator><serial type='file'><source path='{args.work}/libvirt-{i}.log'/><target port='0'/></serial>
<memballoon model='none'/></devices></domain>"""
        xpath = f"{args.work}/vmmbench{i}.xml"
        open(xpath, "w").write(xml)
        subprocess.run(["virsh", "-q", "-c", "qemu:///system", "undefine", f"vmmbench{i}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["virsh", "-q", "-c", "qemu:///system", "define", xpath], check=True, stdout=subprocess.DEVNULL)


def undefine_all():
    for i in range(args.runs):
        subprocess.run(VMCTL + ["undefine", f"bench{i}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["virsh", "-q", "-c", "qemu:///system", "undefine", f"vmmbench{i}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


define_all()
samples = {"floor": [], "vmm": [], "libvirt": []}
errors = {}
try:
    capture_argv()
    floor_run("warm")
    for i in range(args.runs):
        samples["floor"].append(floor_run(i))
        samples["vmm"].append(vmm_run(i))
        try:
            samples["libvirt"].append(libvirt_run(i))
        except Exception as e:  # report, do not hide
            errors["libvirt"] = str(e)
finally:
    undefine_all()

med = {k: statistics.median(v) for k, v in samples.items() if v}
pairs_vmm = [v - f for v, f in zip(samples["vmm"], samples["floor"])]
pairs_lv = [v - f for v, f in zip(samples["libvirt"], samples["floor"])]
print(json.dumps({"runs": args.runs, "floor_argv": FLOOR_ARGV, "samples_ms": samples, "median_ms": med,
                  "overhead_ms_median": {"vmm": statistics.median(pairs_vmm) if pairs_vmm else None,
                                         "libvirt": statistics.median(pairs_lv) if pairs_lv else None},
                  "errors": errors}, indent=2))
