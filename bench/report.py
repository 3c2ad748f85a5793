#!/usr/bin/env python3
"""Renders docs/benchmarks.md whole from the results of one run (build/bench-results/*.json).

Nothing is kept from an earlier page. A section whose results are missing, failed or come from
another commit says so instead of showing numbers. Every sentence that states a result is
computed from the samples; the fixed text only says what was run.

  report.py [--out FILE] [--commit SHA]   the whole page (default docs/benchmarks.md, HEAD)
  report.py --summary NAME                one section on stdout (what the bench scripts print)"""
import argparse, json, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sampling  # noqa: E402

ROOT = sampling.ROOT
DEFAULT_RESULTS = os.path.join(os.environ.get("VMM_BUILD_DIR", os.path.join(ROOT, "build")), "bench-results")


# ---------------------------------------------------------------- formatting

def num(v):
    if v is None:
        return "-"
    a = abs(v)
    if a >= 99.95:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def cell(s, pairs=None):
    """median [q1-q3] (min-max), and n when fewer samples than pairs were obtained."""
    if not s or not s.get("n"):
        return "-"
    out = f"**{num(s['median'])}** [{num(s['q1'])}–{num(s['q3'])}] ({num(s['min'])}–{num(s['max'])})"
    if pairs is not None and s["n"] < pairs:
        out += f" n={s['n']}"
    return out


def runs_col(stats, names, pairs):
    """The samples actually obtained: one number when every cell has it, else per client."""
    ns = {t: stats.get(t, {}).get("n", 0) for t in names if t in stats}
    if not ns:
        return "0"
    if len(set(ns.values())) == 1:
        n = next(iter(ns.values()))
        return f"{n}" if n == pairs else f"{n} of {pairs}"
    return ", ".join(f"{t} {n}" for t, n in ns.items()) + f" (of {pairs})"


def ratio(a, b):
    """How a compares with b, from the medians."""
    if not a or not b or not a.get("n") or not b.get("n") or a["median"] <= 0 or b["median"] <= 0:
        return "-"
    x, y = a["median"], b["median"]
    return f"{y / x:.1f}x faster" if x < y else f"{x / y:.1f}x slower"


def diff_sentence(label, s, unit="ms"):
    """A paired difference with its spread and what its sign is."""
    if not s or not s.get("n"):
        return f"{label}: no complete pairs."
    if s["q1"] > 0:
        sign = "above zero across its interquartile range"
    elif s["q3"] < 0:
        sign = "below zero across its interquartile range"
    else:
        sign = "zero within its interquartile range"
    return (f"{label}: **{num(s['median'])} {unit}** (median of {s['n']} per-pair differences; IQR {num(s['q1'])} to "
            f"{num(s['q3'])}, range {num(s['min'])} to {num(s['max'])}), {sign}.")


def met(ok):
    return "met" if ok else "**MISSED**"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


LEGEND = ("Cells: **median** [interquartile range] (min–max) in ms, over the samples obtained; `n=` when a cell "
          "has fewer samples than pairs were run (failed samples are gaps, listed below the table).")


def section_head(title, script, d, runs_text):
    p = d["provenance"]
    dirty = f", tree dirty ({p['dirty_files']} tracked files differ, diff {p['diff_sha']})" if p.get("dirty") else ""
    m = p.get("machine", {})
    load = m.get("loadavg")
    busy = ""
    if load and m.get("cpus") and float(load.split()[0]) > m["cpus"]:
        busy = f", above the machine's {m['cpus']} CPUs: other work was running"
    load = f" (load average {load} when it ended{busy})" if load else ""
    return [f"## {title} (`{script}`)", "",
            f"Commit `{p['commit'][:12]}`{dirty}, measured {p['date']}{load}; {runs_text}.", ""]


def errors_lines(d):
    out = []
    for e in d.get("errors", [])[:20]:
        out.append(f"- pair {e['pair']}, {e['target']}: {e['error']}")
    if len(d.get("errors", [])) > 20:
        out.append(f"- ... {len(d['errors']) - 20} more in the results file")
    for t, why in d.get("dropped", {}).items():
        out.append(f"- {t}: {why}")
    return (["Failed samples (gaps in their pairs):", ""] + out + [""]) if out else []


def preceding_by_op(ops, labels=None):
    """'op, op: text; op: text' for results whose ops were warmed up differently."""
    texts = dict.fromkeys(o.get("preceding_state", "?") for o in ops.values())
    return "; ".join(f"{', '.join((labels or {}).get(k, k) for k, o in ops.items() if o.get('preceding_state') == t)}: {t}"
                     for t in texts)


def method_line(d):
    gap = f"then an idle gap of {d['gap_s']} s" if d.get("gap_s") else "no idle gap after it"
    return (f"Order: {d.get('order_scheme', '?')} (orders recorded in the results). Preceding state: "
            f"{d.get('preceding_state', '?')}; {gap}.")


# ---------------------------------------------------------------- sections

