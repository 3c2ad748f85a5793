#!/usr/bin/env python3
"""The hostile load of bench/flood.sh, in a process of its own (one thread, non-blocking sockets).

On each of vmmd's JSON-RPC sockets (the read-only one any local user reaches, and the admin one):
--rpc-connections connections writing bad lines as fast as vmmd takes them (malformed JSON,
wrong types, unknown methods, invalid UTF-8, nesting far past the parser's depth cap) and
reading the error replies (a flood that stopped reading would only be paused by vmmd's output
cap), plus --over-cap-connections writing a line over that socket's cap (vmmd answers and closes; it is
reopened at once). On vmmd's HTTP port: --idle-http connections, half sending nothing, half a
request head one byte per second; each is reopened when vmmd closes it.

Commands on stdin, one per line: `start` opens every connection and answers `running`; `stop`
closes them and answers `stopped` and the counters so far (JSON); end of input exits."""
import argparse, json, os, selectors, socket, sys, time

# vmmd answers every line with an error from its parser, its request checks or its parameter
# checks: none runs a call (bench/flood_bench.py sends each once first and records the replies).
BAD_LINES = [
    b'{"jsonrpc":2,"id":1,"method":"host.info"}',
    b'{"jsonrpc":"2.0","id":{"a":1},"method":"host.info"}',
    b'{"jsonrpc":"2.0","id":1.5,"method":"domain.list"}',
    b'{"jsonrpc":"2.0","id":1,"method":7}',
    b'{"jsonrpc":"2.0","id":1,"method":"domain.get","params":{"name":7}}',
    b'{"jsonrpc":"2.0","id":1,"method":"domain.list","params":"all"}',
    b'{"jsonrpc":"2.0","id":1,"method":"no.such.method"}',
    b'{"jsonrpc":"2.0","id":1,"method":"domain.get","params":{"name":"x"},"extra":1}',
    b'{"jsonrpc":"2.0","id":1,"method":"host.info"',
    b'{"jsonrpc":"2.0","id":1,"method":"host.info\xff\xfe"}',
    b'{"jsonrpc":"2.0","id":1e999999,"method":"host.info"}',
    b'[]',
    b'[1,2,3]',
    b'null',
    b'"\\ud800"',
    b'{{{{',
    b'\x00\x01\x02\x03',
]
DEEP_LINES = [b"[" * 2000 + b"]" * 2000, b'{"a":' * 1000 + b"1" + b"}" * 1000]  # vmmd's cap: 64


def chunk():
    """The small bad lines repeated to about 48 KiB, then each deep one once."""
    small = b"\n".join(BAD_LINES) + b"\n"
    body = small * max(1, (48 << 10) // len(small))
    return body + b"\n".join(DEEP_LINES) + b"\n"


CHUNK = chunk()
stats = {"bad_lines": 0, "bad_bytes": 0, "over_cap_lines": 0, "over_cap_bytes": 0, "replies": 0,
         "rpc_opened": 0, "rpc_closed_after_over_cap": 0, "rpc_closed_other": 0, "connect_errors": 0,
         "http_opened": 0, "http_closed_by_vmmd": 0, "http_408": 0, "http_other_answers": 0,
         "http_bytes_sent": 0, "active_seconds": 0.0}
sel = selectors.DefaultSelector()
conns = []
running_since = None


class Rpc:
    def __init__(self, path, cap=None):
        self.path, self.cap, self.sock = path, cap, None
        self.data = CHUNK if cap is None else b"x" * (cap + 4096) + b"\n"

    def open(self):
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.path)
        except OSError:
            stats["connect_errors"] += 1
            s.close()
            return False
        s.setblocking(False)
        self.sock, self.off, self.sent = s, 0, 0
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, self)
        stats["rpc_opened"] += 1
        return True

    def close(self, by_vmmd):
        sel.unregister(self.sock)
        self.sock.close()
        self.sock = None
        if by_vmmd:
            over = self.cap is not None and self.sent >= self.cap
            stats["rpc_closed_after_over_cap" if over else "rpc_closed_other"] += 1
            if not self.open():
                retry.append(self)

    def writable(self):
        try:
            n = self.sock.send(memoryview(self.data)[self.off:])
        except BlockingIOError:
            return
        except OSError:
            return self.close(True)
        if self.cap is None:
            stats["bad_lines"] += self.data.count(b"\n", self.off, self.off + n)
            stats["bad_bytes"] += n
            self.off = (self.off + n) % len(self.data)
        else:
            if self.sent < self.cap <= self.sent + n:
                stats["over_cap_lines"] += 1
            self.sent += n
            stats["over_cap_bytes"] += n
            self.off = (self.off + n) % len(self.data)

    def readable(self):
        data = receive(self.sock)
        if data is None:
            return
        if not data:
            return self.close(True)
        stats["replies"] += data.count(b"\n")


