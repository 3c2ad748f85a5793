#!/usr/bin/env python3
"""Times `vmctl list --all` (a whole vmctl process on the admin socket) against a vmmd holding
--count test domains, quiet and under a hostile flood from another process (flood_load.py: bad
JSON-RPC lines on both sockets, lines over the caps, idle and slow HTTP connections), in pairs
(bench/sampling.py). Then one sustained flood of --soak seconds with a timed list every second.
vmmd's VmRSS is read every 100 ms throughout; its CPU time, its /metrics counters and whether it
still answers afterwards are recorded. Writes JSON with every sample."""
import argparse, json, os, subprocess, sys, threading, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_clients, flood_load, sampling  # noqa: E402

p = argparse.ArgumentParser()
for a in ("--vmctl", "--socket", "--ro-socket", "--http", "--log", "--out"):
    p.add_argument(a, required=True)
p.add_argument("--pid", type=int, required=True, help="vmmd's")
p.add_argument("--count", type=int, default=1000)
p.add_argument("--runs", type=int, default=20)
p.add_argument("--settle", type=float, default=1.0, help="seconds between opening the flood (or not) and the warm-up")
p.add_argument("--soak", type=float, default=30.0)
args = p.parse_args()

# The cap on vmmd's RSS under the flood, above its RSS before the flood (1,000 domains defined).
# What the flood may make vmmd hold at once, by its own limits: 4 MiB of partial line on the
# admin connection sending over-cap lines (8 MiB with the string's growth), up to 1 MiB of
# unread replies on each of the 8 bad-line connections before vmmd stops reading them, 64 KiB
# of partial line per read-only connection and 16 KiB of head per HTTP connection: about 18 MiB.
# 32 MiB leaves room for the allocator keeping freed buffers; more would be a leak or a missing
# bound.
RSS_CAP_KIB = 32 << 10
LATENCY_FACTOR = 2.0
# The flood (flood_load.py); the caps are vmmd's line caps (RpcOptions in api/rpc/rpc_server.h).
SHAPE = {"rpc_connections_per_socket": 4, "over_cap_connections_per_socket": 1, "idle_http": 64,
         "ro_cap_bytes": 64 << 10, "rw_cap_bytes": 4 << 20}
VMCTL = [args.vmctl, "--connect", args.socket]
TIMEOUT = 60
LIST_TIMEOUT = 10  # a list taking longer is killed and counted as failed


def vmctl_list():
    try:
        r = subprocess.run(VMCTL + ["list", "--all"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=LIST_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"vmctl list --all: no answer within {LIST_TIMEOUT} s (killed)") from None
    if r.returncode != 0:
        raise RuntimeError(f"vmctl list --all: exit {r.returncode}: {r.stderr.decode(errors='replace').strip()[-300:]}")


def timed_list(_=None):
    t0 = sampling.now_ms()
    vmctl_list()
    return sampling.now_ms() - t0


def rss_kb():
    for line in open(f"/proc/{args.pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_s(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


TOKEN = ""


def metrics():
    """vmmd's /metrics as {name{labels}: value} (itself one HTTP request, untimed)."""
    req = urllib.request.Request(args.http + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    out = {}
    for line in urllib.request.urlopen(req, timeout=TIMEOUT).read().decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


class RssPoller(threading.Thread):
    """VmRSS every 100 ms, the peak kept per phase."""

    def __init__(self):
        super().__init__(daemon=True)
        self.phase, self.peaks, self.readings, self.done = "setup", {}, 0, threading.Event()

    def run(self):
        while not self.done.wait(0.1):
            try:
                kb = rss_kb()
            except (OSError, RuntimeError):
                continue
            self.readings += 1
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), kb)


class Flood:
    """The load process (flood_load.py), opened and closed on command; its CPU time and vmmd's
    are summed over the windows it was open."""

    def __init__(self):
        host = args.http.split("//", 1)[-1]
        self.proc = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "flood_load.py"),
                                      "--ro-socket", args.ro_socket, "--rw-socket", args.socket, "--http", host,
                                      "--rpc-connections", str(SHAPE["rpc_connections_per_socket"]),
                                      "--over-cap-connections", str(SHAPE["over_cap_connections_per_socket"]),
                                      "--idle-http", str(SHAPE["idle_http"]),
                                      "--ro-cap", str(SHAPE["ro_cap_bytes"]), "--rw-cap", str(SHAPE["rw_cap_bytes"])],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.on, self.stats, self.cpu = False, {}, {"vmmd": 0.0, "flood": 0.0, "seconds": 0.0}

    def command(self, cmd, answer):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line.startswith(answer):
            raise RuntimeError(f"flood process: {cmd!r} answered {line!r} (exit {self.proc.poll()})")
        return line[len(answer):].strip()

    def start(self):
        if not self.on:
            self.t0 = (cpu_s(args.pid), cpu_s(self.proc.pid), time.monotonic())
            self.command("start", "running")
            self.on = True
            poller.phase = "flood"

    def stop(self):
        if self.on:
            self.stats = json.loads(self.command("stop", "stopped"))
            t1 = (cpu_s(args.pid), cpu_s(self.proc.pid), time.monotonic())
            for k, a, b in zip(("vmmd", "flood", "seconds"), self.t0, t1):
                self.cpu[k] += b - a
            self.on = False
            wait_calm()
            poller.phase = "quiet"

    def close(self):
        bench_clients.end_process(self.proc)


