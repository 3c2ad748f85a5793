#!/usr/bin/env python3
"""Container start -> first command and stop, interleaved run by run: vmm over one JSON-RPC
connection, vmm through vmctl processes, LXD through its lxc client, and the native floor.
Prints JSON with every sample. With --render, writes the "Containers" section of
docs/benchmarks.md from such a JSON file (other sections are left as they are)."""
import argparse, json, os, statistics, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

p = argparse.ArgumentParser()
p.add_argument("--runs", type=int, default=10)
p.add_argument("--rootfs")
p.add_argument("--work")
p.add_argument("--vmctl")
p.add_argument("--socket")
p.add_argument("--lxd", type=int, default=0)
p.add_argument("--render")
p.add_argument("--doc")
args = p.parse_args()

TIMEOUT = 60
HEADING = "## Containers: start -> first command, stop (bench/container.sh)"


def ms(t0):
    return (time.perf_counter() - t0) * 1000


def run(argv):
    r = subprocess.run(argv, capture_output=True, timeout=TIMEOUT)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.decode(errors='replace').strip()[-300:]}")
    return r.stdout


def measure():
    from bench_clients import Rpc
    vmctl = [args.vmctl, "--connect", args.socket]
    rpc = Rpc(args.socket, TIMEOUT)
    for name in ("bench-rpc", "bench-cli"):
        d = {"name": name, "type": "lxc", "memory": "128MiB",
             "container": {"rootfs": {"path": args.rootfs}, "init": ["/sbin/init"]}}
        rpc.call("domain.create", {"definition": d})
    lxc = ["lxc"]
    if args.lxd:
        run(lxc + ["init", "vmmbench-busybox", "bench-lxd", "-c", "security.privileged=true"])

    def vmm_rpc(stop_kind):
        t0 = time.perf_counter()
        rpc.call_and_wait("domain.start", {"name": "bench-rpc"})
        r = rpc.call_and_wait("domain.exec", {"name": "bench-rpc", "command": ["true"]})
        start = ms(t0)
        if r.get("exit_code", 0) != 0:
            raise RuntimeError(f"exec: {r}")
        t1 = time.perf_counter()
        if stop_kind == "graceful":
            rpc.call_and_wait("domain.shutdown", {"name": "bench-rpc", "timeout": "30s"})
        else:
            rpc.call("domain.destroy", {"name": "bench-rpc"})
        return start, ms(t1)

    def vmm_cli(stop_kind):
        t0 = time.perf_counter()
        run(vmctl + ["start", "bench-cli"])
        run(vmctl + ["exec", "bench-cli", "--", "true"])
        start = ms(t0)
        t1 = time.perf_counter()
        run(vmctl + (["shutdown", "bench-cli", "--timeout", "30s"] if stop_kind == "graceful" else ["destroy", "bench-cli"]))
        return start, ms(t1)

    def lxd(stop_kind):
        t0 = time.perf_counter()
        run(lxc + ["start", "bench-lxd"])
        run(lxc + ["exec", "bench-lxd", "--", "true"])
        start = ms(t0)
        t1 = time.perf_counter()
        run(lxc + (["stop", "bench-lxd"] if stop_kind == "graceful" else ["stop", "--force", "bench-lxd"]))
        return start, ms(t1)

    def floor(_):
        # New mount, uts, ipc, pid and net namespaces, chroot into the same rootfs, exec a
        # command: the kernel work every container start includes (no cgroups, no veth, no
        # pivot_root, no console). Its stop is the exit itself: not measured.
        t0 = time.perf_counter()
        run(["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--net", "chroot", args.rootfs, "/bin/true"])
        return ms(t0), None

    targets = {"floor": floor, "vmm rpc": vmm_rpc, "vmm vmctl": vmm_cli}
    if args.lxd:
        targets["lxd"] = lxd
    samples = {t: {"start": [], "stop": [], "start_forced": [], "stop_forced": []} for t in targets}
    errors = {}
    try:
        for t, fn in targets.items():  # warm caches (binaries, page cache, LXD's image)
            fn("forced")
        for i in range(args.runs):
            kind = "graceful"
            for t, fn in targets.items():
                try:
                    start, stop = fn(kind)
                    samples[t]["start"].append(start)
                    if stop is not None:
                        samples[t]["stop"].append(stop)
                    start, stop = fn("forced")
                    samples[t]["start_forced"].append(start)
                    if stop is not None:
                        samples[t]["stop_forced"].append(stop)
                except Exception as e:  # report, do not hide
                    errors[t] = str(e)
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
    med = {t: {k: statistics.median(v) for k, v in s.items() if v} for t, s in samples.items()}
    print(json.dumps({"runs": args.runs, "samples_ms": samples, "median_ms": med, "errors": errors,
                      "lxd_version": subprocess.run(["lxd", "--version"], capture_output=True, text=True).stdout.strip()},
                     indent=2))


