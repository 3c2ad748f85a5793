#!/usr/bin/env python3
"""Times a disposable run of `true` in a fresh test-guest VM, in pairs:

- floor: a fresh qcow2 overlay of the image (qemu-img create), vmmd's exact QEMU argv for a
  launched test-guest domain with that overlay in place of vmmd's clone, launched as vmmd launches
  it (floor.py: inherited monitor/agent/console sockets, -S, QMP negotiation, `cont`), ONE guest
  agent connection (guest-sync-delimited once, then guest-ping, guest-exec `true` and
  guest-exec-status polled back to back on it), QEMU killed and reaped, the overlay deleted;
- vmm: `vmctl -o json run --rm --image test-guest -- true` (clone, define, start, wait for the
  agent, guest-exec with streamed output, destroy, undefine, delete the clone; every record
  fsynced); its JSON result carries vmmd's own phase timings (launch, agent, exec, remove).

Writes JSON with every sample (see sampling.py for the pairing)."""
import argparse, json, os, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_clients, floor, sampling  # noqa: E402

p = argparse.ArgumentParser()
for a in ("--work", "--vmctl", "--socket", "--vmmd-state", "--out"):
    p.add_argument(a, required=True)
p.add_argument("--runs", type=int, default=20)
args = p.parse_args()
VMCTL = [args.vmctl, "--connect", args.socket]
rpc = bench_clients.Rpc(args.socket, 120)
CAPTURE = "vmmbench-run0"


def run(argv):
    return bench_clients.cli(argv, 180)


def capture():
    """Launches one domain from the image through vmmd; returns its QEMU argv and, for each disk
    that is vmmd's clone, the clone's path and its backing file."""
    run(VMCTL + ["launch", "test-guest", CAPTURE])
    try:
        dom = rpc.call("domain.get", {"name": CAPTURE})
        captured = floor.Captured(dom["runtime"]["pid"], os.path.join(args.work, "floor-files"))
        clones = {}
        for a in captured.argv:
            for part in a.replace('"', ",").split(","):
                path = part.split("=", 1)[-1]
                if path.startswith("/") and CAPTURE in os.path.basename(path) and path not in clones:
                    info = json.loads(run(["qemu-img", "info", "-U", "--output=json", path]))
                    backing = info.get("full-backing-filename") or info.get("backing-filename")
                    if not backing:
                        raise RuntimeError(f"{path}: vmmd's clone has no backing file")
                    clones[path] = backing
        if not clones:
            raise RuntimeError("no clone of the image found in vmmd's QEMU argv: " + " ".join(captured.argv))
        return captured, clones
    finally:
        run(VMCTL + ["rm", CAPTURE])


CAPTURED, CLONES = capture()
OVERLAY = os.path.join(args.work, "floor-overlay.qcow2")
for clone in CLONES:
    CAPTURED.substitute(clone, OVERLAY)
FLOOR_ARGV = CAPTURED.argv
missing = [p for p, _ in CAPTURED.files.values() if p != OVERLAY and not os.path.exists(p)]
if missing:
    raise SystemExit(f"files vmmd passed to QEMU that no longer exist: {missing}")
BACKING = next(iter(CLONES.values()))
FLOOR = floor.QemuFloor(CAPTURED, os.path.join(args.work, "floor"))


BOOT_MARKS = (b"GUEST-BOOTED", b"AGENT-STARTED")  # what the test guest's init prints on its console
VM_NAME = "vmmbench-run"
VM_LOG = f"{args.vmmd_state}/qemu/{VM_NAME}/console.log"


