#!/usr/bin/env python3
"""Times internal snapshots with memory of a running 256 MiB guest: create, revert and delete,
under vmmd and under libvirtd, in pairs (bench/sampling.py).

One guest per side (the test guest, direct kernel boot, TCG, a 64 MiB qcow2 disk). Four clients:
vmm over one kept-alive JSON-RPC connection, vmctl (a process per call), one long-running virsh
shell and virsh per call. Each run of a client creates a snapshot, reverts to it and deletes it,
each call timed; after every revert the guest is checked (untimed) to be running again. Right
before every timed run, the same client creates and deletes a scratch snapshot (untimed). Writes
JSON with every sample."""
import argparse, datetime, json, os, re, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_clients, sampling  # noqa: E402

p = argparse.ArgumentParser()
for a in ("--guest", "--work", "--vmctl", "--socket", "--vmmd-state", "--libvirt-uri", "--vmm-domain", "--libvirt-domain", "--out"):
    p.add_argument(a, required=True)
p.add_argument("--runs", type=int, default=20)
args = p.parse_args()

KERNEL, INITRD = f"{args.guest}/vmlinux", f"{args.guest}/full.cpio"
CMDLINE = "console=ttyS0 panic=-1 quiet tg.marker=BENCH-MARKER"
MARKER = b"BENCH-MARKER"
VMCTL = [args.vmctl, "--connect", args.socket]
VIRSH = ["virsh", "-q", "-c", args.libvirt_uri]
VD, LD = args.vmm_domain, args.libvirt_domain
TIMEOUT = 180


def cli(argv):
    return bench_clients.cli(argv, TIMEOUT)


def wait_marker(path, timeout=120):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            with open(path, "rb") as f:
                if MARKER in f.read():
                    return
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"no boot marker in {path}")


def qcow2(name):
    path = os.path.join(args.work, name)
    cli(["qemu-img", "create", "-q", "-f", "qcow2", path, "64M"])
    os.chmod(path, 0o666)
    return path


def boot_vmm():
    d = {"name": VD, "type": "qemu", "vcpus": 1, "memory": "256MiB", "guest_agent": False,
         "boot": {"kernel": KERNEL, "initrd": INITRD, "cmdline": CMDLINE},
         "disks": [{"source": {"path": qcow2("vmm.qcow2")}, "format": "qcow2"}]}
    path = os.path.join(args.work, f"{VD}.json")
    json.dump(d, open(path, "w"))
    cli(VMCTL + ["define", path])
    cli(VMCTL + ["start", VD])
    wait_marker(f"{args.vmmd_state}/qemu/{VD}/console.log")


def boot_libvirt():
    disk, log = qcow2("libvirt.qcow2"), os.path.join(args.work, "libvirt-console.log")
    xml = f"""<domain type='qemu'><name>{LD}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='q35'>hvm</type><kernel>{KERNEL}</kernel><initrd>{INITRD}</initrd><cmdline>{CMDLINE}</cmdline></os>
<cpu mode='maximum'/><features><acpi/></features>
<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/><target dev='vda' bus='virtio'/></disk>
<serial type='file'><source path='{log}'/><target port='0'/></serial>
<memballoon model='none'/></devices></domain>"""
    path = os.path.join(args.work, f"{LD}.xml")
    open(path, "w").write(xml)
    cli(VIRSH + ["define", path])
    cli(VIRSH + ["start", LD])
    wait_marker(log)


rpc = bench_clients.Rpc(args.socket, TIMEOUT)
shell = bench_clients.VirshShell(VIRSH, TIMEOUT)


def vmm_pid():
    return rpc.call("domain.get", {"name": VD}).get("runtime", {}).get("pid")


def libvirt_pid():
    try:
        return int(open(f"/run/libvirt/qemu/{LD}.pid").read().strip())
    except (OSError, ValueError):
        return None


def vmm_running():
    return rpc.call("domain.get", {"name": VD}).get("state") == "running"


def libvirt_running():
    return cli(VIRSH + ["domstate", LD]).decode().strip() == "running"