def render(path, doc):
    d = json.load(open(path))
    m = d["median_ms"]

    def f(t, k):
        v = m.get(t, {}).get(k)
        return f"{v:.0f}" if isinstance(v, (int, float)) else "-"

    def ratio(k):
        a, b = m.get("vmm rpc", {}).get(k), m.get("lxd", {}).get(k)
        if not a or not b:
            return "-"
        return f"{b / a:.1f}x faster" if a < b else f"{a / b:.1f}x slower"

    out = [HEADING, "",
           f"{d['runs']} runs, interleaved, of the same static-busybox rootfs (an init that exits on SIGPWR or SIGTERM), "
           "privileged containers, no NIC. *Start -> first command*: from issuing the start until `true` run inside the "
           "container has returned (vmm: `domain.start` then `domain.exec`; vmctl: `vmctl start` then `vmctl exec` as "
           "two processes; LXD: `lxc start` then `lxc exec`). *Stop*: graceful = vmm `domain.shutdown` / `lxc stop` "
           "(init signalled, stop returns once it is gone); forced = `domain.destroy` / `lxc stop --force`. "
           f"LXD {d.get('lxd_version', '')} ran by hand with its own LXD_DIR, a dir storage pool and no network. "
           "The floor is `unshare --fork --pid --mount --uts --ipc --net chroot ROOTFS /bin/true`: the namespaces "
           "and exec every start includes, without cgroups, pivot_root, console or runtime record.", "",
           "| median, ms | floor | vmm RPC | vmm vmctl | LXD | vmm RPC vs LXD |", "|---|---|---|---|---|---|",
           f"| start -> first command | {f('floor', 'start')} | {f('vmm rpc', 'start')} | {f('vmm vmctl', 'start')} | {f('lxd', 'start')} | {ratio('start')} |",
           f"| graceful stop | - | {f('vmm rpc', 'stop')} | {f('vmm vmctl', 'stop')} | {f('lxd', 'stop')} | {ratio('stop')} |",
           f"| forced stop | - | {f('vmm rpc', 'stop_forced')} | {f('vmm vmctl', 'stop_forced')} | {f('lxd', 'stop_forced')} | {ratio('stop_forced')} |",
           "", f"Over the floor, a vmm start -> first command costs {f('vmm rpc', 'start')} - {f('floor', 'start')} ms "
           "(cgroups, pivot_root, /dev, console pty and monitor, the runtime record committed, and the exec's "
           "nsenter); the vmctl column adds two CLI processes.",
           "", "Reference measured earlier on this machine (docs/anchors): LXD `lxc start` -> marker 0.30 s, `lxc stop` 0.76 s; "
           "native floor 35-70 ms."]
    for t, e in d.get("errors", {}).items():
        out += ["", f"{t}: {e}"]
    out.append("")
    lines = open(doc).read().splitlines() if os.path.exists(doc) else ["# Benchmarks", ""]
    # Replace our section (from its heading to the next "## "), or append it.
    start = next((i for i, l in enumerate(lines) if l.startswith("## Containers")), None)
    if start is None:
        lines = lines + [""] + out if lines and lines[-1] else lines + out
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines = lines[:start] + out + lines[end:]
    open(doc, "w").write("\n".join(lines).rstrip() + "\n")
    print("wrote", doc)


if args.render:
    render(args.render, args.doc)
else:
    measure()
