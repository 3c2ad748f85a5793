"""Paired sampling and its statistics, shared by every benchmark.

A benchmark has targets (vmm, libvirt, a floor, ...) and runs them in pairs: pair i runs every
target once. Within a pair the order rotates (pair i starts at target i mod n) and reverses on
every other round of n pairs, so over 2n pairs each target takes each position equally often and
follows each other target equally often. The orders are recorded in the results.

Every timed sample gets the same preceding state: right before it, untimed, the benchmark's
warm-up action (an action of the same kind: a boot before a boot, the same call before a call),
then an optional idle gap of equal length. The benchmark states which in `preceding_state`.

A failed sample is a gap (None) in its pair's slot; lists stay aligned by pair, so paired
differences only use pairs where both sides have a sample. A target that fails several times in
a row is dropped: its remaining slots are gaps, and the counts show it.

Every result file carries provenance (commit, tree state, date, machine, versions) so that
report.py can refuse to mix results from different commits."""
import datetime, hashlib, json, os, platform, shutil, statistics, subprocess, sys, time
from dataclasses import dataclass
from typing import Callable, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def now_ms():
    return time.perf_counter() * 1000


def orders(targets, pairs):
    """Rotation, reversed on every other round of len(targets) pairs."""
    n = len(targets)
    out = []
    for i in range(pairs):
        o = list(targets[i % n:]) + list(targets[:i % n])
        if (i // n) % 2 == 1:
            o.reverse()
        out.append(o)
    return out


def summary(xs):
    """Median, quartiles (inclusive method) and range of the samples present; n counts them."""
    v = sorted(x for x in xs if x is not None)
    if not v:
        return {"n": 0}
    if len(v) == 1:
        q1 = q3 = v[0]
    else:
        q1, _, q3 = statistics.quantiles(v, n=4, method="inclusive")
    return {"n": len(v), "median": statistics.median(v), "q1": q1, "q3": q3, "min": v[0], "max": v[-1]}


def differences(a, b):
    """Per-pair a - b where both samples exist, and their summary."""
    d = [x - y for x, y in zip(a, b) if x is not None and y is not None]
    return d, summary(d)


@dataclass
class Target:
    """One side of a comparison. sample(i) returns {op: ms} (or one number for op "time");
    it times only what it measures. prepare(i) runs before the warm-up, cleanup(i) after the
    sample (also after a failed one); neither is timed. warmup(i), when given, replaces the run's
    common warm-up for this target."""
    sample: Callable[[int], object]
    prepare: Optional[Callable[[int], None]] = None
    cleanup: Optional[Callable[[int], None]] = None
    warmup: Optional[Callable[[int], None]] = None


class PairedRun:
    def __init__(self, targets, pairs, ops, *, warmup=None, gap_s=0.0, preceding="", max_failures=3, log=sys.stderr):
        self.targets = targets  # name -> Target, in base order
        self.names = list(targets)
        self.pairs = pairs
        self.ops = list(ops)
        self.warmup = warmup  # callable(target_name, pair) or None
        self.gap_s = gap_s
        self.preceding = preceding
        self.max_failures = max_failures
        self.log = log
        self.samples = {op: {t: [None] * pairs for t in self.names} for op in self.ops}
        self.errors = []  # {"pair", "target", "error"}
        self.dropped = {}
        self.orders = orders(self.names, pairs)
        self.seconds = 0.0

    def run(self):
        t_start = time.monotonic()
        failures = {t: 0 for t in self.names}
        for i, order in enumerate(self.orders):
            for name in order:
                if name in self.dropped:
                    continue
                t = self.targets[name]
                try:
                    try:
                        if t.prepare:
                            t.prepare(i)
                        if t.warmup:
                            t.warmup(i)
                        elif self.warmup:
                            self.warmup(name, i)
                        if self.gap_s:
                            time.sleep(self.gap_s)
                        r = t.sample(i)
                    finally:
                        if t.cleanup:
                            t.cleanup(i)
                    if not isinstance(r, dict):
                        r = {self.ops[0]: r}
                    for op, ms in r.items():
                        self.samples[op][name][i] = ms
                    failures[name] = 0
                except Exception as e:  # a gap in this pair, reported
                    msg = f"{type(e).__name__}: {e}"[-600:]
                    self.errors.append({"pair": i, "target": name, "error": msg})
                    print(f"pair {i} {name}: {msg}", file=self.log)
                    failures[name] += 1
                    if failures[name] >= self.max_failures:
                        self.dropped[name] = f"dropped after {failures[name]} failures in a row at pair {i}"
            print(f"pair {i + 1}/{self.pairs} done", file=self.log, flush=True)
        self.seconds = round(time.monotonic() - t_start, 1)
        return self

    def result(self, diffs=(), **extra):
        """The JSON-able result: every sample, its summary per op and target, and the paired
        differences asked for as (op, a, b)."""
        stats = {op: {t: summary(v) for t, v in by.items()} for op, by in self.samples.items()}
        d = {}
        for op, a, b in diffs:
            per_pair, s = differences(self.samples[op][a], self.samples[op][b])
            d.setdefault(op, {})[f"{a} - {b}"] = dict(s, per_pair=[round(x, 3) for x in per_pair])
        return dict({
            "pairs": self.pairs, "targets": self.names, "orders": self.orders,
            "order_scheme": "rotation by pair, reversed every other round of targets",
            "preceding_state": self.preceding, "gap_s": self.gap_s,
            "samples_ms": {op: {t: [None if x is None else round(x, 3) for x in v] for t, v in by.items()}
                           for op, by in self.samples.items()},
            "stats_ms": stats, "differences_ms": d, "errors": self.errors, "dropped": self.dropped,
            "seconds": self.seconds}, **extra)


# ---------------------------------------------------------------- provenance

def _run(argv, cwd=None):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=cwd)
        return r.stdout.strip() if r.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _first_line(s):
    return s.splitlines()[0].strip() if s else ""