def wait_calm(timeout=30):
    """Until vmmd has closed every flood connection (only this /metrics request left)."""
    deadline = time.monotonic() + timeout
    while True:
        m = metrics()
        if m.get("vmm_rpc_connections", 0) == 0 and m.get("vmm_http_connections", 0) <= 1:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"vmmd still holds flood connections {timeout} s after they were closed: "
                               f"rpc {m.get('vmm_rpc_connections')}, http {m.get('vmm_http_connections')}")
        time.sleep(0.05)


def check_bad_lines():
    """Each bad line sent once on the read-only socket: every one must be refused with an error
    (a line vmmd ran as a call would make this a load of calls, not of bad input)."""
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(TIMEOUT)
    s.connect(args.ro_socket)
    f = s.makefile("rwb")
    out = []
    for line in flood_load.BAD_LINES + flood_load.DEEP_LINES:
        f.write(line + b"\n")
        f.flush()
        reply = json.loads(f.readline())
        err = reply[0].get("error") if isinstance(reply, list) else reply.get("error")
        if not err:
            raise RuntimeError(f"bad line {line[:80]!r} was answered without an error: {reply}")
        out.append({"line": repr(line[:80]) + (f" ({len(line)} bytes)" if len(line) > 80 else ""),
                    "error": f"{err.get('code')}: {err.get('message', '')[:120]}"})
    f.close()
    s.close()
    return out


def metric_sum(m, name):
    return sum(v for k, v in m.items() if k == name or k.startswith(name + "{"))


COUNTERS = ("vmm_rpc_connections_refused_total", "vmm_rpc_connections_throttled_total", "vmm_http_connections_refused_total",
            "vmm_http_received_bytes_total", "vmm_api_errors_total", "vmm_event_loop_slow_callbacks_total")

rpc = bench_clients.Rpc(args.socket, TIMEOUT)
for i in range(args.count):
    rpc.call("domain.create", {"definition": {"name": f"flood-{i:04d}", "type": "test", "memory": "256MiB", "vcpus": 1}})
TOKEN = rpc.call("token.create", {"name": "flood-bench", "role": "read"})["token"]
rpc.file.close()
rpc.sock.close()
bad_line_replies = check_bad_lines()

poller = RssPoller()
poller.start()
time.sleep(1)
rss_before = rss_kb()
m_before = metrics()
log_before = os.path.getsize(args.log)
flood = Flood()
result, alive, soak, m_during, run_errors = {}, {}, {}, {}, []
try:
    poller.phase = "quiet"
    for flooded in (False, True):  # every path once before anything is timed
        try:
            if flooded:
                flood.start()
            vmctl_list()
        except Exception as e:  # the pairs will show whether it persists
            run_errors.append(f"first list{' under the flood' if flooded else ''} (untimed): {type(e).__name__}: {e}"[-400:])
        finally:
            flood.stop()

    def prepare(flooded):
        def f(_):
            flood.start() if flooded else flood.stop()
            time.sleep(args.settle)
        return f

    targets = {"quiet": sampling.Target(timed_list, prepare=prepare(False)),
               "flood": sampling.Target(timed_list, prepare=prepare(True), cleanup=lambda _: flood.stop())}
    result = sampling.PairedRun(targets, args.runs, ("list",), warmup=lambda *_: vmctl_list(), preceding=(
        f"before every timed call, the flood opened (flood) or vmmd left with no connection but the benchmark's "
        f"(quiet; every flood connection closed by vmmd, read from /metrics), then {args.settle:g} s, then one untimed "
        f"`vmctl list --all`; the flood closed after each flood sample")).run().result(diffs=[("list", "flood", "quiet")])

    # One sustained flood, long enough for vmmd's 10 s head timeout to close the idle HTTP
    # connections (and the flood to reopen them).
    before, cpu_before = dict(flood.stats), dict(flood.cpu)
    flood.start()
    t_end, samples, errors = time.monotonic() + args.soak, [], []
    while time.monotonic() < t_end:
        t = time.monotonic()
        try:
            samples.append(timed_list())
        except Exception as e:  # a gap, reported
            samples.append(None)
            errors.append(f"{type(e).__name__}: {e}"[-300:])
        if t_end - time.monotonic() < 1.5 and not m_during:
            t0 = sampling.now_ms()
            m_during = metrics()
            m_during["metrics_request_ms"] = sampling.now_ms() - t0
        time.sleep(max(0.0, 1 - (time.monotonic() - t)))
    flood.stop()
    cpu = {k: flood.cpu[k] - cpu_before[k] for k in cpu_before}
    soak = {"seconds": round(cpu["seconds"], 1), "vmmd_cpus": round(cpu["vmmd"] / cpu["seconds"], 2),
            "flood_cpus": round(cpu["flood"] / cpu["seconds"], 2), "samples_ms": [None if x is None else round(x, 3) for x in samples],
            "stats_ms": sampling.summary(samples), "errors": errors,
            "flood": {k: round(v - before.get(k, 0), 3) for k, v in flood.stats.items()}}
