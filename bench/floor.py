"""The bare-QEMU floor of the start and run benchmarks: vmmd's exact QEMU command line, launched
the way vmmd launches it, by the least code that can.

Like vmmd (drivers/qemu/qemu_driver.cc, start and attach): make the run directory (0700), create a
listening unix socket (0600) for every chardev vmmd passes as an inherited descriptor (monitor,
guest agent, console), open every image, kernel and initrd vmmd passes as a descriptor (`-add-fd`,
`/proc/self/fd/N`) with the access vmmd gave it, spawn QEMU in a new session with all of them as
the same descriptor numbers, its working directory holding the files vmmd copied there, and its
stdout/stderr in a log file, connect to the monitor and negotiate
(`qmp_capabilities`), connect to the console socket, send `cont` (the argv keeps `-S`). The
console is then read from its socket. What vmmd does besides (its RPC, validation, the runtime
record, the console relay into console.log, the vmctl process) and what confines its QEMU (a uid
of its own, no capabilities, a mount namespace: the floor runs QEMU as root in the host's) is what
the benchmark measures as its overhead."""
import json, os, re, select, shutil, signal, socket, subprocess, time

CHARDEV_FD = re.compile(r"^socket,id=([^,]+),fd=(\d+)(,|$)")
ADD_FD = re.compile(r"^fd=(\d+),set=(\d+),opaque=(.*)$")
PROC_FD = re.compile(r"^/proc/self/fd/(\d+)$")
PIDS_FILE = os.environ.get("VMM_BENCH_PIDS", "")  # every QEMU pid is noted here (bench/lib.sh stops leftovers)


def chardev_fds(argv):
    """{chardev id: descriptor number} for the chardevs vmmd passes as inherited sockets."""
    out = {}
    for a in argv:
        m = CHARDEV_FD.match(a)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def fdset_files(argv):
    """{descriptor: (path, access)} for the images vmmd passes as fd sets: `-add-fd
    fd=N,set=M,opaque=PATH` (vmmd names the file in opaque); read-write when a -blockdev using
    /dev/fdset/M is. (QEMU dups and closes N, so the path cannot be read from /proc afterwards.)"""
    writable = set()
    for prev, a in zip([""] + argv, argv):
        if prev == "-blockdev" and a.startswith("{"):
            node = json.loads(a)
            if str(node.get("filename", "")).startswith("/dev/fdset/") and not node.get("read-only", False):
                writable.add(int(node["filename"].rsplit("/", 1)[1]))
    out = {}
    for prev, a in zip([""] + argv, argv):
        m = ADD_FD.match(a) if prev == "-add-fd" else None
        if m:
            out[int(m.group(1))] = (m.group(3).replace(",,", ","), os.O_RDWR if int(m.group(2)) in writable else os.O_RDONLY)
    return out


class Captured:
    """What a running QEMU of vmmd's got: its argv, the file behind each passed descriptor (path,
    access mode) and copies of the files in its working directory."""

    def __init__(self, pid, keep_dir):
        self.argv = capture_argv(pid)
        self.files = fdset_files(self.argv)
        for a in self.argv:  # the kernel and initrd, read by QEMU through its inherited descriptor
            m = PROC_FD.match(a)
            if m:
                fd = int(m.group(1))
                self.files[fd] = (os.readlink(f"/proc/{pid}/fd/{fd}"), os.O_RDONLY)
        self.keep_dir = keep_dir
        shutil.rmtree(keep_dir, ignore_errors=True)
        os.makedirs(keep_dir, 0o700)
        cwd = f"/proc/{pid}/cwd"
        for name in os.listdir(cwd):
            if name in self.argv and os.path.isfile(os.path.join(cwd, name)):
                shutil.copyfile(os.path.join(cwd, name), os.path.join(keep_dir, name))

    def substitute(self, old, new):
        """Another file where vmmd passed `old` (in the argv and behind descriptors)."""
        self.argv = [a.replace(old, new) for a in self.argv]
        self.files = {fd: (new if p == old else p, mode) for fd, (p, mode) in self.files.items()}