def versions():
    v = {"qemu": _first_line(_run(["qemu-system-x86_64", "--version"])),
         "libvirt": _first_line(_run(["/usr/sbin/libvirtd", "--version"])),
         "lxd": ""}
    if shutil.which("lxd"):
        v["lxd"] = _first_line(_run(["lxd", "--version"])) or "installed (no version answered)"
    return v


def machine():
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    except OSError:
        pass
    try:
        load = " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        load = ""
    return {"host": platform.node(), "kernel": platform.release(), "cpu": cpu, "cpus": os.cpu_count(),
            "memory": mem, "kvm": os.path.exists("/dev/kvm"), "loadavg": load}


def tree_state():
    commit = _run(["git", "rev-parse", "HEAD"], ROOT)
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], ROOT)
    diff_sha = ""
    if status:
        diff = subprocess.run(["git", "diff", "HEAD"], capture_output=True, cwd=ROOT).stdout
        diff_sha = hashlib.sha256(diff).hexdigest()[:16]
    return {"commit": commit, "dirty": bool(status), "diff_sha": diff_sha,
            "dirty_files": len(status.splitlines()) if status else 0}


def provenance():
    return dict(tree_state(), date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
                machine=machine(), versions=versions())


def write_result(path, result):
    """Writes the result with its provenance, atomically (only a finished run replaces the last)."""
    result = dict(result, provenance=provenance())
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
    return result


# ---------------------------------------------------------------- waiting for console output

class _Inotify:
    """Enough inotify (through libc) to wake up when a file in a directory changes."""
    IN_MODIFY, IN_CREATE, IN_MOVED_TO = 0x2, 0x100, 0x80

    def __init__(self):
        import ctypes, ctypes.util
        self.libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")

    def watch(self, directory):
        import ctypes
        wd = self.libc.inotify_add_watch(self.fd, directory.encode(), self.IN_MODIFY | self.IN_CREATE | self.IN_MOVED_TO)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {directory}")

    def drain(self):
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass

    def close(self):
        os.close(self.fd)


def wait_for_text(path, marker, t0_ms, timeout_s=120):
    """Milliseconds from t0_ms (a now_ms() value) until `marker` appears in the file at `path`.
    Woken by inotify on the file's directory (no busy polling that would take CPU from the
    guest); the directory may appear later than t0."""
    import select
    ino = _Inotify()
    try:
        directory = os.path.dirname(path)
        watching = False
        deadline = time.monotonic() + timeout_s
        offset, tail = 0, b""
        while True:
            if not watching and os.path.isdir(directory):
                ino.watch(directory)
                watching = True
            try:
                with open(path, "rb") as f:
                    if f.seek(0, 2) < offset:  # replaced: read from the start
                        offset, tail = 0, b""
                    f.seek(offset)
                    data = f.read()
                    offset += len(data)
                if marker in tail + data:
                    return now_ms() - t0_ms
                tail = (tail + data)[-len(marker):]
            except FileNotFoundError:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {marker!r} in {path} after {timeout_s} s")
            select.select([ino.fd], [], [], min(left, 0.05 if watching else 0.002))
            ino.drain()
    finally:
        ino.close()