def api_section(d):
    ops = d["ops"]
    n = d["count"]
    VR, VH, LQ, LT = "vmm rpc", "vmm http", "libvirt qemu:///system", "libvirt test:///default"

    def st(op, t):
        return ops.get(op, {}).get("stats_ms", {}).get(t, {})

    def pairs(op):
        return ops.get(op, {}).get("pairs", 0)

    rows = []
    spec = [
        ("define one domain", "define", "`domain.create`: validated, committed to sqlite (fsync)",
         "`virDomainDefineXML`: parsed, XML file written", True),
        (f"list all {n:,} domains", "list", "`domain.list`: one call, every summary field (14: name, state, type, labels, "
         "...) per domain, decoded into structs by libvmmclient",
         "`virConnectGetAllDomainStats(STATE)`: one call, name, uuid, id, state and reason per domain", False),
        (f"list all {n:,} domains, names only", "list_names", "`domain.list` with `fields=name,uuid`: one call, decoded "
         "into structs", "`virConnectListAllDomains`: one call, the domain handles (name, uuid, id)", True),
        (f"list all {n:,} domains with their state, one call", "list_state", "`domain.list` with "
         "`fields=name,uuid,state,reason`: one call, decoded into structs",
         "`virConnectGetAllDomainStats(STATE)`: one call, name, uuid, id, state and reason per domain", True),
        (f"list all {n:,} domains, libvirt list + state per domain", "list_getinfo", "(vmm's list with state above, shown again)",
         f"`virConnectListAllDomains` + `virDomainGetInfo` per domain: {n + 1:,} calls (what `virsh list --all` does)", False),
        ("get one domain", "get", "`domain.get`: one call, definition and runtime state (JSON)",
         "`virDomainGetXMLDesc` on a handle looked up before timing: one call, definition (XML)", True),
        ("version / host info", "version", "`host.info`: host, daemon version and driver capabilities",
         "`virConnectGetVersion`: one number", False),
        ("undefine one domain", "undefine", "`domain.delete` by name: removed from sqlite (fsync)",
         "`virDomainUndefine` on a handle looked up before timing: XML file removed", True),
    ]
    for label, op, vdoes, ldoes, equal in spec:
        vop = "list_state" if op == "list_getinfo" else op
        vr, vh = st(vop, VR), st(vop, VH)
        lq, lt = st(op, LQ), st(op, LT)
        cmp = ratio(vr, lq) if equal else "design difference: not the same work"
        rows.append([label, vdoes, ldoes, runs_col({**{VR: vr, VH: vh}, **{LQ: lq, LT: lt}}, [VR, VH, LQ, LT], pairs(op)),
                     cell(vr, pairs(vop)), cell(vh, pairs(vop)), cell(lq, pairs(op)), cell(lt, pairs(op)), cmp])
    out = ["One kept-alive connection per client: vmm's JSON-RPC socket and its HTTP API (each against its own vmmd, "
           f"so both hold exactly {n:,} domains; vmmd ran as `{d.get('vmmd_command', '?')}`), libvirt through its C API: "
           "`qemu:///system` through libvirtd (the counterpart of vmmd's socket) and `test:///default` inside the "
           "benchmark process (no IPC; shown for scale, never compared). Domains of vmm's `test` type and libvirt's "
           "`qemu` type, defined only (never started). Ratios compare vmm RPC with libvirtd, from the medians, only "
           "where both sides do the same work.", "",
           "Preceding state: " + "; ".join(
               f"{', '.join(o for o in ops if ops[o]['preceding_state'] == text)}: {text}"
               for text in dict.fromkeys(o["preceding_state"] for o in ops.values())) + ". " +
           "No idle gap. Order: rotation by pair, reversed every other round (orders recorded in the results).", "",
           LEGEND, ""]
    out += table(["operation", "vmm does", "libvirt does", "runs", "vmm RPC", "vmm HTTP", "libvirtd (qemu:///system)",
                  "libvirt test:/// (in-process)", "vmm RPC vs libvirtd"], rows)
    cli_rows = []
    for label, op, vdoes, ldoes in (
            ("list --all", "cli_list", f"`vmctl list --all`: one RPC, prints {n:,} rows",
             f"`virsh list --all`: list + one state call per domain ({n + 1:,} calls), prints {n:,} rows"),
            ("version / host info", "cli_version", "`vmctl host info`: one RPC (host.info)",
             "`virsh version`: several calls (library, daemon and hypervisor versions)")):
        a, b = st(op, "vmctl"), st(op, "virsh")
        cli_rows.append([label, vdoes, ldoes, runs_col({"vmctl": a, "virsh": b}, ["vmctl", "virsh"], pairs(op)),
                         cell(a, pairs(op)), cell(b, pairs(op)), "design difference: not the same work"])
    out += ["", f"Whole CLI processes (start, connect, call, print, exit) while the {n:,} domains exist:", ""]
    out += table(["command", "vmctl does", "virsh does", "runs", "vmctl", "virsh", "comparison"], cli_rows)
    PD, PB = "vmm http default project", "vmm http bound to a project"
    proj_rows = []
    for label, op in (("define one domain", "define"), (f"list the project's {n:,} domains", "list"),
                      ("get one domain", "get"), ("undefine one domain", "undefine")):
        a, b = st(op, PD), st(op, PB)
        if not a.get("n") or not b.get("n"):
            continue
        r = b["median"] / a["median"] if a["median"] > 0 else None
        verdict = "-" if r is None else f"{r:.2f}x ({'met' if r < 1.10 else 'missed'}: target below 1.10x)"
        proj_rows.append([label, runs_col({PD: a, PB: b}, [PD, PB], pairs(op)), cell(a, pairs(op)), cell(b, pairs(op)), verdict])
    if proj_rows:
        out += ["", f"Project scoping and authorisation: a third vmmd whose default project and project `bench` each hold "
                f"{n:,} domains (of the same names), the same calls over HTTP by an unbound admin token (no scoping: "
                "names and replies pass as they are) and by an operator token bound to `bench` (the project entered, "
                "names qualified, host references checked, replies rewritten to the project's names). The ratio is "
                "bound over unbound, from the medians.", ""]
        out += table(["operation", "runs", "admin, default project", "operator bound to `bench`", "bound / unbound"], proj_rows)
    rss = d.get("rss_kb", {})

    def mib(k):
        return f"{rss[k] / 1024:.1f} MiB" if isinstance(rss.get(k), (int, float)) else "-"
    out += ["", "Memory (VmRSS, one reading each): vmmd idle is read 1 s after it is ready, libvirtd idle 1 s after "
            "its first `virsh version`; \"after\" once the benchmark has defined and undefined the domains.", ""]
    out += table(["memory (RSS)", "vmmd (the RPC side)", "libvirtd"],
                 [["idle", mib("vmmd_idle"), mib("libvirtd_idle")], ["after the run", mib("vmmd_after"), mib("libvirtd_after")]])
    info = d.get("info", {})
    counts = ", ".join(f"{k.replace(' list_count', '')} {v}"
                       + (f" ({info[k.replace('list_count', 'preexisting')]} of them there before the benchmark)"
                          if info.get(k.replace("list_count", "preexisting")) else "")
                       for k, v in info.items() if k.endswith("list_count"))
    errs = [f"{k}: {v}" for k, v in info.items() if k.endswith("error")]
    lst, lsth, dfn = st("list", VR), st("list", VH), st("define", VR)
    out += ["", f"Domains seen by the last list of each client: {counts or '-'}." + (" " + "; ".join(errs) if errs else ""), "",
            "Targets (issues 2 and 21):", ""]
    if n != 1000:
        out.append(f"- list of 1,000 domains under 5 ms, then under 2 ms: not judged, this run defined {n:,} domains.")
    elif lst.get("n"):
        out.append(f"- list of 1,000 domains under 5 ms (issue 2, vmm RPC median): {num(lst['median'])} ms, {met(lst['median'] < 5)}.")
        for side, c in (("RPC", lst), ("HTTP", lsth)):
            if c.get("n"):
                out.append(f"- list of 1,000 domains under 2 ms (issue 21, every summary field, vmm {side} median): "
                           f"{num(c['median'])} ms, {met(c['median'] < 2)}.")
    if dfn.get("n"):
        out.append(f"- define under 0.5 ms (vmm RPC median): {num(dfn['median'])} ms, {met(dfn['median'] < 0.5)}.")
    if isinstance(rss.get("vmmd_idle"), (int, float)) and isinstance(rss.get("libvirtd_idle"), (int, float)):
        out.append(f"- vmmd idle RSS below libvirtd's: {mib('vmmd_idle')} vs {mib('libvirtd_idle')}, "
                   f"{met(rss['vmmd_idle'] < rss['libvirtd_idle'])}.")
    failures = {op: o.get("failures") for op, o in ops.items() if o.get("failures")}
    if failures:
        out += ["", "Failed calls (gaps): " + "; ".join(f"{op}: {f}" for op, f in failures.items()) + "."]
    return out + [""]