def receive(sock):
    """What the socket has: None when nothing yet, b"" when vmmd closed it (or it failed)."""
    try:
        return sock.recv(1 << 16)
    except BlockingIOError:
        return None
    except OSError:
        return b""


HEAD = b"GET /v1/domains HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 4096


class IdleHttp:
    def __init__(self, slow):
        self.slow, self.sock = slow, None

    def open(self):
        host, port = args.http.rsplit(":", 1)
        try:
            s = socket.create_connection((host, int(port)))
        except OSError:
            stats["connect_errors"] += 1
            return False
        s.setblocking(False)
        self.sock, self.off = s, 0
        sel.register(s, selectors.EVENT_READ, self)
        stats["http_opened"] += 1
        return True

    def tick(self):
        if self.slow and self.sock is not None and self.off < len(HEAD):
            try:
                self.off += self.sock.send(HEAD[self.off:self.off + 1])
                stats["http_bytes_sent"] += 1
            except BlockingIOError:
                pass
            except OSError:
                self.close(True)

    def readable(self):
        data = receive(self.sock)
        if data is None:
            return
        if data:
            stats["http_408" if data.startswith(b"HTTP/1.1 408") else "http_other_answers"] += 1
            return
        self.close(True)

    def writable(self):
        pass

    def close(self, by_vmmd):
        sel.unregister(self.sock)
        self.sock.close()
        self.sock = None
        if by_vmmd:
            stats["http_closed_by_vmmd"] += 1
            if not self.open():
                retry.append(self)


retry = []


def start():
    global conns, running_since
    conns = []
    for path, cap in ((args.ro_socket, args.ro_cap), (args.rw_socket, args.rw_cap)):
        conns += [Rpc(path) for _ in range(args.rpc_connections)] + [Rpc(path, cap) for _ in range(args.over_cap_connections)]
    conns += [IdleHttp(slow=i % 2 == 1) for i in range(args.idle_http)]
    for c in conns:
        if not c.open():
            retry.append(c)
    running_since = time.monotonic()


def stop():
    global running_since
    for c in conns:
        if c.sock is not None:
            c.close(False)
    retry.clear()
    stats["active_seconds"] += time.monotonic() - running_since
    running_since = None


def main():
    sel.register(0, selectors.EVENT_READ, "stdin")
    pending = b""
    next_tick = next_retry = time.monotonic()
    while True:
        for key, events in sel.select(timeout=0.1):
            if key.data == "stdin":
                data = os.read(0, 4096)
                if not data:
                    if running_since is not None:
                        stop()
                    return
                pending += data
                while b"\n" in pending:
                    cmd, pending = pending.split(b"\n", 1)
                    if cmd == b"start" and running_since is None:
                        start()
                        print("running", flush=True)
                    elif cmd == b"stop" and running_since is not None:
                        stop()
                        print("stopped " + json.dumps(dict(stats, active_seconds=round(stats["active_seconds"], 3))), flush=True)
                continue
            c = key.data
            if events & selectors.EVENT_READ and c.sock is not None:
                c.readable()
            if events & selectors.EVENT_WRITE and c.sock is not None:
                c.writable()
        now = time.monotonic()
        if running_since is not None and now >= next_tick:
            next_tick = now + 1.0
            for c in conns:
                if isinstance(c, IdleHttp):
                    c.tick()
        if running_since is not None and retry and now >= next_retry:
            next_retry = now + 0.1
            for c in list(retry):
                if c.open():
                    retry.remove(c)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--ro-socket", required=True)
    p.add_argument("--rw-socket", required=True)
    p.add_argument("--http", required=True, help="host:port of vmmd's HTTP API")
    p.add_argument("--rpc-connections", type=int, default=4, help="bad-line connections per socket")
    p.add_argument("--over-cap-connections", type=int, default=1, help="per socket")
    p.add_argument("--idle-http", type=int, default=64)
    p.add_argument("--ro-cap", type=int, default=64 << 10, help="vmmd's line cap on the read-only socket")
    p.add_argument("--rw-cap", type=int, default=4 << 20, help="vmmd's line cap on the admin socket")
    args = p.parse_args()
    main()
