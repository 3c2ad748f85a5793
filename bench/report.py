#!/usr/bin/env python3
"""Renders docs/benchmarks.md from the JSON results the bench scripts leave in
build/bench-results/. Each section states what was run; numbers are medians."""
import json, os, platform, subprocess, sys, datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(os.environ.get("VMM_BUILD_DIR", os.path.join(ROOT, "build")), "bench-results")
OUT = os.path.join(ROOT, "docs", "benchmarks.md")

def load(name):
    p = os.path.join(RESULTS, name + ".json")
    return json.load(open(p)) if os.path.exists(p) else None

def ratio(a, b):
    if not a or not b:
        return "-"
    return f"{b / a:.1f}x faster" if a < b else f"{a / b:.1f}x slower"

def api_section(d):
    by = {r["target"]: r for r in d["results"]}
    vr, vh = by.get("vmm rpc", {}), by.get("vmm http", {})
    lt, lq = by.get("libvirt test:///default", {}), by.get("libvirt qemu:///system", {})
    rows = [("define one domain", "define_ms_median"), ("list all domains (name + state)", "list_ms_median"),
            ("get one domain (full definition)", "get_ms_median"), ("version / host info", "version_ms_median"),
            ("undefine one domain", "undefine_ms_median")]
    out = [f"## API: {d['count']} domains (bench/api.sh)", "",
           "One kept-alive connection per client; libvirt through its C API. `test:///default` runs "
           "inside the benchmark process (no IPC at all); `qemu:///system` goes through libvirtd, "
           "the fair counterpart of vmmd's socket. vmm commits every definition to sqlite with "
           "fsync before answering.", "",
           "| median, ms | vmm RPC | vmm HTTP | libvirt qemu:///system | libvirt test:/// (in-process) | vmm RPC vs libvirtd |",
           "|---|---|---|---|---|---|"]
    for label, key in rows:
        def f(r):
            v = r.get(key)
            return f"{v:.3f}" if isinstance(v, (int, float)) else "-"
        out.append(f"| {label} | {f(vr)} | {f(vh)} | {f(lq)} | {f(lt)} | {ratio(vr.get(key), lq.get(key))} |")
    if lq.get("error"):
        out.append(f"\nlibvirt qemu:///system: {lq['error']}")
    rss = d.get("rss_kb", {})
    cli = d.get("cli_ms", {})
    out += ["", "| memory (RSS) | vmmd | libvirtd |", "|---|---|---|",
            f"| idle | {rss.get('vmmd_idle', 0)/1024:.1f} MiB | {rss.get('libvirtd_idle', 0)/1024:.1f} MiB |",
            f"| after the run | {rss.get('vmmd_after', 0)/1024:.1f} MiB | {rss.get('libvirtd_after', 0)/1024:.1f} MiB |",
            "", "| whole CLI process, median of 20 | vmctl | virsh | ratio |", "|---|---|---|---|",
            f"| list --all | {cli.get('vmctl list --all')} ms | {cli.get('virsh list --all')} ms | {ratio(cli.get('vmctl list --all'), cli.get('virsh list --all'))} |",
            f"| host info / version | {cli.get('vmctl host info')} ms | {cli.get('virsh version')} ms | {ratio(cli.get('vmctl host info'), cli.get('virsh version'))} |",
            "", "Targets (issue): list of 1,000 under 5 ms, define under 0.5 ms, idle RSS below libvirtd's.", ""]
    return out

