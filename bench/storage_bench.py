#!/usr/bin/env python3
"""Times volume operations on vmmd's dir pool and on a libvirt dir pool, in pairs (bench/sampling.py).

Four clients: vmm over one kept-alive JSON-RPC connection, vmctl (a process per call), virsh
(a process per call) and one long-running virsh shell (one libvirt connection). Listing differs
by design: vmm's volume.list returns its cached table, libvirt's vol-list --details re-reads every
volume (a GetInfo call per volume, which refreshes it from disk); the equal-work comparison is
refresh + list on both sides. Writes JSON with every sample."""
import argparse, json, os, shutil, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_clients, sampling  # noqa: E402

p = argparse.ArgumentParser()
for a in ("--vmctl", "--socket", "--vmm-pool-dir", "--libvirt-uri", "--libvirt-pool", "--libvirt-pool-dir", "--work", "--out"):
    p.add_argument(a, required=True)
p.add_argument("--runs", type=int, default=20)
p.add_argument("--full-runs", type=int, default=20)
p.add_argument("--bulk", type=int, default=1000)
p.add_argument("--bulk-runs", type=int, default=10)
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
TARGETS["vmm rpc"]["refresh_list"] = lambda: (TARGETS["vmm rpc"]["refresh"](), TARGETS["vmm rpc"]["list"]())
TARGETS["vmctl"]["refresh_list"] = lambda: (TARGETS["vmctl"]["refresh"](), TARGETS["vmctl"]["list"]())
TARGETS["virsh shell"]["refresh_list"] = lambda: (TARGETS["virsh shell"]["refresh"](), TARGETS["virsh shell"]["list"]())
TARGETS["virsh"]["refresh_list"] = lambda: (TARGETS["virsh"]["refresh"](), TARGETS["virsh"]["list"]())
results = {}
errors = {}

# The untimed warm-up right before every timed call: the same kind of call through the same
# client (on a scratch volume where the call makes or removes one).
SCRATCH_WARMUP = {
    "create": lambda ops, t: (ops["create"](f"w-{SHORT[t]}"), ops["delete"](f"w-{SHORT[t]}")),
    "linked_clone": lambda ops, t: (ops["linked_clone"](f"w-{SHORT[t]}"), ops["delete"](f"w-{SHORT[t]}")),
    "full_clone": lambda ops, t: (ops["full_clone"](f"w-{SHORT[t]}"), ops["delete"](f"w-{SHORT[t]}")),
    "delete": lambda ops, t: (ops["create"](f"w-{SHORT[t]}"), ops["delete"](f"w-{SHORT[t]}")),
}


def paired(op, runs, prefix=None, after=None):
    """Runs op on every client that has it in `runs` pairs (bench/sampling.py); with a prefix,
    on the volume named prefix-client-pair."""
    targets = {}
    for name, ops in TARGETS.items():
        fn = ops.get(op)
        if not fn:
            continue

        def sample(i, name=name, fn=fn):
            t0 = sampling.now_ms()
            if prefix:
                fn(f"{prefix}-{SHORT[name]}-{i}")
            else:
                fn()
            return sampling.now_ms() - t0

        def warm(i, name=name, ops=ops, fn=fn):
            if op in SCRATCH_WARMUP:
                SCRATCH_WARMUP[op](ops, name)
            else:
                fn()

        cleanup = (lambda i, name=name: after(name, f"{prefix}-{SHORT[name]}-{i}")) if after else None
        targets[name] = sampling.Target(sample, warmup=warm, cleanup=cleanup)
    preceding = ("right before every timed call, an untimed call of the same kind through the same client"
                 + (" on a scratch volume" if op in SCRATCH_WARMUP else ""))
    results[op] = sampling.PairedRun(targets, runs, (op,), preceding=preceding).run().result()


def delete_untimed(target, name):
    try:
        TARGETS[target]["delete"](name)
    except Exception:
        pass  # never made: its error is in the results already


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
    paired("linked_clone", args.runs, "li", after=delete_untimed)
    paired("full_clone", args.full_runs, "fu", after=delete_untimed)
    paired("delete", args.runs, "cr")  # the volumes create made
    add_bulk()
    volume_counts = counts()
    paired("refresh", args.bulk_runs)
    paired("list", args.bulk_runs)
    paired("list_names", args.bulk_runs)
    paired("refresh_list", args.bulk_runs)
except Exception as e:  # report what was measured and why the rest is missing
    errors["run"] = str(e)
finally:
    shell.close()

sampling.write_result(args.out, {
    "runs": args.runs, "full_runs": args.full_runs, "bulk": args.bulk, "bulk_runs": args.bulk_runs,
    "volumes_in_pool": volume_counts, "seconds": round(time.perf_counter() - t_start, 1),
    "ops": results, "errors": errors})
