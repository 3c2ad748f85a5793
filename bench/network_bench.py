#!/usr/bin/env python3
"""Times start and stop of a NAT network with DHCP on vmmd and on libvirt, in pairs (bench/sampling.py).

Four clients: vmm over one kept-alive JSON-RPC connection, vmctl (a process per call), virsh
(a process per call) and one long-running virsh shell. Both vmm clients work on one vmm
network, both libvirt clients on one libvirt network. Between the timed calls (untimed) every
start is checked to have made the bridge and a running dnsmasq, and every stop to have removed
both. Right before every timed cycle, the same client runs one untimed checked cycle. Meant to
run inside bench/network.sh's private network namespace. Writes JSON with every sample."""
import argparse, json, os, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_clients, sampling  # noqa: E402

p = argparse.ArgumentParser()
for a in ("--vmctl", "--socket", "--vmm-network", "--vmm-ipv4", "--vmm-dhcp", "--libvirt-uri", "--libvirt-network",
          "--libvirt-xml", "--dnsmasq-pids", "--out"):
    p.add_argument(a, required=True)
p.add_argument("--runs", type=int, default=15)
args = p.parse_args()

VMM_NET, LV_NET = args.vmm_network, args.libvirt_network
VMCTL = [args.vmctl, "--connect", args.socket]
VIRSH = ["virsh", "-q", "-c", args.libvirt_uri]
LV_PIDFILE = f"/run/libvirt/network/{LV_NET}.pid"

TIMEOUT = 60


def cli(argv):
    return bench_clients.cli(argv, TIMEOUT)


rpc = bench_clients.Rpc(args.socket, TIMEOUT)
shell = bench_clients.VirshShell(VIRSH, TIMEOUT)

TARGETS = {
    "vmm rpc": {"start": lambda: rpc.call("network.start", {"name": VMM_NET}),
                "stop": lambda: rpc.call("network.stop", {"name": VMM_NET})},
    "vmctl": {"start": lambda: cli(VMCTL + ["net", "start", VMM_NET]),
              "stop": lambda: cli(VMCTL + ["net", "stop", VMM_NET])},
    "virsh shell": {"start": lambda: shell.run(f"net-start {LV_NET}"),
                    "stop": lambda: shell.run(f"net-destroy {LV_NET}")},
    "virsh": {"start": lambda: cli(VIRSH + ["net-start", LV_NET]),
              "stop": lambda: cli(VIRSH + ["net-destroy", LV_NET])},
}
VMM_SIDE = ("vmm rpc", "vmctl")
errors, problems = {}, []
dnsmasq_seen = set()
bridges = {}


def links():
    return sorted(os.listdir("/sys/class/net"))


def alive(pid):
    """Running and not a zombie (a dnsmasq detached from libvirtd waits for init to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def dnsmasq_pid(target):
    if target in VMM_SIDE:
        return rpc.call("network.get", {"name": VMM_NET}).get("runtime", {}).get("dnsmasq_pid", 0)
    try:
        return int(open(LV_PIDFILE).read().strip())
    except (FileNotFoundError, ValueError):
        return 0


def note_pid(pid):
    if pid > 0 and pid not in dnsmasq_seen:
        dnsmasq_seen.add(pid)
        with open(args.dnsmasq_pids, "a") as f:  # network.sh stops any left at exit
            f.write(f"{pid}\n")


def check_started(target, bridge):
    pid = dnsmasq_pid(target)
    note_pid(pid)
    if bridge not in links():
        problems.append(f"{target}: bridge {bridge} missing after start")
    if not alive(pid):
        problems.append(f"{target}: no running dnsmasq after start (pid {pid})")
    return pid


def check_stopped(target, bridge, pid):
    deadline = time.monotonic() + 2
    while (alive(pid) or bridge in links()) and time.monotonic() < deadline:
        time.sleep(0.01)
    if bridge in links():
        problems.append(f"{target}: bridge {bridge} still there after stop")
    if alive(pid):
        problems.append(f"{target}: dnsmasq {pid} still running 2 s after stop")


def cycle(target):
    """Start, check, stop, check; returns the start and stop times."""
    bridge = bridges["vmm" if target in VMM_SIDE else "libvirt"]
    t0 = sampling.now_ms()
    TARGETS[target]["start"]()
    start = sampling.now_ms() - t0
    pid = check_started(target, bridge)
    t0 = sampling.now_ms()
    TARGETS[target]["stop"]()
    stop = sampling.now_ms() - t0
    check_stopped(target, bridge, pid)
    return {"start": start, "stop": stop}


def setup():
    lo, hi = args.vmm_dhcp.split(",")
    rpc.call("network.create", {"definition": {"name": VMM_NET, "mode": "nat", "ipv4": args.vmm_ipv4,
                                               "dhcp": {"enabled": True, "start": lo, "end": hi}, "autostart": False},
                                "start": False})
    bridges["vmm"] = rpc.call("network.get", {"name": VMM_NET})["bridge"]
    shell.run(f"net-define {args.libvirt_xml}")
    bridges["libvirt"] = cli(VIRSH + ["net-info", LV_NET]).decode().split("Bridge:")[1].split()[0]
    for target in TARGETS:  # every path once before timing
        cycle(target)


def teardown():
    rpc.call("network.delete", {"name": VMM_NET})
    shell.run(f"net-undefine {LV_NET}")


t_start = time.perf_counter()
left = {}
result = {}
try:
    setup()
    targets = {t: sampling.Target(lambda i, t=t: cycle(t), warmup=lambda i, t=t: cycle(t)) for t in TARGETS}
    result = sampling.PairedRun(targets, args.runs, ("start", "stop"), preceding=(
        "right before every timed cycle, one untimed start-check-stop-check cycle through the same client")).run().result()
    teardown()
except Exception as e:  # report what was measured and why the rest is missing
    errors["run"] = str(e)
finally:
    shell.close()
    left = {"links": [l for l in links() if l != "lo"], "dnsmasq_running": sorted(p for p in dnsmasq_seen if alive(p))}

sampling.write_result(args.out, dict(result, **{
    "runs": args.runs, "firewall": cli(["iptables", "--version"]).decode().strip(), "seconds": round(time.perf_counter() - t_start, 1),
    "bridges": bridges, "dnsmasq_processes_seen": len(dnsmasq_seen), "left_after_run": left,
    "check_failures": problems, "run_errors": errors}))
