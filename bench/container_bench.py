#!/usr/bin/env python3
"""Container start -> first command and stop, in pairs (bench/sampling.py): vmm over one JSON-RPC
connection, vmm through vmctl processes, LXD through its lxc client, and the native floor. Right
before every timed sample, the same client runs one untimed start -> command -> forced stop.
Writes JSON with every sample."""
import argparse, json, os, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sampling  # noqa: E402
from bench_clients import Rpc  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--runs", type=int, default=20)
p.add_argument("--rootfs", required=True)
p.add_argument("--work", required=True)
p.add_argument("--vmctl", required=True)
p.add_argument("--socket", required=True)
p.add_argument("--lxd", type=int, default=0)
p.add_argument("--lxd-status", default="")
p.add_argument("--out", required=True)
args = p.parse_args()

TIMEOUT = 60


def ms(t0):
    return sampling.now_ms() - t0


def run(argv):
    r = subprocess.run(argv, capture_output=True, timeout=TIMEOUT)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.decode(errors='replace').strip()[-300:]}")
    return r.stdout


def measure():
    vmctl = [args.vmctl, "--connect", args.socket]
    rpc = Rpc(args.socket, TIMEOUT)
    for name in ("bench-rpc", "bench-cli"):
        d = {"name": name, "type": "lxc", "memory": "128MiB",
             "container": {"rootfs": {"path": args.rootfs}, "init": ["/sbin/init"], "privileged": True}}
        rpc.call("domain.create", {"definition": d})
    lxc = ["lxc"]
    if args.lxd:
        run(lxc + ["init", "vmmbench-busybox", "bench-lxd", "-c", "security.privileged=true"])

    def vmm_rpc(stop_kind):
        t0 = sampling.now_ms()
        rpc.call_and_wait("domain.start", {"name": "bench-rpc"})
        r = rpc.call_and_wait("domain.exec", {"name": "bench-rpc", "command": ["true"]})
        start = ms(t0)
        if r.get("exit_code", 0) != 0:
            raise RuntimeError(f"exec: {r}")
        t1 = sampling.now_ms()
        if stop_kind == "graceful":
            rpc.call_and_wait("domain.shutdown", {"name": "bench-rpc", "timeout": "30s"})
        else:
            rpc.call("domain.destroy", {"name": "bench-rpc"})
        return start, ms(t1)

    def vmm_cli(stop_kind):
        t0 = sampling.now_ms()
        run(vmctl + ["start", "bench-cli"])
        run(vmctl + ["exec", "bench-cli", "--", "true"])
        start = ms(t0)
        t1 = sampling.now_ms()
        run(vmctl + (["shutdown", "bench-cli", "--timeout", "30s"] if stop_kind == "graceful" else ["destroy", "bench-cli"]))
        return start, ms(t1)

    def lxd(stop_kind):
        t0 = sampling.now_ms()
        run(lxc + ["start", "bench-lxd"])
        run(lxc + ["exec", "bench-lxd", "--", "true"])
        start = ms(t0)
        t1 = sampling.now_ms()
        run(lxc + (["stop", "bench-lxd"] if stop_kind == "graceful" else ["stop", "--force", "bench-lxd"]))
        return start, ms(t1)

    def floor(_):
        # New mount, uts, ipc, pid and net namespaces, chroot into the same rootfs, exec a
        # command: the kernel work every container start includes (no cgroups, no veth, no
        # pivot_root, no console). Its stop is the exit itself: not measured.
        t0 = sampling.now_ms()
        run(["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--net", "chroot", args.rootfs, "/bin/true"])
        return ms(t0), None

    fns = {"floor": floor, "vmm rpc": vmm_rpc, "vmm vmctl": vmm_cli}
    if args.lxd:
        fns["lxd"] = lxd

    def sample(fn):
        out = {}
        out["start"], stop = fn("graceful")
        if stop is not None:
            out["stop"] = stop
        start, stop = fn("forced")
        if stop is not None:
            out["start_forced"], out["stop_forced"] = start, stop
        return out

    def quiet(argv):
        subprocess.run(argv, capture_output=True, timeout=TIMEOUT)

    # After every sample (untimed, also after a failed one): nothing left running.
    cleanups = {"floor": None,
                "vmm rpc": lambda i: quiet(vmctl + ["destroy", "bench-rpc"]),
                "vmm vmctl": lambda i: quiet(vmctl + ["destroy", "bench-cli"]),
                "lxd": lambda i: quiet(lxc + ["stop", "--force", "bench-lxd"])}
    targets = {t: sampling.Target(lambda i, fn=fn: sample(fn), warmup=lambda i, fn=fn: fn("forced"), cleanup=cleanups[t])
               for t, fn in fns.items()}
    result = {}
    try:
        for fn in fns.values():  # caches (binaries, page cache, LXD's image) before anything is timed
            fn("forced")
        result = sampling.PairedRun(targets, args.runs, ("start", "stop", "start_forced", "stop_forced"), preceding=(
            "right before every timed sample, one untimed start -> first command -> forced stop through the same client"
        )).run().result()
    finally:
        for name in ("bench-rpc", "bench-cli"):
            try:
                rpc.call("domain.destroy", {"name": name})
            except Exception:
                pass
            try:
                rpc.call("domain.delete", {"name": name})
            except Exception:
                subprocess.run(vmctl + ["undefine", name], capture_output=True, timeout=TIMEOUT)
        if args.lxd:
            subprocess.run(lxc + ["delete", "--force", "bench-lxd"], capture_output=True, timeout=TIMEOUT)
    lxd_version = ""
    if args.lxd:
        lxd_version = subprocess.run(["lxd", "--version"], capture_output=True, text=True).stdout.strip()
    sampling.write_result(args.out, dict(result, lxd={"ran": bool(args.lxd), "status": args.lxd_status, "version": lxd_version}))


measure()