def floor_confinement_text(d):
    """What the floor passes besides sockets, and how its QEMU runs next to vmm's."""
    files = d.get("floor_files", {})
    passed = ", ".join(f"{fd}={os.path.basename(f[0])}" for fd, f in sorted(files.items(), key=lambda kv: int(kv[0])))
    return ((f"the images, kernel and initrd reach QEMU as descriptors as vmmd passes them (same numbers, same access: {passed}); "
             if passed else "") +
            "QEMU runs as root in the host's namespaces while vmm's runs confined (a uid of its own, no capabilities, "
            "no_new_privs, a mount namespace with a read-only root: `drivers/qemu/README.md`), so vmm's overhead includes "
            "what the confinement costs.")


def start_section(d):
    s, diffs, pairs = d["stats_ms"], d["differences_ms"].get("marker", {}), d["pairs"]
    rdiffs = d["differences_ms"].get("returned", {})
    g = d.get("guest", {})
    fds = d.get("floor_descriptors", {})
    targets = [t for t in ("floor", "vmm", "vmm-root", "libvirt") if t in s["marker"] or t in s["returned"]]
    out = [f"Time from issuing a start to the test guest's marker on its serial console (kernel `{os.path.basename(g.get('kernel', '?'))}`, "
           f"initrd `{os.path.basename(g.get('initrd', '?'))}`, {g.get('vcpus')} vCPU, {g.get('memory')}, TCG), {len(targets)} ways:",
           "",
           "- **floor**: vmmd's exact QEMU argv for this guest (captured from `/proc/PID/cmdline` of a guest vmmd started), "
           "launched by `bench/floor.py` the way vmmd launches it: listening unix sockets passed as the same descriptors "
           f"({', '.join(f'{k}={v}' for k, v in fds.items())}), a new session, `-S` kept, QMP negotiated, the console socket "
           "connected, `cont` sent; the marker read from the console socket; " + floor_confinement_text(d),
           "- **vmm**: `vmctl start` (a CLI process, one RPC; vmmd validates, makes the sockets, spawns the same argv, "
           "negotiates QMP, sends `cont`, records the runtime state); the marker read from vmmd's `console.log` "
           "(woken by inotify). QEMU confined (the default).",
           "- **vmm-root**: the same through a second vmmd started with `--qemu-unprivileged no` (QEMU as root in the "
           "host's namespaces, the images still passed as descriptors): vmm minus vmm-root is what the confinement costs.",
           "- **libvirt**: `virsh start` of an equivalent domain through libvirtd; the marker read from the serial "
           "file libvirt gives QEMU (woken by inotify).",
           "", method_line(d), "", LEGEND, ""]
    others = [t for t in targets if t != "floor"]
    confined = {"marker": diffs.get("vmm - vmm-root"), "returned": rdiffs.get("vmm - vmm-root")}
    rows = [["start issued -> console marker", runs_col(s["marker"], targets, pairs)] + [cell(s["marker"].get(t), pairs) for t in targets],
            ["start issued -> start call returned (floor: `cont` answered)", runs_col(s["returned"], targets, pairs)] +
            [cell(s["returned"].get(t), pairs) for t in targets]]
    for label, by in (("overhead over the floor at the marker (per-pair differences)", diffs),
                      ("overhead over the floor when the start call returned (per-pair differences)", rdiffs)):
        mine = {k: v for k, v in by.items() if k.endswith(" - floor")}
        rows.append([label, ", ".join(f"{k.split(' ')[0]} {v['n']}" for k, v in mine.items()), "0"] +
                    [cell(by.get(f"{t} - floor"), pairs) for t in others])
    if "vmm-root" in targets:
        for label, op in (("confinement's cost: vmm - vmm-root at the marker (per-pair differences)", "marker"),
                          ("confinement's cost: vmm - vmm-root when the start call returned (per-pair differences)", "returned")):
            c = confined[op]
            rows.append([label, str(c["n"]) if c else "0", ""] + [cell(c, pairs) if t == "vmm" else "" for t in others])
    out += table(["", "runs"] + targets, rows)
    vm, lv = diffs.get("vmm - floor"), diffs.get("libvirt - floor")
    out += ["", "- " + diff_sentence("vmm's overhead over the floor at the marker", vm),
            "- " + diff_sentence("libvirt's overhead over the floor at the marker", lv),
            "- " + diff_sentence("vmm's overhead over the floor when the start call returned", rdiffs.get("vmm - floor")),
            "- " + diff_sentence("libvirt's overhead over the floor when the start call returned", rdiffs.get("libvirt - floor"))]
    for op, what in (("returned", "when the start call returned"), ("marker", "at the marker")):
        c = confined[op]
        a, b = s[op].get("vmm"), s[op].get("vmm-root")
        if c and c.get("n") and a and b and a.get("n") and b.get("n"):
            out.append("- " + diff_sentence(f"what confining QEMU costs {what} (vmm - vmm-root)", c) +
                       f" Ratio of the medians vmm / vmm-root: **{a['median'] / b['median']:.3f}**.")
    if vm and vm.get("n"):
        out.append(f"- Target (issue 3): vmm under 50 ms over the floor: {met(vm['median'] < 50)} by the median "
                   f"({num(vm['median'])} ms); upper quartile {num(vm['q3'])} ms.")
    c = confined["returned"]
    if c and c.get("n"):
        out.append(f"- Target (issue 19): confining QEMU adds no measurable time: {met(c['q1'] <= 0)} "
                   f"(median {num(c['median'])} ms when the start call returned, IQR {num(c['q1'])} to {num(c['q3'])}; "
                   "met unless it is above zero across its interquartile range).")
    return out + [""] + errors_lines(d)