def start_section(d):
    m, o = d["median_ms"], d["overhead_ms_median"]
    def f(v):
        return f"{v:.0f}" if isinstance(v, (int, float)) else "-"
    out = ["## QEMU start to console marker (bench/start.sh)", "",
           f"{d['runs']} paired runs. Time from issuing the start to the test guest's marker on its serial console, under TCG. "
           "The floor is the same QEMU command line started by hand; vmmd is `vmctl start` (a whole "
           "CLI process, RPC, start with -S, QMP negotiation, `cont`, runtime record fsynced); libvirt is "
           "`virsh start` through libvirtd. Overheads are medians of per-run differences to the floor run "
           "next to them.", "",
           "| median | floor (bare QEMU) | vmm | libvirt |", "|---|---|---|---|",
           f"| spawn -> marker, ms | {f(m.get('floor'))} | {f(m.get('vmm'))} | {f(m.get('libvirt'))} |",
           f"| overhead over the floor, ms | 0 | {f(o.get('vmm'))} | {f(o.get('libvirt'))} |"]
    if isinstance(o.get("vmm"), (int, float)) and o["vmm"] > 0 and o.get("libvirt"):
        out += ["", f"vmm adds {o['libvirt'] / o['vmm']:.0f}x less start-up overhead than libvirt (target: under 50 ms over the floor)."]
    elif isinstance(o.get("vmm"), (int, float)):
        out += ["", "vmm's overhead is below what this benchmark can resolve: its runs were not slower than "
                "the hand-started floor next to them (boot-time noise under TCG is about ±100 ms; the floor "
                "attaches its monitor by socket path and its console to a file instead of inherited fds). "
                f"libvirt adds {f(o.get('libvirt'))} ms. Target: under 50 ms over the floor."]
    for k, e in d.get("errors", {}).items():
        out += ["", f"{k}: {e}"]
    return out + [""]

def storage_section(d):
    m = d["median_ms"]
    bulk = f"{d['bulk']:,}"
    def f(v):
        return f"{v:.1f}" if isinstance(v, (int, float)) else "-"
    rows = [("create a 1 GiB qcow2 volume", "create", d["runs"]),
            ("linked clone of a 10 GiB qcow2", "linked_clone", d["runs"]),
            ("full clone of a 64 MiB raw volume (data)", "full_clone", d["full_runs"]),
            ("delete a volume", "delete", d["runs"]),
            (f"refresh a pool of {bulk} volumes", "refresh", d["bulk_runs"]),
            (f"list {bulk} volumes (format, sizes)", "list", d["bulk_runs"]),
            (f"list {bulk} volumes (libvirt: names + paths only)", "list_names", d["bulk_runs"])]
    out = [f"## Storage: dir pool volumes (bench/storage.sh)", "",
           "vmmd's dir pool and a libvirt dir pool (transient, over a temporary directory on the same "
           "filesystem, in libvirtd) side by side, runs interleaved with the first client rotating. "
           "vmm through one kept-alive JSON-RPC connection and through `vmctl` (a process per call, like "
           "`virsh`); libvirt through one long-running `virsh` shell (one connection) and through `virsh` "
           "per call. Linked clone: vmm `volume.clone` (an operation, waited for), libvirt `vol-create-as "
           "--backing-vol ... --backing-vol-format qcow2`; full clone: `volume.clone` with `linked: false` "
           "and `vol-clone`. For refresh and list, "
           f"{bulk} small qcow2 files were copied straight into both pool directories. vmm's list always "
           "carries format, capacity and allocation, so it is compared with `vol-list --details`; the last "
           "row is libvirt's cheaper names-only list against the same vmm list. The virsh shell's output "
           "reaches the benchmark line by line (`stdbuf -oL`), which weighs on its 1,000-line lists.", "",
           "| median, ms | runs | vmm RPC | virsh shell | one connection: vmm vs libvirt | vmctl | virsh | per process: vmm vs libvirt |",
           "|---|---|---|---|---|---|---|---|"]
    for label, op, runs in rows:
        r = m.get(op, {})
        vr, vc = r.get("vmm rpc"), r.get("vmctl")
        if op == "list_names":
            vr, vc = m.get("list", {}).get("vmm rpc"), m.get("list", {}).get("vmctl")
        ls, lc = r.get("virsh shell"), r.get("virsh")
        out.append(f"| {label} | {runs} | {f(vr)} | {f(ls)} | {ratio(vr, ls)} | {f(vc)} | {f(lc)} | {ratio(vc, lc)} |")
    counts = d.get("volumes_in_pool", {})
    if counts:
        out += ["", f"Volumes in the pools during refresh and list: vmm {counts.get('vmm')}, libvirt {counts.get('libvirt')} "
                f"(the {bulk} copies plus the clone sources). The measurements took {d.get('seconds')} s."]
    for op, by in d.get("errors", {}).items():
        for target, e in by.items():
            out += ["", f"{op}, {target}: {e}"]
    return out + [""]

