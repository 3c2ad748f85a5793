"""The clients the benchmarks drive: vmmd over one JSON-RPC connection, one long-running virsh
shell, and a command per call (vmctl, virsh). Shared by the benchmark scripts."""
import json, os, select, socket, subprocess, time


class Rpc:
    """vmmd's JSON-RPC over its unix socket: one JSON object per line."""

    def __init__(self, path, timeout):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.file = self.sock.makefile("rwb")
        self.next_id = 0

    def call(self, method, params):
        self.next_id += 1
        self.file.write((json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}) + "\n").encode())
        self.file.flush()
        while True:
            line = self.file.readline()
            if not line:
                raise RuntimeError("vmmd closed the connection")
            msg = json.loads(line)
            if msg.get("id") != self.next_id:
                continue  # a notification
            if "error" in msg:
                raise RuntimeError(f"{method}: {msg['error']}")
            return msg["result"]

    def call_and_wait(self, method, params):
        op = self.call(method, params)
        while op.get("status") not in ("succeeded", "failed", "cancelled"):
            op = self.call("operation.wait", {"id": op["id"], "timeout": "60s"})
        if op["status"] != "succeeded":
            raise RuntimeError(f"{method}: {op.get('error')}")
        return op["result"]


class VirshShell:
    """One virsh process kept open: each command is followed by an `echo` whose output marks its end."""
    MARK = b"@@vmm-bench-done@@"

    def __init__(self, virsh, timeout):
        # stdbuf: virsh writes its output block-buffered to a pipe
        self.proc = subprocess.Popen(["stdbuf", "-oL", "-eL"] + virsh, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.buf = b""
        self.timeout = timeout

    def run(self, cmd):
        self.proc.stdin.write(f"{cmd}\necho {self.MARK.decode()}\n".encode())
        self.proc.stdin.flush()
        deadline = time.monotonic() + self.timeout
        end = b"\n" + self.MARK
        while end not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise RuntimeError(f"virsh shell: no answer to {cmd!r}")
            data = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not data:
                raise RuntimeError("virsh shell exited")
            self.buf += data
        out, self.buf = self.buf.split(end, 1)
        text = out.decode(errors="replace")
        if "error:" in text:
            raise RuntimeError(f"virsh {cmd}: {text.strip()[-300:]}")
        return text

    def close(self):
        end_process(self.proc)


def end_process(proc, grace=10):
    """Closes a helper's stdin (its signal to stop) and waits; kills it after `grace` seconds."""
    if proc.poll() is not None:
        return
    proc.stdin.close()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cli(argv, timeout):
    r = subprocess.run(argv, capture_output=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.decode(errors='replace').strip()[-300:]}")
    return r.stdout