except Exception as e:  # report what was measured and why the rest is missing
    run_errors.append(f"{type(e).__name__}: {e}")
finally:
    try:
        flood.stop()
    except Exception as e:
        run_errors.append(f"closing the flood: {e}")
    flood.close()
    poller.phase = "after"
    time.sleep(1)
    poller.done.set()

rss_after = rss_kb()
log_growth = os.path.getsize(args.log) - log_before
try:
    t0 = sampling.now_ms()
    r = subprocess.run(VMCTL + ["host", "info"], capture_output=True, timeout=TIMEOUT)
    alive["host_info_ms"] = round(sampling.now_ms() - t0, 3)
    alive["host_info_ok"] = r.returncode == 0
    listed = json.loads(bench_clients.cli(VMCTL + ["list", "--all", "-o", "json"], TIMEOUT))
    alive["domains_listed"] = len(listed)
except Exception as e:
    alive["error"] = f"{type(e).__name__}: {e}"[-300:]
    alive.setdefault("host_info_ok", False)
m_after = {}
try:
    m_after = metrics()
except Exception as e:
    run_errors.append(f"metrics after the flood: {e}")

fs = flood.stats
secs = fs.get("active_seconds") or 0
sampling.write_result(args.out, dict(result, **{
    "count": args.count, "runs": args.runs, "settle_s": args.settle, "soak": soak, "list_timeout_s": LIST_TIMEOUT,
    "vmmd_command": "vmmd --state-dir DIR --run-dir DIR --listen 127.0.0.1:0 --default-network no (default drivers: qemu,lxc,xen,test)",
    "flood_shape": dict(SHAPE, idle_http_silent=SHAPE["idle_http"] - SHAPE["idle_http"] // 2, idle_http_slow=SHAPE["idle_http"] // 2),
    "flood": dict(fs, bad_lines_per_s=round(fs.get("bad_lines", 0) / secs) if secs else None,
                  bad_mib_per_s=round(fs.get("bad_bytes", 0) / secs / (1 << 20), 1) if secs else None),
    "cpu_while_flooded": {"seconds": round(flood.cpu["seconds"], 1),
                          "vmmd_cpus": round(flood.cpu["vmmd"] / flood.cpu["seconds"], 2) if flood.cpu["seconds"] else None,
                          "flood_cpus": round(flood.cpu["flood"] / flood.cpu["seconds"], 2) if flood.cpu["seconds"] else None},
    "rss_kb": {"before": rss_before, "peak_quiet": poller.peaks.get("quiet"), "peak_flood": poller.peaks.get("flood"),
               "after": rss_after, "readings": poller.readings},
    "rss_cap_kb": RSS_CAP_KIB, "latency_factor": LATENCY_FACTOR, "alive_after": alive,
    "metrics": {"before": {k: metric_sum(m_before, k) for k in COUNTERS},
                "after": {k: metric_sum(m_after, k) for k in COUNTERS} if m_after else {},
                "during_soak": {k: m_during.get(k) for k in ("vmm_rpc_connections", "vmm_http_connections", "metrics_request_ms",
                                                             "vmm_event_loop_longest_callback_seconds")} if m_during else {},
                "longest_loop_callback_s": m_after.get("vmm_event_loop_longest_callback_seconds")},
    "vmmd_log_growth_bytes": log_growth, "bad_line_replies": bad_line_replies, "run_errors": run_errors}))