def run_section(d):
    s, pairs = d["stats_ms"]["total"], d["pairs"]
    diff = d["differences_ms"].get("total", {}).get("vmm - floor")
    out = ["`vmctl run --rm --image test-guest -- true` against its floor, under TCG:", "",
           "- **floor**: a fresh qcow2 overlay of the image (`qemu-img create`), vmmd's exact QEMU argv for a launched "
           "test-guest domain with that overlay in place of vmmd's clone, launched by `bench/floor.py` as vmmd launches "
           "it (inherited sockets, `-S`, QMP, `cont`), one guest-agent connection (`guest-sync-delimited` once, then "
           "`guest-ping`, `guest-exec true`, `guest-exec-status` asked back to back), QEMU killed and reaped, the "
           "overlay deleted. All of it timed. In the floor " + floor_confinement_text(d),
           "- **vmm**: one `vmctl run --rm` process: linked clone, define, start, wait for the agent, run `true` with "
           "streamed output, destroy, undefine, delete the clone, every record committed. Its phases are vmmd's own "
           "timings from the run's JSON result (`vmctl -o json run`): they leave out the vmctl process and its RPC. "
           "The guest rows are the times the test guest's init printed its lines on the console (read from the "
           "floor's console socket and from vmmd's console.log as they arrive): the guest's own boot, which neither "
           "side's software is doing.",
           "", method_line(d), "", LEGEND, ""]
    rows = [["wall time (timed by the benchmark)", runs_col(s, ["floor", "vmm"], pairs), cell(s.get("floor"), pairs),
             cell(s.get("vmm"), pairs), cell(diff, pairs)]]
    phases = (("launch", "launch: floor overlay + spawn + QMP + `cont`; vmm clone + define + start"),
              ("agent", "until the guest agent answered"), ("exec", "`true` run through the agent"),
              ("remove", "teardown: floor kill + overlay deleted; vmm destroy + undefine + clone deleted"),
              ("booted", "from the start of the sample until the guest's init printed GUEST-BOOTED on the console"),
              ("agent_started", "... until it printed AGENT-STARTED (qemu-ga launched)"))
    for op, label in phases:
        ps = d["stats_ms"].get(op)
        if ps:
            pd = d["differences_ms"].get(op, {}).get("vmm - floor")
            rows.append([f"phase, {label}" if op not in ("booted", "agent_started") else f"guest, {label}", runs_col(ps, ["floor", "vmm"], pairs), cell(ps.get("floor"), pairs),
                         cell(ps.get("vmm"), pairs), cell(pd, pairs)])
    out += table(["", "runs", "floor", "vmm run --rm", "vmm - floor (per pair)"], rows)
    out += ["", "- " + diff_sentence("vmm over the floor", diff)]
    fl = s.get("floor", {})
    if diff and diff.get("n") and fl.get("n"):
        pct = diff["median"] / fl["median"] * 100
        out.append(f"- Relative to the floor's median ({num(fl['median'])} ms): {pct:+.1f}% "
                   f"(IQR {diff['q1'] / fl['median'] * 100:+.1f}% to {diff['q3'] / fl['median'] * 100:+.1f}%). "
                   f"Target (issue 9): within 10% of the floor: {met(pct <= 10)}.")
    out.append(f"- Domains left in vmmd after the runs: {d.get('domains_left')}.")
    return out + [""] + errors_lines(d)


FOUR = ("vmm rpc", "virsh shell", "vmctl", "virsh")


def four_client_rows(spec, ops_results, default_pairs):
    """Rows of the storage/network/snapshot tables: op label, what each side does, runs, the four
    clients and the two ratios (or 'design difference')."""
    rows = []
    for label, does, op, equal, vmm_op in spec:
        r = ops_results.get(op)
        if r is None:
            rows.append([label, does, "not run", "-", "-", "-", "-", "-", "-", "-"])
            continue
        st, pairs = r["stats_ms"][op], r["pairs"]
        vr_op = ops_results.get(vmm_op, r) if vmm_op else r
        vst = vr_op["stats_ms"][vmm_op or op]
        vr, vc, ls, lc = vst.get("vmm rpc"), vst.get("vmctl"), st.get("virsh shell"), st.get("virsh")
        allst = {"vmm rpc": vr or {}, "vmctl": vc or {}, "virsh shell": ls or {}, "virsh": lc or {}}
        c1 = ratio(vr, ls) if equal else "design difference"
        c2 = ratio(vc, lc) if equal else "design difference"
        rows.append([label, does, runs_col(allst, FOUR, pairs), cell(vr, pairs), cell(ls, pairs), c1, cell(vc, pairs),
                     cell(lc, pairs), c2])
    return rows


FOUR_HEADER = ["operation", "what each side does", "runs", "vmm RPC", "virsh shell", "one connection: vmm vs libvirt",
               "vmctl", "virsh", "per process: vmm vs libvirt"]


def ops_errors(results):
    out = []
    for op, r in results.items():
        for e in r.get("errors", [])[:10]:
            out.append(f"- {op}, pair {e['pair']}, {e['target']}: {e['error']}")
        for t, why in r.get("dropped", {}).items():
            out.append(f"- {op}, {t}: {why}")
    return (["Failed samples (gaps in their pairs):", ""] + out + [""]) if out else []