class Channel:
    """Newline-delimited JSON over a connected socket, with a deadline per read."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def read_json(self, deadline, skip_to_delimiter=False):
        while True:
            if skip_to_delimiter:
                k = self.buf.find(b"\xff")
                if k >= 0:
                    self.buf = self.buf[k + 1:]
                    skip_to_delimiter = False
                    continue
            else:
                nl = self.buf.find(b"\n")
                if nl >= 0:
                    line, self.buf = self.buf[:nl].strip(), self.buf[nl + 1:]
                    if line:
                        return json.loads(line)
                    continue
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                raise TimeoutError("no answer before the deadline")
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.buf += data

    def call(self, command, arguments=None, deadline=None):
        """One command, its reply (events before it skipped)."""
        msg = {"execute": command}
        if arguments is not None:
            msg["arguments"] = arguments
        self.send(json.dumps(msg).encode() + b"\n")
        while True:
            r = self.read_json(deadline)
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise RuntimeError(f"{command}: {r['error']}")


class QemuFloor:
    def __init__(self, captured, run_dir):
        self.argv = list(captured.argv)
        self.files = dict(captured.files)
        self.keep_dir = captured.keep_dir
        self.run_dir = run_dir
        self.fds = chardev_fds(self.argv)
        if "qmp" not in self.fds:
            raise ValueError("the captured argv has no monitor passed as a descriptor (socket,id=qmp,fd=N)")
        self.proc_pid = None
        self.qmp = None
        self.console = None
        self.console_buf = b""

    def path(self, chardev):
        return os.path.join(self.run_dir, f"{chardev}.sock")

    def launch(self, deadline_s=60):
        """Everything up to the guest's CPUs running: sockets, spawn, QMP, console, cont."""
        deadline = time.monotonic() + deadline_s
        shutil.rmtree(self.run_dir, ignore_errors=True)
        os.makedirs(self.run_dir, 0o700)
        listening = {}
        try:
            for chardev in self.fds:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.bind(self.path(chardev))
                os.chmod(self.path(chardev), 0o600)
                s.listen(128)
                listening[chardev] = s
            for name in os.listdir(self.keep_dir):
                os.link(os.path.join(self.keep_dir, name), os.path.join(self.run_dir, name))
            log = os.open(os.path.join(self.run_dir, "qemu.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
            nul = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
            # Copies above any target number first, then dup2 onto the numbers vmmd used.
            high = {c: os.dup2(s.fileno(), 200 + n, inheritable=False) for n, (c, s) in enumerate(listening.items())}
            opened = {fd: os.open(path, mode | os.O_CLOEXEC) for fd, (path, mode) in self.files.items()}
            high_files = {fd: os.dup2(f, 300 + n, inheritable=False) for n, (fd, f) in enumerate(opened.items())}
            actions = [(os.POSIX_SPAWN_DUP2, nul, 0), (os.POSIX_SPAWN_DUP2, log, 1), (os.POSIX_SPAWN_DUP2, log, 2)]
            actions += [(os.POSIX_SPAWN_DUP2, high[c], fd) for c, fd in self.fds.items()]
            actions += [(os.POSIX_SPAWN_DUP2, h, fd) for fd, h in high_files.items()]
            here = os.getcwd()
            os.chdir(self.run_dir)  # relative names in the argv (copies, display sockets) are QEMU's cwd's
            try:
                self.proc_pid = os.posix_spawnp(self.argv[0], self.argv, os.environ, file_actions=actions, setsid=True)
            finally:
                os.chdir(here)
                for fd in list(high.values()) + list(opened.values()) + list(high_files.values()) + [log, nul]:
                    os.close(fd)
            if PIDS_FILE:
                with open(PIDS_FILE, "a") as f:
                    f.write(f"{self.proc_pid}\n")
        finally:
            for s in listening.values():
                s.close()  # QEMU holds its copies
        self.qmp = Channel(self._connect("qmp", deadline))
        greeting = self.qmp.read_json(deadline)
        if "QMP" not in greeting:
            raise RuntimeError(f"unexpected monitor greeting {greeting}")
        self.qmp.call("qmp_capabilities", {}, deadline)
        if "console0" in self.fds:
            self.console = self._connect("console0", deadline)
        self.qmp.call("cont", {}, deadline)

    def _connect(self, chardev, deadline):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        while True:
            try:
                s.connect(self.path(chardev))
                return s
            except OSError:
                if time.monotonic() > deadline or not self.running():
                    raise RuntimeError(f"QEMU's {chardev} socket never answered: {self.log_tail()}")
                time.sleep(0.001)

    def wait_console(self, marker, timeout_s=120):
        """Reads the console socket until `marker` has been seen."""
        deadline = time.monotonic() + timeout_s
        while marker not in self.console_buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.console], [], [], left)[0]:
                raise TimeoutError(f"no {marker!r} on the console: {self.log_tail()}")
            data = self.console.recv(65536)
            if not data:
                raise RuntimeError(f"the console closed: {self.log_tail()}")
            self.console_buf = (self.console_buf + data)[-4096:]

    def agent(self, deadline_s=120):
        """One connection to the guest agent, synchronised once (0xFF + guest-sync-delimited, as
        vmmd's AgentClient does; the request waits in the socket until qemu-ga opens its port)."""
        deadline = time.monotonic() + deadline_s
        ch = Channel(self._connect("qga0", deadline))
        sync_id = int.from_bytes(os.urandom(6), "big")
        ch.send(b"\xff" + json.dumps({"execute": "guest-sync-delimited", "arguments": {"id": sync_id}}).encode() + b"\n")
        r = ch.read_json(deadline, skip_to_delimiter=True)
        if r.get("return") != sync_id:
            raise RuntimeError(f"guest-sync-delimited answered {r}")
        return ch

    def running(self):
        if self.proc_pid is None:
            return False
        try:
            return os.waitpid(self.proc_pid, os.WNOHANG) == (0, 0)
        except ChildProcessError:
            return False

    def log_tail(self):
        """QEMU's own output (its first and last lines: the cause and the state)."""
        try:
            text = open(os.path.join(self.run_dir, "qemu.log"), errors="replace").read()
        except OSError:
            return ""
        return text if len(text) <= 1200 else text[:600] + " ... " + text[-600:]

    def kill(self):
        """SIGKILL and reap (the least a teardown can be)."""
        for s in (self.qmp.sock if self.qmp else None, self.console):
            if s:
                s.close()
        self.qmp = self.console = None
        self.console_buf = b""
        if self.proc_pid is not None:
            try:
                os.kill(self.proc_pid, signal.SIGKILL)
                os.waitpid(self.proc_pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.proc_pid = None


def capture_argv(pid):
    """The command line of a running process, as vmmd spawned it."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().decode().split("\0")[:-1]


def wait_gone(pid, timeout_s=20):
    """Waits until a process (not our child) has gone, so the next sample starts without it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        except FileNotFoundError:
            return
        time.sleep(0.005)
    raise RuntimeError(f"process {pid} still running {timeout_s} s after its teardown")


def qemu_img(*args):
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)