def network_section(d):
    m = d["median_ms"]
    def f(v):
        return f"{v:.1f}" if isinstance(v, (int, float)) else "-"
    out = ["## Networks: NAT network with DHCP, start and stop (bench/network.sh)", "",
           "The same network on both sides: NAT, a /24 gateway address, DHCP over the upper half of the "
           "subnet, a bridge without STP or forward delay. Start makes the bridge, its address, forwarding, "
           "the NAT and filter rules and a dnsmasq (vmm: one nftables table of its own; libvirt 9.0: "
           f"iptables, here `{d.get('firewall', '?')}`); stop removes all of it. The whole run is in a "
           "private network and mount namespace (`unshare`, sysfs remounted, libvirt's directories on "
           "private tmpfs), so both start from an empty firewall and never touch the host's network. "
           "vmmd through one kept-alive JSON-RPC connection and through `vmctl` per call; libvirtd through "
           "one `virsh` shell and `virsh` per call (`net-start`, `net-destroy` of a `net-define`d network). "
           f"{d['runs']} paired runs, the first client rotating. Between the timed calls every start was "
           "checked to have made the bridge and a running dnsmasq, and every stop to have removed both.", "",
           "| median, ms | runs | vmm RPC | virsh shell | one connection: vmm vs libvirt | vmctl | virsh | per process: vmm vs libvirt |",
           "|---|---|---|---|---|---|---|---|"]
    for label, op in (("start the network", "start"), ("stop the network", "stop")):
        r = m.get(op, {})
        vr, vc, ls, lc = r.get("vmm rpc"), r.get("vmctl"), r.get("virsh shell"), r.get("virsh")
        out.append(f"| {label} | {d['runs']} | {f(vr)} | {f(ls)} | {ratio(vr, ls)} | {f(vc)} | {f(lc)} | {ratio(vc, lc)} |")
    left = d.get("left_after_run", {})
    fails = d.get("check_failures", [])
    out += ["", f"Checks: {len(fails)} failed; {d.get('dnsmasq_processes_seen', 0)} dnsmasq processes started and "
            f"{len(left.get('dnsmasq_running', []))} left running; links left after the networks were deleted: "
            f"{', '.join(left.get('links', [])) or 'none'}. The measurements took {d.get('seconds')} s."]
    for e in fails[:10]:
        out += ["", f"check: {e}"]
    for target, e in d.get("errors", {}).items():
        out += ["", f"{target}: {e}"]
    return out + [""]