def storage_section(d):
    ops = d.get("ops", {})
    bulk = f"{d['bulk']:,}"
    spec = [
        ("create a 1 GiB qcow2 volume", "vmm `volume.create`, libvirt `vol-create-as --format qcow2` (both run qemu-img)", "create", True, None),
        ("linked clone of a 10 GiB qcow2", "vmm `volume.clone` (an operation, waited for), libvirt `vol-create-as --backing-vol`", "linked_clone", True, None),
        ("full clone of a 64 MiB raw volume (data)", "vmm `volume.clone linked=false`, libvirt `vol-clone`", "full_clone", True, None),
        ("delete a volume", "vmm `volume.delete`, libvirt `vol-delete`", "delete", True, None),
        (f"refresh a pool of {bulk} volumes", "both re-read every volume from disk (`pool.refresh`, `pool-refresh`)", "refresh", True, None),
        (f"list {bulk} volumes", "vmm returns its cached table (no I/O); libvirt `vol-list --details` re-reads every volume "
         "(a GetInfo call per volume, each refreshing it from disk)", "list", False, None),
        (f"list {bulk} volumes, libvirt names + paths", "vmm's cached list (as above); libvirt `vol-list`: a GetPath call per volume, no re-read",
         "list_names", False, "list"),
        (f"refresh + list {bulk} volumes (equal work)", "vmm `pool.refresh` + `volume.list`; libvirt `pool-refresh` + "
         "`vol-list --details`: both re-read every volume, then list format and sizes (libvirt's list re-reads them once more)",
         "refresh_list", True, None),
    ]
    any_op = next(iter(ops.values()), {})
    out = ["vmmd's dir pool and a libvirt dir pool (transient, over a temporary directory on the same filesystem, in "
           "libvirtd) side by side. vmm through one kept-alive JSON-RPC connection and through `vmctl` (a process per "
           "call); libvirt through one long-running `virsh` shell (one connection) and through `virsh` per call. For "
           f"refresh and list, {bulk} small qcow2 files were copied straight into both pool directories. Ratios from the "
           "medians, only where both sides do the same work; the virsh shell's output reaches the benchmark line by line "
           "(`stdbuf -oL`).", "",
           f"Order: {any_op.get('order_scheme', '?')} (orders recorded in the results). Preceding state: "
           f"{preceding_by_op(ops)}; no idle gap after it.", "", LEGEND, ""]
    out += table(FOUR_HEADER, four_client_rows(spec, ops, d["runs"]))
    counts = d.get("volumes_in_pool", {})
    if counts:
        out += ["", f"Volumes in the pools during refresh and list: vmm {counts.get('vmm')}, libvirt {counts.get('libvirt')}. "
                f"The measurements took {d.get('seconds')} s."]
    for where, e in d.get("errors", {}).items():
        out += ["", f"Stopped early ({where}): {e}"]
    return out + [""] + ops_errors(ops)


def network_section(d):
    if "stats_ms" not in d:
        return [f"The run failed before any sample: {d.get('run_errors')}", ""]
    results = {"start": d, "stop": d}
    spec = [("start the network", "bridge, address, forwarding, NAT and filter rules, dnsmasq started (and checked)", "start", True, None),
            ("stop the network", "all of it removed, dnsmasq gone (checked)", "stop", True, None)]
    out = ["The same network on both sides: NAT, a /24 gateway address, DHCP over the upper half of the subnet, a bridge "
           f"without STP or forward delay (vmm: one nftables table of its own; libvirt: iptables, here `{d.get('firewall', '?')}`). "
           "Everything runs in a private network and mount namespace (`unshare`, sysfs remounted, libvirt's directories "
           "on private tmpfs): both start from an empty firewall and never touch the host's network. vmmd through one "
           "kept-alive JSON-RPC connection and `vmctl` per call; libvirtd through one `virsh` shell and `virsh` per "
           "call (`net-start`, `net-destroy` of a `net-define`d network). After every start (untimed) the bridge and a "
           "running dnsmasq were checked, after every stop their absence.", "", method_line(d), "", LEGEND, ""]
    out += table(FOUR_HEADER, four_client_rows(spec, results, d["pairs"]))
    left, fails = d.get("left_after_run", {}), d.get("check_failures", [])
    out += ["", f"Checks: {len(fails)} failed; {d.get('dnsmasq_processes_seen', 0)} dnsmasq processes seen, "
            f"{len(left.get('dnsmasq_running', []))} left running; links left after the networks were deleted: "
            f"{', '.join(left.get('links', [])) or 'none'}. The measurements took {d.get('seconds')} s."]
    out += [f"- check: {e}" for e in fails[:10]]
    if d.get("run_errors"):
        out += ["", f"Stopped early: {d['run_errors']}"]
    return out + [""] + errors_lines(d)


def snapshot_section(d):
    if "stats_ms" not in d:
        return [f"The run failed before any sample: {d.get('run_errors')}", ""]
    results = {op: d for op in ("create", "revert", "delete")}
    spec = [("create (memory + disk state)", "internal snapshot of the running guest", "create", True, None),
            ("revert the running guest", "the guest back at the snapshot, running (checked after every revert)", "revert", True, None),
            ("delete", "the snapshot removed from the qcow2 and the metadata", "delete", True, None)]
    out = ["One running guest per side: the test guest (direct kernel boot, 1 vCPU, "
           f"{d.get('memory')}, TCG) with one {d.get('disk')} disk, started by vmmd and by libvirtd. Every sample "
           "creates an internal snapshot with memory, reverts the running guest to it and deletes it, each call timed. vmm "
           "through one kept-alive JSON-RPC connection (`snapshot.create|revert|delete`, operations waited for) and "
           "`vmctl snapshot ...` per call; libvirt through one `virsh` shell and `virsh` per call "
           "(`snapshot-create-as`, `snapshot-revert`, `snapshot-delete`).", "", method_line(d), "", LEGEND, ""]
    out += table(FOUR_HEADER, four_client_rows(spec, results, d["pairs"]))
    restarts = d.get("qemu_restarts_on_revert", {})
    reverts = {t: d["stats_ms"]["revert"].get(t, {}).get("n", 0) for t in restarts}
    if restarts:
        out += ["", "Reverts after which the guest ran in a new QEMU process (measured: the QEMU pid before and after): " +
                ", ".join(f"{t} {n} of {reverts.get(t)}" for t, n in restarts.items()) + "."]
    gaps = sorted(d.get("libvirt_stop_to_start_ms", []))
    if gaps:
        out.append(f"In libvirt's domain log, between `shutting down, reason=from snapshot` and the next `starting up`: "
                   f"median {gaps[len(gaps) // 2]} ms ({gaps[0]} to {gaps[-1]}, {len(gaps)} reverts).")
    fails, left = d.get("check_failures", []), d.get("snapshots_left", {})
    out += ["", f"Checks: {len(fails)} failed; snapshots left after the runs: vmm {left.get('vmm')}, libvirt {left.get('libvirt')}. "
            f"The measurements took {d.get('seconds')} s."]
    out += [f"- check: {e}" for e in fails[:10]]
    if d.get("run_errors"):
        out += ["", f"Stopped early: {d['run_errors']}"]
    return out + [""] + errors_lines(d)