class ConsoleMarks(threading.Thread):
    """When the guest's init printed BOOT_MARKS, in ms from t0 (None if not seen): read from the
    floor's console socket, or from vmmd's console.log. Only observes; both sides alike."""

    def __init__(self, t0, sock=None, path=None):
        super().__init__(daemon=True)
        self.t0, self.sock, self.path, self.seen = t0, sock, path, {}

    def run(self):
        try:
            if self.sock is not None:
                buf = b""
                while len(self.seen) < len(BOOT_MARKS):
                    data = self.sock.recv(65536)
                    if not data:
                        return
                    buf += data
                    for m in BOOT_MARKS:
                        if m in buf and m not in self.seen:
                            self.seen[m] = sampling.now_ms() - self.t0
            else:
                for m in BOOT_MARKS:
                    self.seen[m] = sampling.wait_for_text(self.path, m, self.t0, 120)
        except Exception:
            pass  # the sample's own checks report failures

    def result(self):
        self.join(1)
        return {"booted": self.seen.get(BOOT_MARKS[0]), "agent_started": self.seen.get(BOOT_MARKS[1])}


def floor_sample(_):
    """The floor's total and its phases (what vmmd reports as launch, agent, exec and remove)."""
    t0 = sampling.now_ms()
    phases = {}
    floor.qemu_img("create", "-q", "-f", "qcow2", "-b", BACKING, "-F", "qcow2", OVERLAY)
    try:
        FLOOR.launch()
        phases["launch"] = sampling.now_ms() - t0
        marks = ConsoleMarks(t0, sock=FLOOR.console)
        marks.start()
        agent = FLOOR.agent()
        deadline = time.monotonic() + 60
        agent.call("guest-ping", deadline=deadline)
        phases["agent"] = sampling.now_ms() - t0 - phases["launch"]
        pid = agent.call("guest-exec", {"path": "true"}, deadline)["pid"]
        while not (st := agent.call("guest-exec-status", {"pid": pid}, deadline))["exited"]:
            pass
        if st.get("exitcode") != 0:
            raise RuntimeError(f"true exited with {st}")
        phases["exec"] = sampling.now_ms() - t0 - phases["launch"] - phases["agent"]
    finally:
        t1 = sampling.now_ms()
        FLOOR.kill()
        os.remove(OVERLAY)
        phases["remove"] = sampling.now_ms() - t1
    phases["total"] = sampling.now_ms() - t0
    return dict(phases, **marks.result())  # after the clock stopped


def vmm_prepare(_):
    if os.path.exists(VM_LOG):
        os.remove(VM_LOG)


def vmm_sample(_):
    t0 = sampling.now_ms()
    marks = ConsoleMarks(t0, path=VM_LOG)
    marks.start()
    out = run(VMCTL + ["-o", "json", "run", "--rm", "--name", VM_NAME, "--image", "test-guest", "--", "true"])
    total = sampling.now_ms() - t0
    t = json.loads(out).get("timings", {})
    return dict(marks.result(), total=total, launch=t.get("launch_ms"), agent=t.get("agent_ms"), exec=t.get("exec_ms"),
                remove=t.get("remove_ms"))


def warm(*_):
    """The preceding state of every sample: one untimed floor run (boot, agent, true, kill)."""
    floor_sample(None)


targets = {"floor": sampling.Target(floor_sample), "vmm": sampling.Target(vmm_sample, prepare=vmm_prepare)}
PRECEDING = ("right before every timed run, one untimed floor run (boot, agent, `true`, QEMU killed and reaped); "
             "vmctl run --rm returns only after its domain is destroyed and removed")
try:
    for name, t in targets.items():  # caches before anything is timed
        try:
            t.sample(0)
        except Exception as e:  # the pairs will show whether it persists
            print(f"first {name} run (untimed) failed: {e}", file=sys.stderr)
    runner = sampling.PairedRun(targets, args.runs, ("total", "launch", "agent", "exec", "remove", "booted", "agent_started"), warmup=warm,
                                preceding=PRECEDING).run()
finally:
    FLOOR.kill()
left = rpc.call("domain.list", {})
sampling.write_result(args.out, runner.result(
    diffs=[(op, "vmm", "floor") for op in ("total", "launch", "agent", "exec", "remove", "booted", "agent_started")], domains_left=len(left), floor_argv=FLOOR_ARGV,
    floor_descriptors=floor.chardev_fds(FLOOR_ARGV), floor_files=FLOOR.files, vmm_clones_replaced=list(CLONES)))