def snapshot_section(d):
    m = d["median_ms"]
    def f(v):
        return f"{v:.0f}" if isinstance(v, (int, float)) else "-"
    restarts = d.get("qemu_restarts_on_revert", {})
    out = ["## Snapshots: internal with memory of a running guest (bench/snapshot.sh)", "",
           "One running guest per side: the test guest (direct kernel boot, 1 vCPU, "
           f"{d.get('memory', '256MiB')} of memory, TCG) with one {d.get('disk', '64 MiB qcow2')} disk, started by "
           "vmmd and by libvirtd (`<domain type='qemu'>`). Every run of a client creates an internal "
           "snapshot with memory, reverts the running guest to it and deletes it, each call timed; after "
           "every revert the guest was checked (untimed) to be running. vmm through one kept-alive JSON-RPC "
           "connection (`snapshot.create`, `snapshot.revert`, `snapshot.delete`: operations, waited for) and "
           "through `vmctl snapshot ...` per call; libvirt through one `virsh` shell and `virsh` per call "
           f"(`snapshot-create-as`, `snapshot-revert`, `snapshot-delete`). {d['runs']} runs per client, "
           "interleaved with the first client rotating.", "",
           "| median, ms | runs | vmm RPC | virsh shell | one connection: vmm vs libvirt | vmctl | virsh | per process: vmm vs libvirt |",
           "|---|---|---|---|---|---|---|---|"]
    for label, op in (("create (memory + disk state)", "create"), ("revert the running guest", "revert"),
                      ("delete", "delete")):
        r = m.get(op, {})
        vr, vc, ls, lc = r.get("vmm rpc"), r.get("vmctl"), r.get("virsh shell"), r.get("virsh")
        out.append(f"| {label} | {d['runs']} | {f(vr)} | {f(ls)} | {ratio(vr, ls)} | {f(vc)} | {f(lc)} | {ratio(vc, lc)} |")
    if restarts:
        out += ["", "Reverts after which the guest ran in a new QEMU process: " +
                ", ".join(f"{t} {n} of {d['runs']}" for t, n in restarts.items()) + ". "
                "vmm loads the snapshot into the running QEMU; libvirt 9.0 stops QEMU and starts a new one "
                "with `-loadvm` (its domain log: `shutting down, reason=from snapshot`, then a new command line)."]
    gaps = sorted(d.get("libvirt_stop_to_start_ms", []))
    if gaps:
        out[-1] += (f" In libvirt's log, {gaps[len(gaps) // 2]} ms (median; {gaps[0]} to {gaps[-1]}) pass between "
                    "the old QEMU stopping and the new one starting, most of libvirt's revert time.")
    fails, left = d.get("check_failures", []), d.get("snapshots_left", {})
    out += ["", f"Checks: {len(fails)} failed; snapshots left after the runs: vmm {left.get('vmm')}, "
            f"libvirt {left.get('libvirt')}. The measurements took {d.get('seconds')} s."]
    for e in fails[:10]:
        out += ["", f"check: {e}"]
    for target, e in d.get("errors", {}).items():
        out += ["", f"{target}: {e}"]
    return out + [""]

def run_section(d):
    m = d["median_ms"]
    over = m["vmm"] / m["floor"] - 1
    out = ["## Disposable VM: `vmctl run --rm -- true` (bench/run.sh)", "",
           f"{d['runs']} paired runs under TCG. The floor is vmmd's own QEMU command line for the test-guest "
           "image started by hand, its guest agent polled until it answers, `true` run through the agent, "
           "QEMU killed. vmm is a whole `vmctl run --rm --image test-guest -- true` process: linked clone "
           "of the image, define, start (-S, QMP, `cont`), wait for the agent, guest-exec, destroy, "
           "undefine, delete the clone, every record fsynced.", "",
           "| median, ms | floor (bare QEMU + agent) | vmm run --rm | vmm over the floor |", "|---|---|---|---|",
           f"| wall time | {m['floor']:.0f} | {m['vmm']:.0f} | {over * 100:+.1f}% |", "",
           f"Target: within 10% of the floor. Domains left after the runs: {d.get('domains_left')}.", ""]
    return out

SECTIONS = [("api", api_section), ("start", start_section), ("storage", storage_section), ("network", network_section),
            ("snapshot", snapshot_section), ("run", run_section)]

def main():
    lines = ["# Benchmarks", "",
             "Generated by `bench/report.py` from the results of the `bench/*.sh` scripts, which run "
             "vmm and its reference (libvirt, LXD or the bare floor) side by side in the same run on "
             "the same machine. Medians; the machine is a noisy 2-core VM without KVM, so read ratios "
             "rather than absolute numbers.", "",
             f"Last run: {datetime.date.today().isoformat()}, {platform.node()}, Linux {platform.release()}.", ""]
    old = {}
    if os.path.exists(OUT):
        # keep sections whose results are not present in this build directory
        cur, name = [], None
        for line in open(OUT).read().splitlines():
            if line.startswith("## "):
                if name: old[name] = cur
                name, cur = line, [line]
            elif name:
                cur.append(line)
        if name: old[name] = cur
    for key, fn in SECTIONS:
        d = load(key)
        if d:
            sec = fn(d)
            old.pop(sec[0], None)
            lines += sec
    for name, sec in old.items():
        lines += sec
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    open(OUT, "w").write("\n".join(lines).rstrip() + "\n")
    print("wrote", OUT)

main()