def container_section(d):
    lxd = d.get("lxd", {})
    if "stats_ms" not in d:
        return [f"The run failed before any sample: {d.get('run_errors')}", ""]
    s, pairs = d["stats_ms"], d["pairs"]
    names = ["floor", "vmm rpc", "vmm vmctl", "lxd"]
    out = ["The same static-busybox rootfs (an init that exits on SIGPWR or SIGTERM), privileged containers, no NIC. "
           "*Start -> first command*: from issuing the start until `true` run inside the container has returned (vmm RPC: "
           "`domain.start` then `domain.exec` over one connection; vmctl: `vmctl start` then `vmctl exec`, two processes; "
           "LXD: `lxc start` then `lxc exec`, two processes). *Stop*: graceful = `domain.shutdown` / `vmctl shutdown` / "
           "`lxc stop`; forced = `domain.destroy` / `vmctl destroy` / `lxc stop --force`. The floor is "
           "`unshare --fork --pid --mount --uts --ipc --net chroot ROOTFS /bin/true` (namespaces and exec, no cgroups, "
           "pivot_root, console or record). The ratio compares the two CLIs (vmctl and lxc: processes on both sides); "
           "the RPC column has no ratio.", ""]
    if lxd.get("ran"):
        out.append(f"LXD: `{lxd.get('version')}`, {lxd.get('status')}.")
    else:
        out.append(f"LXD was not measured in this run: {lxd.get('status') or 'no reason recorded'}.")
    out += ["", method_line(d), "", LEGEND, ""]
    rows = []
    for label, op in (("start -> first command", "start"), ("graceful stop", "stop"), ("forced stop", "stop_forced")):
        st = s.get(op, {})
        cols = [cell(st.get(t), pairs) if t != "floor" or op == "start" else "-" for t in names]
        cmp = ratio(st.get("vmm vmctl"), st.get("lxd")) if lxd.get("ran") else "-"
        rows.append([label, runs_col(st, [t for t in names if st.get(t, {}).get("n")], pairs)] + cols + [cmp])
    out += table(["", "runs", "floor", "vmm RPC", "vmctl", "LXD (lxc)", "vmctl vs lxc"], rows)
    samples = d["samples_ms"]["start"]
    _, diff = sampling.differences(samples.get("vmm rpc", []), samples.get("floor", []))
    out += ["", "- " + diff_sentence("vmm RPC start -> first command over the floor", diff)]
    return out + [""] + errors_lines(d)


