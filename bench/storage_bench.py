#!/usr/bin/env python3
"""Times volume operations on vmmd's dir pool and on a libvirt dir pool, interleaved run by run.

Four clients: vmm over one kept-alive JSON-RPC connection, vmctl (a process per call), virsh
(a process per call) and one long-running virsh shell (one libvirt connection). Prints JSON
with every sample; the median of each is what the report shows."""
import argparse, json, os, select, shutil, socket, statistics, subprocess, time

import bench_clients

p = argparse.ArgumentParser()
for a in ("--vmctl", "--socket", "--vmm-pool-dir", "--libvirt-uri", "--libvirt-pool", "--libvirt-pool-dir", "--work"):
    p.add_argument(a, required=True)
p.add_argument("--runs", type=int, default=20)
p.add_argument("--full-runs", type=int, default=20)
p.add_argument("--bulk", type=int, default=1000)
p.add_argument("--bulk-runs", type=int, default=5)
args = p.parse_args()

VMM_POOL, LV_POOL = "default", args.libvirt_pool
VMCTL = [args.vmctl, "--connect", args.socket]
VIRSH = ["virsh", "-q", "-c", args.libvirt_uri]
TIMEOUT = 120


def cli(argv):
    return bench_clients.cli(argv, TIMEOUT)



rpc = bench_clients.Rpc(args.socket, TIMEOUT)
shell = bench_clients.VirshShell(VIRSH, TIMEOUT)

# target -> operation -> function(name); every client works on its own volumes
TARGETS = {
    "vmm rpc": {
        "create": lambda n: rpc.call("volume.create", {"pool": VMM_POOL, "volume": {"name": n, "capacity": "1G", "format": "qcow2"}}),
        "linked_clone": lambda n: rpc.call_and_wait("volume.clone", {"pool": VMM_POOL, "name": "base10g", "target": n, "linked": True}),
        "full_clone": lambda n: rpc.call_and_wait("volume.clone", {"pool": VMM_POOL, "name": "src64", "target": n, "linked": False}),
        "delete": lambda n: rpc.call("volume.delete", {"pool": VMM_POOL, "name": n}),
        "refresh": lambda: rpc.call("pool.refresh", {"name": VMM_POOL}),
        "list": lambda: rpc.call("volume.list", {"pool": VMM_POOL}),
    },
    "vmctl": {
        "create": lambda n: cli(VMCTL + ["vol", "create", VMM_POOL, n, "1G"]),
        "linked_clone": lambda n: cli(VMCTL + ["vol", "clone", VMM_POOL, "base10g", n]),
        "full_clone": lambda n: cli(VMCTL + ["vol", "clone", VMM_POOL, "src64", n, "--full"]),
        "delete": lambda n: cli(VMCTL + ["vol", "delete", VMM_POOL, n]),
        "refresh": lambda: cli(VMCTL + ["pool", "refresh", VMM_POOL]),
        "list": lambda: cli(VMCTL + ["-o", "json", "vol", "list", VMM_POOL]),
    },
    "virsh shell": {
        "create": lambda n: shell.run(f"vol-create-as {LV_POOL} {n} 1G --format qcow2"),
        "linked_clone": lambda n: shell.run(f"vol-create-as {LV_POOL} {n} 10G --format qcow2 --backing-vol base10g --backing-vol-format qcow2"),
        "full_clone": lambda n: shell.run(f"vol-clone --pool {LV_POOL} src64 {n}"),
        "delete": lambda n: shell.run(f"vol-delete --pool {LV_POOL} {n}"),
        "refresh": lambda: shell.run(f"pool-refresh {LV_POOL}"),
        "list": lambda: shell.run(f"vol-list {LV_POOL} --details"),
        "list_names": lambda: shell.run(f"vol-list {LV_POOL}"),
    },
    "virsh": {
        "create": lambda n: cli(VIRSH + ["vol-create-as", LV_POOL, n, "1G", "--format", "qcow2"]),
        "linked_clone": lambda n: cli(VIRSH + ["vol-create-as", LV_POOL, n, "10G", "--format", "qcow2",
                                               "--backing-vol", "base10g", "--backing-vol-format", "qcow2"]),
        "full_clone": lambda n: cli(VIRSH + ["vol-clone", "--pool", LV_POOL, "src64", n]),
        "delete": lambda n: cli(VIRSH + ["vol-delete", "--pool", LV_POOL, n]),
        "refresh": lambda: cli(VIRSH + ["pool-refresh", LV_POOL]),
        "list": lambda: cli(VIRSH + ["vol-list", LV_POOL, "--details"]),
        "list_names": lambda: cli(VIRSH + ["vol-list", LV_POOL]),
    },
}
SHORT = {"vmm rpc": "r", "vmctl": "c", "virsh shell": "s", "virsh": "v"}
samples = {}
errors = {}