# target -> (operation -> function(snapshot name), the running check of its side, its QEMU pid)
TARGETS = {
    "vmm rpc": ({
        "create": lambda s: rpc.call_and_wait("snapshot.create", {"name": VD, "snapshot": s}),
        "revert": lambda s: rpc.call_and_wait("snapshot.revert", {"name": VD, "snapshot": s}),
        "delete": lambda s: rpc.call_and_wait("snapshot.delete", {"name": VD, "snapshot": s}),
    }, vmm_running, vmm_pid),
    "vmctl": ({
        "create": lambda s: cli(VMCTL + ["snapshot", "create", VD, s]),
        "revert": lambda s: cli(VMCTL + ["snapshot", "revert", VD, s]),
        "delete": lambda s: cli(VMCTL + ["snapshot", "delete", VD, s]),
    }, vmm_running, vmm_pid),
    "virsh shell": ({
        "create": lambda s: shell.run(f"snapshot-create-as {LD} {s}"),
        "revert": lambda s: shell.run(f"snapshot-revert {LD} {s}"),
        "delete": lambda s: shell.run(f"snapshot-delete {LD} {s}"),
    }, libvirt_running, libvirt_pid),
    "virsh": ({
        "create": lambda s: cli(VIRSH + ["snapshot-create-as", LD, s]),
        "revert": lambda s: cli(VIRSH + ["snapshot-revert", LD, s]),
        "delete": lambda s: cli(VIRSH + ["snapshot-delete", LD, s]),
    }, libvirt_running, libvirt_pid),
}
SHORT = {"vmm rpc": "r", "vmctl": "c", "virsh shell": "s", "virsh": "v"}
errors = {}
check_failures = []
qemu_restarts_on_revert = {}  # target -> reverts after which the guest ran in a new QEMU process


def one_run(target, snap):
    """Create, revert (the guest checked to be running after it), delete; each call timed."""
    ops, running, qemu_pid = TARGETS[target]
    out = {}
    for op in ("create", "revert", "delete"):
        pid = qemu_pid() if op == "revert" else None
        t0 = sampling.now_ms()
        ops[op](snap)
        out[op] = sampling.now_ms() - t0
        if op == "revert" and not running():
            check_failures.append(f"{target} {snap}: guest not running after revert")
        if op == "revert":
            qemu_restarts_on_revert[target] = qemu_restarts_on_revert.get(target, 0) + (qemu_pid() != pid)
    return out


def warm(target, i):
    ops = TARGETS[target][0]
    ops["create"](f"w-{SHORT[target]}-{i}")
    ops["delete"](f"w-{SHORT[target]}-{i}")


def snapshots_left():
    vmm = rpc.call("snapshot.list", {"name": VD})
    lv = [l for l in cli(VIRSH + ["snapshot-list", LD, "--name"]).decode().splitlines() if l.strip()]
    return {"vmm": len(vmm) if isinstance(vmm, list) else vmm, "libvirt": len(lv)}


def libvirt_restart_gaps_ms():
    """From libvirt's log of the domain: the time between QEMU stopped for a revert and the new
    QEMU being started (libvirt logs both lines itself)."""
    events = []
    try:
        for line in open(f"/var/log/libvirt/qemu/{LD}.log", errors="replace"):
            m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\+0000: (starting up|shutting down, reason=from snapshot)", line)
            if m:
                events.append((datetime.datetime.fromisoformat(m.group(1)), m.group(2)))
    except OSError:
        return []
    return [round((b[0] - a[0]).total_seconds() * 1000) for a, b in zip(events, events[1:])
            if a[1].startswith("shutting down") and b[1] == "starting up"]


t_start = time.perf_counter()
left = {}
result = {}
try:
    boot_vmm()
    boot_libvirt()
    for target in TARGETS:  # every path once before anything is timed
        one_run(target, f"first-{SHORT[target]}")
    qemu_restarts_on_revert.clear()
    targets = {t: sampling.Target(lambda i, t=t: one_run(t, f"snap-{SHORT[t]}-{i}"), warmup=lambda i, t=t: warm(t, i))
               for t in TARGETS}
    result = sampling.PairedRun(targets, args.runs, ("create", "revert", "delete"), preceding=(
        "right before every timed create-revert-delete, an untimed create and delete of a scratch snapshot "
        "through the same client")).run().result()
    left = snapshots_left()
except Exception as e:  # report what was measured and why the rest is missing
    errors["run"] = str(e)
finally:
    shell.close()
    subprocess.run(VMCTL + ["destroy", VD], capture_output=True)
    subprocess.run(VMCTL + ["undefine", VD], capture_output=True)
    subprocess.run(VIRSH + ["destroy", LD], capture_output=True)
    subprocess.run(VIRSH + ["undefine", "--snapshots-metadata", LD], capture_output=True)

sampling.write_result(args.out, dict(result, **{
    "runs": args.runs, "memory": "256MiB", "disk": "64 MiB qcow2", "snapshots_left": left,
    "check_failures": check_failures, "qemu_restarts_on_revert": qemu_restarts_on_revert,
    "libvirt_stop_to_start_ms": libvirt_restart_gaps_ms(), "seconds": round(time.perf_counter() - t_start, 1),
    "run_errors": errors}))