def flood_section(d):
    if "stats_ms" not in d:
        return [f"The run failed before any sample: {'; '.join(d.get('run_errors', []))}", ""]
    n, pairs, fs, shape = d["count"], d["pairs"], d.get("flood", {}), d.get("flood_shape", {})
    soak, rss, cap, factor = d.get("soak", {}), d.get("rss_kb", {}), d.get("rss_cap_kb"), d.get("latency_factor", 2)
    out = [f"`vmctl list --all` (a whole vmctl process on the admin socket, output discarded) against a vmmd holding "
           f"{n:,} defined `test` domains (vmmd ran as `{d.get('vmmd_command', '?')}`), quiet and while another process "
           "(`bench/flood_load.py`, one thread) floods it:", "",
           f"- on the read-only socket (any local user) and on the admin socket, {shape.get('rpc_connections_per_socket')} "
           "connections each writing bad lines as fast as vmmd reads them (malformed JSON, `\"jsonrpc\":2`, ids and methods "
           "of the wrong type, parameters of the wrong type, unknown methods, invalid UTF-8, NUL bytes, arrays and objects "
           "nested 2,000 and 1,000 deep where vmmd's parser stops at 64) and reading the error replies; each line was checked to be refused before the "
           "run (see the results file); vmmd stops reading a connection whose last 64 lines were all refused for 50 ms, doubling to 2 s "
           "while it goes on (the bad-line rate below is what that leaves);",
           f"- on each socket one connection writing a line over that socket's cap ({shape.get('ro_cap_bytes', 0) >> 10} KiB "
           f"read-only, {shape.get('rw_cap_bytes', 0) >> 20} MiB admin), reopened whenever vmmd closes it;",
           f"- {shape.get('idle_http')} connections to the HTTP port, {shape.get('idle_http_silent')} sending nothing and "
           f"{shape.get('idle_http_slow')} a request head one byte per second, reopened whenever vmmd closes them.", "",
           f"A flood sample is taken {d.get('settle_s')} s after the flood's connections are open; a quiet sample "
           f"{d.get('settle_s')} s after vmmd has closed all of them. After the pairs, one sustained flood of "
           f"{soak.get('seconds', '?')} s (past vmmd's 10 s HTTP head timeout) with a `vmctl list --all` every second "
           "(consecutive samples, not paired). A list not done within "
           f"{d.get('list_timeout_s', '?')} s is killed and counted as failed. vmmd's VmRSS was read every 100 ms throughout.", "",
           method_line(d), "", LEGEND, ""]
    s = d.get("stats_ms", {}).get("list", {})
    q, f = s.get("quiet", {}), s.get("flood", {})
    diff = d.get("differences_ms", {}).get("list", {}).get("flood - quiet")
    soak_s = soak.get("stats_ms", {})
    rows = [[f"`vmctl list --all`, {n:,} domains", runs_col(s, ["quiet", "flood"], pairs), cell(q, pairs), cell(f, pairs),
             cell(diff, pairs), ratio(f, q).replace("faster", "lower").replace("slower", "higher")],
            [f"... during the sustained {soak.get('seconds', '?')} s flood", f"{soak_s.get('n', 0)} of {len(soak.get('samples_ms', []))}",
             "-", cell(soak_s), "-", ratio(soak_s, q).replace("faster", "lower").replace("slower", "higher")]]
    out += table(["", "runs", "quiet", "under flood", "flood - quiet (per pair)", "flood vs quiet (medians)"], rows)
    secs = fs.get("active_seconds")
    cpu = d.get("cpu_while_flooded", {})
    if secs:
        out += ["", f"The flood's load (over the {secs:.1f} s it was open): **{fs.get('bad_lines_per_s', 0):,} bad lines/s** "
                f"({fs.get('bad_mib_per_s')} MiB/s; {fs.get('bad_lines', 0):,} lines, {fs.get('replies', 0):,} error replies read back), "
                f"{fs.get('over_cap_lines', 0)} lines over the cap ({fs.get('over_cap_bytes', 0) / (1 << 20):.0f} MiB sent; RPC "
                f"connections closed by vmmd: {fs.get('rpc_closed_after_over_cap', 0)} after such a line, {fs.get('rpc_closed_other', 0)} "
                "others), "
                f"{fs.get('http_opened', 0)} HTTP connections opened, {fs.get('http_closed_by_vmmd', 0)} of them closed by vmmd "
                f"({fs.get('http_408', 0)} with a `408`), {fs.get('connect_errors', 0)} connections that could not be opened. "
                f"CPU while the flood was open: vmmd {cpu.get('vmmd_cpus')} CPUs, the flood process {cpu.get('flood_cpus')} CPUs "
                f"(sustained flood: {soak.get('vmmd_cpus')} and {soak.get('flood_cpus')})."]
    m = d.get("metrics", {})
    before, after, during = m.get("before", {}), m.get("after", {}), m.get("during_soak", {})

    def delta(k):
        return f"{after[k] - before.get(k, 0):,.0f}" if k in after else "-"

    def count(v):
        return f"{v:,.0f}" if isinstance(v, (int, float)) else "-"
    out += ["", "vmmd's `/metrics` over the whole run: connections refused: RPC "
            f"{delta('vmm_rpc_connections_refused_total')}, HTTP {delta('vmm_http_connections_refused_total')}; RPC connections "
            f"paused for bad lines {delta('vmm_rpc_connections_throttled_total')}; HTTP bytes "
            f"received {delta('vmm_http_received_bytes_total')}; call errors {delta('vmm_api_errors_total')}; event-loop "
            f"callbacks over 100 ms {delta('vmm_event_loop_slow_callbacks_total')}, the longest "
            f"{num((m.get('longest_loop_callback_s') or 0) * 1000)} ms. During the sustained flood vmmd counted "
            f"{count(during.get('vmm_rpc_connections'))} RPC and {count(during.get('vmm_http_connections'))} HTTP connections "
            f"and answered `/metrics` in {num(during.get('metrics_request_ms'))} ms. Its log grew by "
            f"{d.get('vmmd_log_growth_bytes', 0):,} bytes." if during else
            f"{delta('vmm_event_loop_slow_callbacks_total')} event-loop callbacks over 100 ms."]

    def mib(k):
        return f"{rss[k] / 1024:.1f} MiB" if isinstance(rss.get(k), (int, float)) else "-"
    out += ["", f"Memory (VmRSS, {rss.get('readings', 0)} readings, 100 ms apart):", ""]
    out += table(["before the flood (domains defined)", "peak in quiet rounds", "peak under the flood", "1 s after the last flood"],
                 [[mib("before"), mib("peak_quiet"), mib("peak_flood"), mib("after")]])
    alive = d.get("alive_after", {})
    out += ["", f"After the flood: `vmctl host info` {'answered' if alive.get('host_info_ok') else '**failed**'} "
            f"in {num(alive.get('host_info_ms'))} ms, `vmctl list --all` listed {alive.get('domains_listed', '-')} domains"
            + (f"; {alive['error']}" if alive.get("error") else "") + ".", "", "Targets (issue 18):", ""]
    failed = sum(1 for e in d.get("errors", []) if e["target"] == "flood") + len(soak.get("errors", []))
    if failed:  # a call that never returned is slower than any bound
        out.append(f"- `vmctl list` under the flood within {factor:g}x of the quiet figure: {failed} calls under the flood "
                   f"failed (listed below), {met(False)}.")
    elif q.get("n") and f.get("n") and soak_s.get("n"):
        worst = max(f["median"], soak_s["median"])
        out.append(f"- `vmctl list` under the flood within {factor:g}x of the quiet figure (medians): {num(f['median'])} ms in "
                   f"the pairs, {num(soak_s['median'])} ms in the sustained flood, vs {num(q['median'])} ms quiet "
                   f"({worst / q['median']:.1f}x at worst), {met(worst <= factor * q['median'])}.")
    else:
        out.append(f"- `vmctl list` under the flood within {factor:g}x of the quiet figure: not judged, no samples on one side.")
    if cap and isinstance(rss.get("before"), int) and isinstance(rss.get("peak_flood"), int):
        grow = rss["peak_flood"] - rss["before"]
        out.append(f"- vmmd's RSS under the flood at most {cap / 1024:.0f} MiB above its RSS before it (the cap; its reasoning "
                   f"is in `bench/flood_bench.py`): peak {mib('peak_flood')}, {grow / 1024:+.1f} MiB, {met(grow <= cap)}.")
    out.append(f"- vmmd alive and answering after the flood: {met(alive.get('host_info_ok') and alive.get('domains_listed') == n)}.")
    if d.get("run_errors"):
        out += ["", f"Errors outside the samples: {'; '.join(d['run_errors'])}"]
    if soak.get("errors"):
        out += ["", "Failed samples during the sustained flood:", ""] + [f"- {e}" for e in soak["errors"][:10]]
    return out + [""] + errors_lines(d)


