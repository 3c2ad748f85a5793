#!/usr/bin/env python3
"""Times a disposable run of `true` in a fresh test-guest VM, paired run by run:
the floor - vmmd's own QEMU command line started by hand, then the guest agent polled until it
answers and `true` run through it (guest-exec), then QEMU killed - against
`vmctl run --rm --image test-guest -- true` (clone, define, start, agent, exec, destroy,
undefine, delete). Prints JSON with every sample."""
import argparse, json, os, socket, statistics, subprocess, time

import bench_clients

p = argparse.ArgumentParser()
for a in ("--work", "--vmctl", "--socket"):
    p.add_argument(a, required=True)
p.add_argument("--runs", type=int, default=10)
args = p.parse_args()
VMCTL = [args.vmctl, "--connect", args.socket]


def agent_call(path, cmd, arguments=None, timeout=1.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        sync_id = int(time.time() * 1000) % 1000000
        s.sendall(b"\xff" + json.dumps({"execute": "guest-sync-delimited", "arguments": {"id": sync_id}}).encode() + b"\n")
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("closed")
            buf += chunk
            # replies follow a 0xff delimiter; keep the last complete JSON line
            lines = [l for l in buf.replace(b"\xff", b"\n").split(b"\n") if l.strip()]
            if any(json.loads(l).get("return") == sync_id for l in lines if l.startswith(b"{")):
                break
        msg = {"execute": cmd}
        if arguments:
            msg["arguments"] = arguments
        s.sendall(json.dumps(msg).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("closed")
            buf += chunk
        return json.loads(buf.split(b"\n")[0])["return"]
    finally:
        s.close()


FLOOR_ARGV = []


def capture_argv():
    """Launches one domain through vmmd and keeps its QEMU argv."""
    subprocess.run(VMCTL + ["launch", "test-guest", "bench0"], check=True, capture_output=True)
    info = json.loads(subprocess.run(VMCTL + ["info", "bench0", "-o", "json"], check=True, capture_output=True).stdout)
    pid = info["runtime"]["pid"]
    FLOOR_ARGV.extend(open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\0")[:-1])
    subprocess.run(VMCTL + ["rm", "bench0"], check=True, capture_output=True)


def floor_run(i):
    agent = f"{args.work}/floor-{i}.agent"
    argv = bench_clients.floor_argv(FLOOR_ARGV, args.work, i, agent)
    # vmmd's clone was removed with bench0: the floor boots its own overlay of the image,
    # made before the clock starts.
    disk = f"{args.work}/floor-{i}.qcow2"
    for n, a in enumerate(argv):
        if "bench0-root.qcow2" in a:
            image = a.split('"filename":"')[1].split('"')[0].replace("bench0-root.qcow2", "test-guest.qcow2")
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", image, "-F", "qcow2", disk], check=True)
            argv[n] = a.replace(a.split('"filename":"')[1].split('"')[0], disk)
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError("the floor QEMU exited: " + proc.stderr.read().decode() + "\n" + " ".join(argv))
            if time.perf_counter() - t0 > 120:
                raise RuntimeError("the floor guest's agent never answered")
            try:
                agent_call(agent, "guest-ping")
                break
            except (OSError, ValueError):
                time.sleep(0.02)
        pid = agent_call(agent, "guest-exec", {"path": "true", "capture-output": True})["pid"]
        while not agent_call(agent, "guest-exec-status", {"pid": pid})["exited"]:
            time.sleep(0.01)
        return (time.perf_counter() - t0) * 1000
    finally:
        proc.kill()
        proc.wait()


def vmm_run(i):
    t0 = time.perf_counter()
    r = subprocess.run(VMCTL + ["run", "--rm", "--image", "test-guest", "--", "true"], capture_output=True)
    ms = (time.perf_counter() - t0) * 1000
    if r.returncode != 0:
        raise RuntimeError(f"vmctl run failed: {r.stderr.decode()}")
    return ms


capture_argv()
samples = {"floor": [], "vmm": []}
for i in range(args.runs):
    samples["floor"].append(floor_run(i))
    samples["vmm"].append(vmm_run(i))
left = json.loads(subprocess.run(VMCTL + ["list", "--all", "-o", "json"], capture_output=True).stdout or b"[]")
med = {k: statistics.median(v) for k, v in samples.items()}
print(json.dumps({"runs": args.runs, "samples_ms": samples, "median_ms": med,
                  "overhead_ratio": med["vmm"] / med["floor"], "domains_left": len(left),
                  "floor_argv": FLOOR_ARGV}, indent=1))