def timed(op, target, fn, *a):
    t0 = time.perf_counter()
    fn(*a)
    samples.setdefault(op, {}).setdefault(target, []).append((time.perf_counter() - t0) * 1000)


def paired(op, runs, prefix=None, after=None):
    """Runs op on every target, rotating which goes first, `runs` times; with a prefix, on the
    volume named prefix-target-run."""
    order = list(TARGETS)
    for i in range(runs):
        for target in order[i % len(order):] + order[:i % len(order)]:
            fn = TARGETS[target].get(op)
            if not fn or target in errors.get(op, {}):
                continue
            try:
                if prefix:
                    name = f"{prefix}-{SHORT[target]}-{i}"
                    timed(op, target, fn, name)
                    if after:
                        after(target, name)
                else:
                    timed(op, target, fn)
            except Exception as e:  # report, do not hide
                errors.setdefault(op, {})[target] = str(e)


def delete_untimed(target, name):
    TARGETS[target]["delete"](name)


def fill_raw(path, size):
    with open(path, "r+b") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(size >> 20):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())


def setup():
    rpc.call("volume.create", {"pool": VMM_POOL, "volume": {"name": "base10g", "capacity": "10G", "format": "qcow2"}})
    rpc.call("volume.create", {"pool": VMM_POOL, "volume": {"name": "src64", "capacity": "64M", "format": "raw"}})
    shell.run(f"vol-create-as {LV_POOL} base10g 10G --format qcow2")
    shell.run(f"vol-create-as {LV_POOL} src64 64M --format raw")
    fill_raw(os.path.join(args.vmm_pool_dir, "src64"), 64 << 20)
    fill_raw(os.path.join(args.libvirt_pool_dir, "src64"), 64 << 20)
    rpc.call("pool.refresh", {"name": VMM_POOL})
    shell.run(f"pool-refresh {LV_POOL}")
    # warm every path once (first qemu-img spawn, page cache)
    for target, ops in TARGETS.items():
        ops["create"](f"warm-{SHORT[target]}")
        ops["delete"](f"warm-{SHORT[target]}")


def add_bulk():
    """Places args.bulk small qcow2 files straight into both pool directories."""
    template = os.path.join(args.work, "template.qcow2")
    cli(["qemu-img", "create", "-q", "-f", "qcow2", template, "64M"])
    for d in (args.vmm_pool_dir, args.libvirt_pool_dir):
        for i in range(args.bulk):
            shutil.copyfile(template, os.path.join(d, f"bulk{i:04d}"))
    os.sync()
    for ops in TARGETS.values():  # every client sees them once before timing
        ops["refresh"]()


def counts():
    vmm = len(rpc.call("volume.list", {"pool": VMM_POOL}))
    lv = len([l for l in cli(VIRSH + ["vol-list", LV_POOL]).decode().splitlines() if l.strip()])
    return {"vmm": vmm, "libvirt": lv}


t_start = time.perf_counter()
volume_counts = {}
try:
    setup()
    paired("create", args.runs, "cr")
    paired("linked_clone", args.runs, "li")
    paired("full_clone", args.full_runs, "fu", after=delete_untimed)
    paired("delete", args.runs, "cr")  # the volumes create made
    for target, ops in TARGETS.items():
        for i in range(args.runs):
            try:
                ops["delete"](f"li-{SHORT[target]}-{i}")
            except Exception:
                pass  # never made: its error is in errors already
    add_bulk()
    volume_counts = counts()
    paired("refresh", args.bulk_runs)
    paired("list", args.bulk_runs)
    paired("list_names", args.bulk_runs)
except Exception as e:  # report what was measured and why the rest is missing
    errors.setdefault("run", {})["driver"] = str(e)
finally:
    shell.close()

print(json.dumps({
    "runs": args.runs, "full_runs": args.full_runs, "bulk": args.bulk, "bulk_runs": args.bulk_runs,
    "volumes_in_pool": volume_counts, "seconds": round(time.perf_counter() - t_start, 1),
    "median_ms": {op: {t: round(statistics.median(v), 3) for t, v in by.items()} for op, by in samples.items()},
    "samples_ms": {op: {t: [round(x, 3) for x in v] for t, v in by.items()} for op, by in samples.items()},
    "errors": errors}, indent=2))