SECTIONS = [
    ("api", "API: define, list, get, undefine", "bench/api.sh", api_section,
     lambda d: f"pairs per cell: define and undefine {d['count']:,}, lists {d['ops'].get('list', {}).get('pairs')}, "
               f"get and version {d['ops'].get('get', {}).get('pairs')}, CLI {d['ops'].get('cli_list', {}).get('pairs')}"),
    ("start", "QEMU start to console marker", "bench/start.sh", start_section, lambda d: f"{d['pairs']} pairs"),
    ("run", "Disposable VM: `vmctl run --rm -- true`", "bench/run.sh", run_section, lambda d: f"{d['pairs']} pairs"),
    ("storage", "Storage: dir pool volumes", "bench/storage.sh", storage_section,
     lambda d: f"pairs per cell: {d['runs']} (create, linked clone, delete), {d['full_runs']} (full clone), "
               f"{d['bulk_runs']} (refresh and list)"),
    ("network", "Networks: NAT network with DHCP, start and stop", "bench/network.sh", network_section,
     lambda d: f"{d['runs']} pairs"),
    ("snapshot", "Snapshots: internal, with memory, of a running guest", "bench/snapshot.sh", snapshot_section,
     lambda d: f"{d['runs']} pairs"),
    ("container", "Containers: start -> first command, stop", "bench/container.sh", container_section,
     lambda d: f"{d.get('pairs')} pairs"),
    ("flood", "Hostile load: `vmctl list` under a flood of bad input", "bench/flood.sh", flood_section,
     lambda d: f"{d.get('pairs')} pairs, then a sustained flood"),
]


def load(results, name):
    p = os.path.join(results, name + ".json")
    if not os.path.exists(p):
        return None
    try:
        return json.load(open(p))
    except ValueError as e:
        return {"unreadable": str(e)}


def render_section(results, key, title, script, fn, runs_text, commit):
    d = load(results, key)
    failed = load(results, f"failed-{key}")
    head = [f"## {title} (`{script}`)", ""]
    if failed and failed.get("commit") == commit:
        return head + [f"Failed at commit `{commit[:12]}` ({failed.get('date')}, exit status {failed.get('exit')}); "
                       "the end of its output:", "", "```",
                       *failed.get("tail", "").splitlines()[-15:], "```", ""]
    if d is None:
        return head + ["Not run: no results for this section.", ""]
    if "unreadable" in d or "provenance" not in d:
        return head + [f"Not shown: the results file is unreadable or has no provenance ({d.get('unreadable', 'no provenance')}).", ""]
    if d["provenance"].get("commit") != commit:
        return head + [f"Not run at this commit: the results found are from commit `{d['provenance'].get('commit', '?')[:12]}` "
                       f"({d['provenance'].get('date')}).", ""]
    return section_head(title, script, d, runs_text(d)) + fn(d)


def page(results, commit):
    loaded = {k: load(results, k) for k, *_ in SECTIONS}
    provs = [d["provenance"] for d in loaded.values() if d and "provenance" in d and d["provenance"].get("commit") == commit]
    allrun = load(results, "all")
    lines = ["# Benchmarks", "",
             "This page is generated whole by `bench/report.py` from the results of one run of `bench/all.sh` at one "
             "commit; nothing on it is written by hand. To regenerate it (as root; on a quiet machine, since timings "
             "are wall-clock):", "",
             "```sh", "bench/all.sh   # installs what it needs (bench/deps.sh: libvirt, LXD, ...), builds, runs every",
             "               # benchmark at HEAD and renders this page", "```", "",
             "Run counts can be lowered for a quick look (e.g. `RUNS=3 BULK_RUNS=2 COUNT=100 LIST_PAIRS=5 "
             "CALL_PAIRS=20 CLI_PAIRS=3 SOAK=12 bench/all.sh`); "
             "`BENCH_OUT=/tmp/page.md` writes the page elsewhere. Each benchmark compares vmm with its reference "
             "(libvirt, LXD, a bare floor, or vmm without the hostile load) in the same run: the clients are interleaved in pairs with a rotating "
             "order, every timed sample follows the same untimed warm-up, and every cell shows the median with its "
             "spread.", ""]
    if provs:
        p0 = provs[0]
        m, v = p0["machine"], p0["versions"]
        dates = sorted(p["date"] for p in provs)
        dirty = sorted({(p["dirty"], p["diff_sha"]) for p in provs})
        if any(x for x, _ in dirty):
            tree = ("the working tree differed from the commit (uncommitted changes to tracked files; diff "
                    + ", ".join(sorted({s for x, s in dirty if x})) + ")")
        else:
            tree = "a clean working tree"
        dur = ""
        if allrun and allrun.get("commit") == commit and allrun.get("seconds"):
            dur = f" The whole run took {allrun['seconds'] / 60:.1f} minutes."
        lines += [f"Commit `{commit}`, {tree}. Measured {dates[0]} to {dates[-1]} on `{m['host']}`: {m['cpu']}, "
                  f"{m['cpus']} CPUs, {m['memory']}, /dev/kvm {'present' if m.get('kvm') else 'absent'} (guests run under "
                  f"TCG unless KVM works), Linux {m['kernel']}. {v.get('qemu') or 'QEMU: ?'}; libvirt: "
                  f"{v.get('libvirt') or '?'}; LXD: {v.get('lxd') or 'not installed'}.{dur}", ""]
    else:
        lines += [f"Commit `{commit}`: no results from this commit.", ""]
    for key, title, script, fn, runs_text in SECTIONS:
        lines += render_section(results, key, title, script, fn, runs_text, commit)
    return "\n".join(lines).rstrip() + "\n"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=os.environ.get("BENCH_OUT", os.path.join(ROOT, "docs", "benchmarks.md")))
    p.add_argument("--results", default=os.environ.get("BENCH_RESULTS", DEFAULT_RESULTS))
    p.add_argument("--commit", default=None)
    p.add_argument("--summary", help="print one section to stdout instead of writing the page")
    a = p.parse_args()
    commit = a.commit or sampling.tree_state()["commit"]
    if a.summary:
        for key, title, script, fn, runs_text in SECTIONS:
            if key == a.summary:
                print("\n".join(render_section(a.results, key, title, script, fn, runs_text, commit)))
                return
        sys.exit(f"no section {a.summary}")
    text = page(a.results, commit)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(text)
    print("wrote", a.out)


main()
