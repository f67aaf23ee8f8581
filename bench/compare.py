#!/usr/bin/env python3
"""Compare ipcez with the usual ways of talking between two processes, on this machine.

    python bench/compare.py            # full run, a minute or two
    python bench/compare.py --quick    # a few hundred rounds per workload, about 2 min (CI)

Every figure comes from one run: each implementation gets its own echo server in a
separate process and its own client process, so the numbers are comparable with
one another (not with figures from another machine or another day).

Workloads (messages start with a command byte: b'E' echo, b'A' answer with one
byte, anything else swallowed):

* acked send   64 B, blocks until the peer acknowledges (ipcez local transports).
               Anchors have no acknowledgement: their echo round trip is shown
               instead (marked ``*``) and is what ipcez is compared against.
* echo RTT     64 B out and back, p50/p99.
* 1 MiB echo   GB/s, counting the bytes in both directions.
* 1 KiB msgs/s one-way sends: acked ones for ipcez over a Unix socket; for the
               local anchors a 1-byte application-level answer per message (the
               nearest they have to an ack; REQ/REP needs an answer anyway); over
               WebSockets (no ack in ipcez either) plain one-way sends followed by
               one echo, so that the server has taken them all.

Plus: ``import ipcez`` time, the resident memory an idle process holding one
connection adds to a bare interpreter, and the memory one listener needs for
1,000 connections; then the asyncio echo rows, the one-way stream of 64 B
messages (``send_many``) and 10,000 ``ipcez.aio`` connections on one listener
(``bench/aio_rows.py``).

ipcez runs with the release build of its library (``IPCEZ_LIBRARY`` is set to
``rust/target/release/libipcez_ffi.so`` in the benchmark's own processes only);
it and the Rust ``bench`` example are built with cargo when missing.
Results: ``bench/results/latest.json`` and ``bench/results/latest.png``.
The script never fails because a target is missed, and exits 0 unless it
cannot run at all.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import selectors
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
RELEASE_LIB = ROOT / "rust" / "target" / "release" / "libipcez_ffi.so"
RUST_BENCH = ROOT / "rust" / "target" / "release" / "examples" / "bench"
MANIFEST = ROOT / "rust" / "Cargo.toml"

MIB = 1024 * 1024
SMALL = 64
KIB = 1024


# ---------------------------------------------------------------------------
# small helpers shared by the orchestrator and the child processes
# ---------------------------------------------------------------------------


def percentile(sorted_values: List[float], p: float) -> float:
    """Nearest-rank percentile, the same rule as the Rust bench example."""
    return sorted_values[int(round((len(sorted_values) - 1) * p))]


def vm_rss_kib(pid: str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/status")


def proc_threads(pid: str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def raise_nofile(wanted: int) -> Tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def ready(address: str) -> None:
    """A server tells the orchestrator where it listens (first stdout line)."""
    sys.stdout.write(f"READY {address}\n")
    sys.stdout.flush()


def exit_on_sigterm() -> None:
    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, handler)


def payload(first: bytes, size: int) -> bytes:
    return first + os.urandom(size - 1)


# ---------------------------------------------------------------------------
# child: echo servers
# ---------------------------------------------------------------------------


def _reply_for(msg: bytes) -> Optional[bytes]:
    c = msg[:1]
    if c == b"E":
        return msg
    if c == b"A":
        return b"a"
    return None


def serve_ipcez(endpoint: str) -> None:
    import ipcez

    def conn(s: Any) -> None:
        with s:
            try:
                for m in s:
                    if m[:1] == b"E":
                        s.send(m)
            except ipcez.SocketError:
                pass

    with ipcez.listen(endpoint) as listener:
        ready(listener.address)
        while True:
            s = listener.accept()
            threading.Thread(target=conn, args=(s,), daemon=True).start()


def serve_mp(path: str) -> None:
    from multiprocessing.connection import Listener

    def conn(c: Any) -> None:
        with c:
            try:
                while True:
                    r = _reply_for(c.recv_bytes())
                    if r is not None:
                        c.send_bytes(r)
            except (EOFError, OSError):
                pass

    with Listener(path, family="AF_UNIX") as listener:
        ready(path)
        while True:
            threading.Thread(target=conn, args=(listener.accept(),), daemon=True).start()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            raise EOFError("peer closed")
        got += k
    return bytes(buf)


def _raw_send(sock: socket.socket, msg: bytes) -> None:
    header = struct.pack(">I", len(msg))
    if len(msg) <= 65536:
        sock.sendall(header + msg)
    else:
        sock.sendall(header)
        sock.sendall(msg)


def _raw_recv(sock: socket.socket) -> bytes:
    (n,) = struct.unpack(">I", _recv_exact(sock, 4))
    return _recv_exact(sock, n)


def serve_raw(path: str) -> None:
    def conn(c: socket.socket) -> None:
        with c:
            try:
                while True:
                    r = _reply_for(_raw_recv(c))
                    if r is not None:
                        _raw_send(c, r)
            except (EOFError, OSError):
                pass

    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        srv.bind(path)
        srv.listen(16)
        ready(path)
        while True:
            c, _ = srv.accept()
            threading.Thread(target=conn, args=(c,), daemon=True).start()
    finally:
        srv.close()
        try:
            os.unlink(path)
        except OSError:
            pass


def serve_zmq(path: str) -> None:
    import zmq

    ctx = zmq.Context()
    rep = ctx.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    try:
        rep.bind("ipc://" + path)
        ready("ipc://" + path)
        while True:
            if not rep.poll(100):
                continue
            m = rep.recv()
            r = _reply_for(m)
            rep.send(b"" if r is None else r)
    finally:
        rep.close(0)
        ctx.term()


def serve_nng(path: str) -> None:
    import pynng

    with pynng.Rep0(listen="ipc://" + path, recv_timeout=100, recv_max_size=0) as rep:
        ready("ipc://" + path)
        while True:
            try:
                m = rep.recv()
            except pynng.Timeout:
                continue
            r = _reply_for(m)
            rep.send(b"" if r is None else r)


def serve_websockets(_: str) -> None:
    from websockets.sync.server import serve

    def handler(ws: Any) -> None:
        try:
            for m in ws:
                r = _reply_for(m if isinstance(m, bytes) else m.encode())
                if r is not None:
                    ws.send(r)
        except Exception:
            pass

    # compression off on both ends: ipcez does not compress, and deflating the
    # payloads would measure zlib rather than the transport.
    with serve(handler, "127.0.0.1", 0, max_size=None, compression=None) as server:
        port = server.socket.getsockname()[1]
        ready(f"ws://127.0.0.1:{port}/")
        server.serve_forever()


SERVERS: Dict[str, Callable[[str], None]] = {
    "ipcez": serve_ipcez,
    "mp": serve_mp,
    "raw": serve_raw,
    "zmq": serve_zmq,
    "nng": serve_nng,
    "websockets": serve_websockets,
}


# ---------------------------------------------------------------------------
# child: clients
# ---------------------------------------------------------------------------


class Ops:
    """What a client can do: ``send`` (acked, or None), ``echo``, ``kib_burst``."""

    send: Optional[Callable[[bytes], None]] = None
    kib_first = b"S"
    notes: List[str] = []

    def echo(self, m: bytes) -> bytes:
        raise NotImplementedError

    def kib_burst(self, m: bytes, n: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class IpcezOps(Ops):
    def __init__(self, address: str) -> None:
        import ipcez

        self.s = ipcez.connect(address)
        self.ws = self.s.transport == "websocket"
        snd = self.s.send
        rcv = self.s.recv
        if not self.ws:
            self.send = snd

        def echo(m: bytes) -> bytes:
            snd(m)
            return rcv()

        self.echo = echo  # type: ignore[method-assign]
        self.info = {"ipcez_version": ipcez.__version__, "ipcez_file": ipcez.__file__}

    def kib_burst(self, m: bytes, n: int) -> None:
        snd = self.s.send
        for _ in range(n):
            snd(m)
        if self.ws:
            self.echo(b"E")  # the server has taken everything before this

    def close(self) -> None:
        self.s.close()


class MpOps(Ops):
    kib_first = b"A"

    def __init__(self, address: str) -> None:
        from multiprocessing.connection import Client

        self.c = Client(address, family="AF_UNIX")
        sb, rb = self.c.send_bytes, self.c.recv_bytes

        def echo(m: bytes) -> bytes:
            sb(m)
            return rb()

        self.echo = echo  # type: ignore[method-assign]

    def kib_burst(self, m: bytes, n: int) -> None:
        for _ in range(n):
            self.echo(m)

    def close(self) -> None:
        self.c.close()


class RawOps(Ops):
    kib_first = b"A"

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(address)

    def echo(self, m: bytes) -> bytes:
        _raw_send(self.sock, m)
        return _raw_recv(self.sock)

    def kib_burst(self, m: bytes, n: int) -> None:
        for _ in range(n):
            self.echo(m)

    def close(self) -> None:
        self.sock.close()


class ZmqOps(Ops):
    kib_first = b"A"

    def __init__(self, address: str) -> None:
        import zmq

        self.ctx = zmq.Context()
        self.s = self.ctx.socket(zmq.REQ)
        self.s.setsockopt(zmq.LINGER, 0)
        self.s.connect(address)
        snd, rcv = self.s.send, self.s.recv

        def echo(m: bytes) -> bytes:
            snd(m)
            return rcv()

        self.echo = echo  # type: ignore[method-assign]
        self.info = {"pyzmq": zmq.__version__, "libzmq": zmq.zmq_version()}

    def kib_burst(self, m: bytes, n: int) -> None:
        for _ in range(n):
            self.echo(m)

    def close(self) -> None:
        self.s.close(0)
        self.ctx.term()


class NngOps(Ops):
    kib_first = b"A"

    def __init__(self, address: str) -> None:
        import pynng

        self.s = pynng.Req0(dial=address, recv_max_size=0)
        snd, rcv = self.s.send, self.s.recv

        def echo(m: bytes) -> bytes:
            snd(m)
            return rcv()

        self.echo = echo  # type: ignore[method-assign]
        self.info = {"pynng": getattr(pynng, "__version__", "?")}

    def kib_burst(self, m: bytes, n: int) -> None:
        for _ in range(n):
            self.echo(m)

    def close(self) -> None:
        self.s.close()


class WebsocketsOps(Ops):
    def __init__(self, address: str) -> None:
        import websockets
        from websockets.sync.client import connect

        self.ws = connect(address, max_size=None, compression=None)
        snd, rcv = self.ws.send, self.ws.recv

        def echo(m: bytes) -> bytes:
            snd(m)
            r = rcv()
            return r if isinstance(r, bytes) else r.encode()

        self.echo = echo  # type: ignore[method-assign]
        self.info = {"websockets": websockets.__version__}

    def kib_burst(self, m: bytes, n: int) -> None:
        snd = self.ws.send
        for _ in range(n):
            snd(m)
        self.echo(b"E")

    def close(self) -> None:
        self.ws.close()


CLIENTS: Dict[str, Callable[[str], Ops]] = {
    "ipcez": IpcezOps,
    "mp": MpOps,
    "raw": RawOps,
    "zmq": ZmqOps,
    "nng": NngOps,
    "websockets": WebsocketsOps,
}


def latencies(rounds: int, f: Callable[[], Any]) -> Tuple[float, float]:
    for _ in range(max(rounds // 10, 1)):
        f()
    clock = time.perf_counter_ns
    us: List[float] = []
    append = us.append
    for _ in range(rounds):
        t = clock()
        f()
        append((clock() - t) / 1000.0)
    us.sort()
    return percentile(us, 0.5), percentile(us, 0.99)


def run_client(kind: str, address: str, rounds: int) -> None:
    ops = CLIENTS[kind](address)
    out: Dict[str, Any] = dict(getattr(ops, "info", {}))
    try:
        if ops.send is not None:
            small = payload(b"S", SMALL)
            send = ops.send
            out["send_p50_us"], out["send_p99_us"] = latencies(rounds, lambda: send(small))
        small_e = payload(b"E", SMALL)
        echo = ops.echo

        def one_rtt() -> None:
            if len(echo(small_e)) != SMALL:
                raise RuntimeError("short echo")

        out["rtt_p50_us"], out["rtt_p99_us"] = latencies(rounds, one_rtt)

        big = payload(b"E", MIB)
        big_rounds = max(rounds // 20, 20)
        for _ in range(3):
            echo(big)
        t = time.perf_counter()
        for _ in range(big_rounds):
            if len(echo(big)) != MIB:
                raise RuntimeError("short 1 MiB echo")
        out["echo_1mib_gbps"] = 2 * MIB * big_rounds / (time.perf_counter() - t) / 1e9

        kib = payload(ops.kib_first, KIB)
        n = rounds * 2
        ops.kib_burst(kib, max(n // 10, 1))  # warm-up
        t = time.perf_counter()
        ops.kib_burst(kib, n)
        out["msgs_per_s_1kib"] = n / (time.perf_counter() - t)
    finally:
        ops.close()
    print(json.dumps(out), flush=True)


# ---------------------------------------------------------------------------
# child: footprint probes
# ---------------------------------------------------------------------------


IMPORT_PROBE = (
    "import time; t = time.perf_counter(); import ipcez; t = time.perf_counter() - t; "
    "print('{\"import_s\": %r}' % t)"
)


def probe_rss_bare() -> None:
    print(json.dumps({"rss_kib": vm_rss_kib(), "threads": proc_threads()}), flush=True)


def probe_rss_idle(address: str) -> None:
    import ipcez

    s = ipcez.connect(address)
    s.send(b"E" * 64)
    s.recv(timeout=5)
    time.sleep(0.5)  # idle
    print(json.dumps({"rss_kib": vm_rss_kib(), "threads": proc_threads()}), flush=True)
    s.close()


def many_listen(path: str, n: int, wait_s: float) -> None:
    """Listener for the 1,000-connection test: accept n, take one message from each."""
    import ipcez

    raise_nofile(4 * n + 256)
    socks: List[Any] = []
    errors: List[str] = []
    with ipcez.listen(path) as listener:
        rss0 = vm_rss_kib()
        threads0 = proc_threads()
        ready(listener.address)
        deadline = time.monotonic() + wait_s
        while len(socks) < n and time.monotonic() < deadline:
            try:
                socks.append(listener.accept(timeout=max(deadline - time.monotonic(), 0.01)))
            except TimeoutError:
                break
            except ipcez.SocketError as exc:
                errors.append(f"accept: {exc!r}")
                break
        received = 0
        for s in socks:
            try:
                if s.recv(timeout=max(deadline - time.monotonic(), 0.5)) == b"hello":
                    received += 1
            except (TimeoutError, ipcez.SocketError) as exc:
                errors.append(f"recv: {exc!r}")
                if len(errors) > 5:
                    break
        time.sleep(0.3)
        out = {
            "accepted": len(socks),
            "received": received,
            "rss0_kib": rss0,
            "rss1_kib": vm_rss_kib(),
            "threads0": threads0,
            "threads1": proc_threads(),
            "errors": errors[:5],
        }
        print(json.dumps(out), flush=True)
        sys.stdin.read()  # hold the connections until the orchestrator is done
        for s in socks:
            s.close()


def many_client(path: str, n: int) -> None:
    import ipcez

    limits = raise_nofile(4 * n + 256)
    rss0 = vm_rss_kib()
    socks: List[Any] = []
    errors: List[str] = []
    t = time.perf_counter()
    for _ in range(n):
        try:
            socks.append(ipcez.connect(path))
        except ipcez.SocketError as exc:
            errors.append(f"connect: {exc!r}")
            if len(errors) > 5:
                break
    connect_s = time.perf_counter() - t
    sent = 0
    for s in socks:
        try:
            s.send(b"hello")
            sent += 1
        except ipcez.SocketError as exc:
            errors.append(f"send: {exc!r}")
            if len(errors) > 5:
                break
    out = {
        "connected": len(socks),
        "sent": sent,
        "connect_s": connect_s,
        "rss0_kib": rss0,
        "rss1_kib": vm_rss_kib(),
        "threads": proc_threads(),
        "nofile": list(limits),
        "errors": errors[:5],
    }
    print(json.dumps(out), flush=True)
    sys.stdin.read()
    for s in socks:
        s.close()


def child_main(argv: List[str]) -> None:
    exit_on_sigterm()
    role, args = argv[0], argv[1:]
    if role == "serve":
        SERVERS[args[0]](args[1])
    elif role == "client":
        run_client(args[0], args[1], int(args[2]))
    elif role == "rss-bare":
        probe_rss_bare()
    elif role == "rss-idle":
        probe_rss_idle(args[0])
    elif role == "many-listen":
        many_listen(args[0], int(args[1]), float(args[2]))
    elif role == "many-client":
        many_client(args[0], int(args[1]))
    elif role.startswith("aio-"):
        import aio_rows

        aio_rows.child_main(role, args)
    else:
        raise SystemExit(f"unknown child role {role!r}")


# ---------------------------------------------------------------------------
# orchestrator
# ---------------------------------------------------------------------------


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM if the orchestrator dies (even by SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class LineReader:
    """Reads lines from a child's stdout with a timeout (no buffering surprises)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.buf = b""
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.fd, selectors.EVENT_READ)

    def readline(self, timeout: float) -> Optional[str]:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace")

    def close(self) -> None:
        self.sel.close()


class Orchestrator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick: bool = args.quick
        self.rounds: int = args.rounds or (300 if self.quick else 5000)
        self.repeat: int = args.repeat or (1 if self.quick else 3)
        self.tmp = Path(tempfile.mkdtemp(prefix="ipcez-bench-"))
        self.children: List[subprocess.Popen] = []
        self.notes: List[str] = []
        self.anomalies: List[str] = []
        self.socket_paths: List[str] = []
        self.library = Path(args.library).resolve() if args.library else RELEASE_LIB
        self.start = time.monotonic()
        self.budget = 55.0 if self.quick else 900.0
        env = dict(os.environ)
        env.update(
            {
                "IPCEZ_LIBRARY": str(self.library),
                "PYTHONPATH": str(ROOT / "python")
                + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
                "target": "local",
                "os": "linux",
                "IPCEZ_TARGET": "local",
                "IPCEZ_OS": "linux",
            }
        )
        env.pop("PYTHONSTARTUP", None)
        self.env = env

    # -- process plumbing -------------------------------------------------

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start)

    def child_cmd(self, *args: str) -> List[str]:
        return [sys.executable, str(Path(__file__).resolve()), "_child", *args]

    def sock_path(self, name: str) -> str:
        p = str(self.tmp / f"{name}.sock")
        self.socket_paths.append(p)
        return p

    def popen(self, cmd: List[str], stdin: bool = False, tag: str = "child") -> subprocess.Popen:
        err = open(self.tmp / f"{tag}.{len(self.children)}.stderr", "wb")
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                env=self.env,
                cwd=str(self.tmp),
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        finally:
            err.close()
        proc._bench_stderr = err.name  # type: ignore[attr-defined]
        self.children.append(proc)
        return proc

    @staticmethod
    def stderr_tail(proc: subprocess.Popen, lines: int = 4) -> str:
        try:
            text = Path(proc._bench_stderr).read_text(errors="replace")  # type: ignore[attr-defined]
        except OSError:
            return ""
        tail = [x for x in text.strip().splitlines() if x.strip()][-lines:]
        return " | ".join(tail)

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            try:
                if proc.stdin:
                    proc.stdin.close()
            except OSError:
                pass
            proc.terminate()
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                try:
                    proc.wait(3)
                except subprocess.TimeoutExpired:
                    pass
        for f in (proc.stdout, proc.stdin):
            try:
                if f:
                    f.close()
            except OSError:
                pass

    def start_server(self, cmd: List[str], tag: str) -> Tuple[subprocess.Popen, str]:
        proc = self.popen(cmd, tag=tag)
        reader = LineReader(proc)
        line = reader.readline(20.0)
        reader.close()
        if line is None:
            self.stop(proc)
            raise RuntimeError(f"server did not start: {self.stderr_tail(proc) or 'no output'}")
        return proc, line[len("READY ") :] if line.startswith("READY ") else line.strip()

    def run_json(self, cmd: List[str], timeout: float, tag: str) -> Dict[str, Any]:
        proc = self.popen(cmd, tag=tag)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc)
            raise RuntimeError(f"timed out after {timeout:.0f} s")
        finally:
            self.stop(proc)
        lines = [x for x in out.decode(errors="replace").splitlines() if x.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(
                f"exit {proc.returncode}: {self.stderr_tail(proc) or 'no output'}"
            )
        return json.loads(lines[-1])

    # -- building -----------------------------------------------------------

    def ensure_built(self) -> Dict[str, Any]:
        built: Dict[str, Any] = {}
        wanted = [("ipcez-ffi", None, self.library), ("ipcez", "bench", RUST_BENCH)]
        for package, example, artifact in wanted:
            if artifact.exists():
                continue
            if artifact == self.library and self.args.library:
                self.notes.append(f"--library {artifact} does not exist")
                continue
            cargo = shutil.which("cargo")
            what = f"{package}" + (f" --example {example}" if example else "")
            if not cargo:
                self.notes.append(f"{artifact.name} missing and cargo not found: rows skipped")
                continue
            cmd = [cargo, "build", "--release", "-p", package, "--manifest-path", str(MANIFEST)]
            if example:
                cmd += ["--example", example]
            print(f"[build] {artifact} is missing; running: {' '.join(cmd[1:])}", flush=True)
            t = time.monotonic()
            r = subprocess.run(cmd, cwd=str(ROOT), capture_output=True, text=True)
            if r.returncode != 0:
                tail = " | ".join(r.stderr.strip().splitlines()[-3:])
                self.notes.append(f"cargo build of {what} failed: {tail}")
            else:
                msg = f"built {artifact.name} with cargo ({time.monotonic() - t:.0f} s)"
                self.notes.append(msg)
                built[artifact.name] = True
        # Warn when an artifact is older than the Rust sources (it would measure old code).
        newest = 0.0
        for sub in ("ipcez/src", "ipcez-ffi/src", "ipcez/examples"):
            for p in (ROOT / "rust" / sub).rglob("*.rs"):
                newest = max(newest, p.stat().st_mtime)
        for artifact in (self.library, RUST_BENCH):
            if artifact.exists() and artifact.stat().st_mtime < newest:
                self.notes.append(
                    f"{artifact.relative_to(ROOT) if ROOT in artifact.parents else artifact} "
                    "is older than the Rust sources: figures may be for older code"
                )
        return built

    # -- the measurements ---------------------------------------------------

    IMPLS = [
        # key, label, group, server kind, endpoint kind, needs module
        ("ipcez-py-unix", "ipcez Python, unix", "local", "ipcez", "unix", None),
        ("ipcez-rs-unix", "ipcez Rust, unix", "local", "rust", "unix", None),
        ("mp", "multiprocessing.connection", "local", "mp", "unix", None),
        ("raw", "socket AF_UNIX (raw)", "local", "raw", "unix", None),
        ("zmq", "pyzmq REQ/REP ipc", "local", "zmq", "unix", "zmq"),
        ("nng", "pynng Req0/Rep0 ipc", "local", "nng", "unix", "pynng"),
        ("ipcez-py-ws", "ipcez Python, ws", "remote", "ipcez", "ws", None),
        ("ipcez-rs-ws", "ipcez Rust, ws", "remote", "rust", "ws", None),
        ("websockets", "websockets (sync)", "remote", "websockets", "ws", "websockets"),
    ]

    def have_module(self, name: str) -> bool:
        r = subprocess.run(
            [sys.executable, "-c", f"import {name}"], env=self.env, capture_output=True
        )
        return r.returncode == 0

    def measure_impl(self, key: str, kind: str, ep_kind: str, rep: int) -> Dict[str, Any]:
        endpoint = "ws://127.0.0.1:0/bench" if ep_kind == "ws" else self.sock_path(f"{key}-{rep}")
        client_timeout = min(30.0 if self.quick else 300.0, max(self.left(), 5.0))
        if kind == "rust":
            if not RUST_BENCH.exists():
                raise RuntimeError("rust bench binary missing")
            server_cmd = [str(RUST_BENCH), "serve", endpoint]
        else:
            server_cmd = self.child_cmd("serve", kind, endpoint)
        server, address = self.start_server(server_cmd, tag=f"{key}-server")
        try:
            if kind == "rust":
                cmd = [str(RUST_BENCH), "client", address, str(self.rounds)]
            else:
                cmd = self.child_cmd("client", kind, address, str(self.rounds))
            result = self.run_json(cmd, client_timeout, tag=f"{key}-client")
            if ep_kind == "ws":
                # WebSocket sends wait for no ack: the Rust example's "send" figures are the
                # time to hand a frame over, not comparable with acked sends; keep them aside.
                for col in ("send_p50_us", "send_p99_us"):
                    if col in result:
                        result["unacked_" + col] = result.pop(col)
            if server.poll() is not None:
                self.anomalies.append(f"{key}: server exited early ({server.returncode})")
            return result
        finally:
            self.stop(server)

    def run_impls(self) -> Dict[str, Dict[str, Any]]:
        """Every implementation, ``repeat`` times over, interleaved: a burst of load from
        elsewhere on the machine then hits one pass of each rather than all of one row;
        each figure is the median over the passes."""
        results: Dict[str, Dict[str, Any]] = {}
        runnable = []
        for key, label, group, kind, ep_kind, module in self.IMPLS:
            entry: Dict[str, Any] = {"label": label, "group": group, "passes": []}
            results[key] = entry
            if kind == "ipcez" and not self.library.exists():
                entry["skipped"] = "ipcez library missing"
            elif kind == "rust" and not RUST_BENCH.exists():
                entry["skipped"] = "rust bench example missing"
            elif module and not self.have_module(module):
                entry["skipped"] = f"python module {module!r} not installed"
                self.notes.append(f"{label}: skipped ({module} is not installed)")
            else:
                runnable.append((key, label, kind, ep_kind))
        for rep in range(self.repeat):
            for key, label, kind, ep_kind in runnable:
                entry = results[key]
                if self.left() < 8:
                    if not entry["passes"]:
                        entry["skipped"] = "time budget used up"
                    self.notes.append(f"{label}: pass {rep + 1} skipped, time budget used up")
                    continue
                print(f"[run {rep + 1}/{self.repeat}] {label} ...", end="", flush=True)
                t = time.monotonic()
                try:
                    entry["passes"].append(self.measure_impl(key, kind, ep_kind, rep))
                    print(f" {time.monotonic() - t:.1f} s", flush=True)
                except Exception as exc:  # one broken row must not sink the run
                    self.notes.append(f"{label}: pass {rep + 1} failed: {exc}")
                    print(f" failed: {exc}", flush=True)
        for key, entry in results.items():
            passes = entry["passes"]
            if "skipped" in entry:
                continue
            if not passes:
                entry["skipped"] = "failed (see notes)"
                continue
            for k in passes[0]:
                vals = [p[k] for p in passes if isinstance(p.get(k), (int, float))]
                if vals and len(vals) == len([p for p in passes if k in p]):
                    entry[k] = statistics.median(vals)
                else:
                    entry[k] = passes[0][k]
        return results

    def run_footprint(self) -> Dict[str, Any]:
        fp: Dict[str, Any] = {}
        if not self.library.exists():
            fp["skipped"] = "ipcez library missing"
            return fp
        # import time: one warm-up, then the median of several fresh interpreters
        print("[run] import time, idle RSS, 1,000 connections ...", flush=True)
        try:
            n = 3 if self.quick else 9
            # a pristine interpreter (the _child entry point would have imported half the
            # stdlib already): only `time` is loaded before the clock starts
            cmd = [sys.executable, "-c", IMPORT_PROBE]
            self.run_json(cmd, 30, "import")  # warm the page cache
            samples = [self.run_json(cmd, 30, "import")["import_s"] for _ in range(n)]
            fp["import_ms"] = statistics.median(samples) * 1000
            fp["import_ms_samples"] = [round(s * 1000, 2) for s in samples]
        except Exception as exc:
            fp["import_error"] = str(exc)
            self.notes.append(f"import time: failed: {exc}")

        # idle RSS of a process holding one connection, over a bare interpreter
        try:
            server, address = self.start_server(
                self.child_cmd("serve", "ipcez", self.sock_path("idle")), "idle-server"
            )
            try:
                n = 2 if self.quick else 5
                bare = [self.run_json(self.child_cmd("rss-bare"), 30, "bare") for _ in range(n)]
                idle = [
                    self.run_json(self.child_cmd("rss-idle", address), 30, "idle") for _ in range(n)
                ]
            finally:
                self.stop(server)
            b = statistics.median(x["rss_kib"] for x in bare)
            i = statistics.median(x["rss_kib"] for x in idle)
            fp["rss_bare_mb"] = b * 1024 / 1e6
            fp["rss_idle_mb"] = i * 1024 / 1e6
            fp["rss_idle_over_bare_mb"] = (i - b) * 1024 / 1e6
            fp["idle_threads"] = idle[0]["threads"]
        except Exception as exc:
            fp["rss_error"] = str(exc)
            self.notes.append(f"idle RSS: failed: {exc}")

        # one listener, 1,000 connections from one client process
        n_conn = 1000
        wait_s = 20.0 if self.quick else 60.0
        path = self.sock_path("many")
        listener = client = None
        try:
            listener = self.popen(self.child_cmd("many-listen", path, str(n_conn), str(wait_s)), True, "many-listen")
            lr = LineReader(listener)
            if lr.readline(20) is None:
                raise RuntimeError(f"listener did not start: {self.stderr_tail(listener)}")
            client = self.popen(self.child_cmd("many-client", path, str(n_conn)), True, "many-client")
            cr = LineReader(client)
            t = time.monotonic()
            cline = cr.readline(wait_s + 10)
            lline = lr.readline(wait_s + 10)
            fp["conn_total_s"] = time.monotonic() - t
            if cline is None:
                raise RuntimeError(f"client gave no result: {self.stderr_tail(client)}")
            if lline is None:
                raise RuntimeError(f"listener gave no result: {self.stderr_tail(listener)}")
            c, li = json.loads(cline), json.loads(lline)
            fp["conn_requested"] = n_conn
            fp["conn_connected"] = c["connected"]
            fp["conn_sent"] = c["sent"]
            fp["conn_accepted"] = li["accepted"]
            fp["conn_received"] = li["received"]
            fp["conn_connect_s"] = c["connect_s"]
            fp["conn_listener_rss_growth_mb"] = (li["rss1_kib"] - li["rss0_kib"]) * 1024 / 1e6
            fp["conn_listener_threads"] = [li["threads0"], li["threads1"]]
            fp["conn_client_rss_growth_mb"] = (c["rss1_kib"] - c["rss0_kib"]) * 1024 / 1e6
            fp["conn_client_threads"] = c["threads"]
            fp["conn_errors"] = c["errors"] + li["errors"]
            fp["conn_all_ok"] = (
                c["connected"] == c["sent"] == li["accepted"] == li["received"] == n_conn
                and not fp["conn_errors"]
            )
            lr.close()
            cr.close()
        except Exception as exc:
            fp["conn_error"] = str(exc)
            fp["conn_all_ok"] = False
            self.notes.append(f"1,000 connections: failed: {exc}")
        finally:
            for p in (client, listener):
                if p is not None:
                    self.stop(p)
        return fp

    # -- cleanup ----------------------------------------------------------------

    def ack_names(self, paths: List[str]) -> List[str]:
        """The semaphore names of these Unix endpoints, as the library derives them
        (asked in a child process, which loads the library the benchmark measures)."""
        if not paths:
            return []
        code = (
            "import ipcez, json, sys; "
            "print(json.dumps([n for p in sys.argv[1:] for n in ipcez.ack_names(p)]))"
        )
        try:
            r = subprocess.run([sys.executable, "-c", code, *paths], env=self.env,
                               capture_output=True, text=True, timeout=30)
            names: List[str] = json.loads(r.stdout)
        except (subprocess.SubprocessError, ValueError) as exc:
            self.notes.append(f"could not ask ipcez for the ack names to clean up: {exc}")
            return []
        return names

    def cleanup(self) -> None:
        for proc in self.children:
            self.stop(proc)
        leaked_files = [p for p in self.socket_paths if os.path.exists(p)]
        leaked_sems = []
        for name in self.ack_names(self.socket_paths):
            f = "/dev/shm/sem." + name.lstrip("/")
            if os.path.exists(f):
                leaked_sems.append(f)
                try:
                    os.unlink(f)
                except OSError:
                    pass
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.leftovers = (leaked_files, leaked_sems)


# ---------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------

COLUMNS = [
    ("send_p50_us", "send p50", "µs"),
    ("send_p99_us", "send p99", "µs"),
    ("rtt_p50_us", "RTT p50", "µs"),
    ("rtt_p99_us", "RTT p99", "µs"),
    ("echo_1mib_gbps", "1MiB echo", "GB/s"),
    ("msgs_per_s_1kib", "1KiB msg", "/s"),
]
BASELINE = {"local": "mp", "remote": "websockets"}


def value_of(entry: Dict[str, Any], col: str) -> Tuple[Optional[float], bool]:
    """The figure for a column, and whether it is a stand-in (echo RTT for acked send)."""
    if "skipped" in entry:
        return None, False
    if col in entry:
        return float(entry[col]), False
    if col.startswith("send_"):
        alt = col.replace("send_", "rtt_")
        if alt in entry:
            return float(entry[alt]), True
    return None, False


def fmt_value(v: float, unit: str) -> str:
    if unit == "µs":
        return f"{v:.1f}" if v < 1000 else f"{v:.0f}"
    if unit == "GB/s":
        return f"{v:.2f}"
    return f"{v / 1000:.1f}k"


def render_table(results: Dict[str, Dict[str, Any]]) -> str:
    width = 28
    cw = 17
    lines = []
    head = f"{'':<{width}}" + "".join(f"{title + ' (' + unit + ')':>{cw + 1}}" for _, title, unit in COLUMNS)
    for group, title in (("local", "Local — ratio to multiprocessing.connection"),
                         ("remote", "WebSocket — ratio to the websockets package")):
        lines.append(title)
        lines.append(head)
        base = results.get(BASELINE[group], {})
        for key, entry in results.items():
            if entry["group"] != group:
                continue
            if "skipped" in entry:
                lines.append(f"  {entry['label']:<{width - 2}} skipped: {entry['skipped']}")
                continue
            row = f"  {entry['label']:<{width - 2}}"
            for col, _, unit in COLUMNS:
                v, standin = value_of(entry, col)
                if v is None:
                    row += f"{'—':>{cw + 1}}"
                    continue
                b, _ = value_of(base, col)
                ratio = f" {v / b:5.2f}x" if b else "       "
                cell = fmt_value(v, unit) + ("*" if standin else " ") + ratio
                row += f"{cell:>{cw + 1}}"
            lines.append(row)
        lines.append("")
    lines.append(
        "send = acked send of 64 B (returns once the peer has acknowledged); RTT = 64 B echo;\n"
        "1MiB echo counts bytes both ways; 1KiB msg = 1 KiB messages per second.\n"
        "* no acknowledgement in this transport: its echo round trip is shown instead and is\n"
        "  the basis ipcez's acked send is compared with. Ratios are figure / baseline figure\n"
        "  (lower is better for µs, higher for GB/s and msgs/s). 1 KiB msgs/s: ipcez unix = acked\n"
        "  sends; local anchors = send + 1-byte answer; ws rows = one-way sends (Python rows end\n"
        "  with one echo; the Rust example does not)."
    )
    return "\n".join(lines)


def evaluate_targets(results: Dict[str, Dict[str, Any]], fp: Dict[str, Any]) -> List[Dict[str, Any]]:
    def get(key: str, col: str) -> Optional[float]:
        return value_of(results.get(key, {"skipped": "absent"}), col)[0]

    targets: List[Dict[str, Any]] = []

    def ratio_target(name: str, a: Optional[float], b: Optional[float], op: str, limit: float) -> None:
        if a is None or b is None:
            targets.append({"target": name, "status": "SKIP", "value": None, "limit": f"{op} {limit}x"})
            return
        r = a / b
        ok = r <= limit if op == "<=" else r >= limit
        targets.append({"target": name, "status": "PASS" if ok else "MISS",
                        "value": round(r, 3), "limit": f"{op} {limit}x"})

    def abs_target(name: str, v: Optional[float], limit: float, unit: str) -> None:
        if v is None:
            targets.append({"target": name, "status": "SKIP", "value": None, "limit": f"<= {limit} {unit}"})
            return
        targets.append({"target": name, "status": "PASS" if v <= limit else "MISS",
                        "value": round(v, 2), "limit": f"<= {limit} {unit}"})

    py, ws = "ipcez-py-unix", "ipcez-py-ws"
    ratio_target("acked send p50 / mp.connection RTT p50", get(py, "send_p50_us"), get("mp", "rtt_p50_us"), "<=", 1.0)
    ratio_target("echo RTT p50 / mp.connection RTT p50", get(py, "rtt_p50_us"), get("mp", "rtt_p50_us"), "<=", 1.0)
    ratio_target("echo RTT p50 / pyzmq RTT p50", get(py, "rtt_p50_us"), get("zmq", "rtt_p50_us"), "<=", 0.25)
    ratio_target("1 MiB echo / pyzmq", get(py, "echo_1mib_gbps"), get("zmq", "echo_1mib_gbps"), ">=", 1.0)
    ratio_target("ws RTT p50 / websockets RTT p50", get(ws, "rtt_p50_us"), get("websockets", "rtt_p50_us"), "<=", 0.5)
    ratio_target("ws 1 MiB echo / websockets", get(ws, "echo_1mib_gbps"), get("websockets", "echo_1mib_gbps"), ">=", 1.5)
    abs_target("import ipcez (ms)", fp.get("import_ms"), 30, "ms")
    abs_target("idle RSS over bare Python (MB)", fp.get("rss_idle_over_bare_mb"), 15, "MB")
    if "conn_all_ok" in fp:
        targets.append({"target": "1,000 connections without error",
                        "status": "PASS" if fp["conn_all_ok"] else "MISS",
                        "value": f"{fp.get('conn_accepted', 0)}/{fp.get('conn_requested', 1000)} accepted",
                        "limit": "1000/1000"})
    else:
        targets.append({"target": "1,000 connections without error", "status": "SKIP", "value": None, "limit": "1000/1000"})
    return targets


def render_footprint(fp: Dict[str, Any]) -> str:
    out = ["Footprint (ipcez, release library)"]
    if "import_ms" in fp:
        out.append(f"  import ipcez                      {fp['import_ms']:.1f} ms (median of {len(fp['import_ms_samples'])} fresh interpreters)")
    if "rss_idle_over_bare_mb" in fp:
        out.append(
            f"  idle process, one connection      +{fp['rss_idle_over_bare_mb']:.1f} MB RSS over bare Python "
            f"({fp['rss_idle_mb']:.1f} vs {fp['rss_bare_mb']:.1f} MB; {fp['idle_threads']} threads)"
        )
    if "conn_accepted" in fp:
        per = fp["conn_listener_rss_growth_mb"] * 1e6 / max(fp["conn_accepted"], 1) / 1024
        out.append(
            f"  listener with 1,000 connections   +{fp['conn_listener_rss_growth_mb']:.1f} MB RSS "
            f"(~{per:.1f} KiB each); {fp['conn_connected']} connected, {fp['conn_accepted']} accepted, "
            f"{fp['conn_received']} messages received; threads {fp['conn_listener_threads'][0]}"
            f"->{fp['conn_listener_threads'][1]}; connect loop {fp['conn_connect_s']:.2f} s"
        )
        out.append(f"  client holding 1,000 connections  +{fp['conn_client_rss_growth_mb']:.1f} MB RSS, {fp['conn_client_threads']} threads")
        if fp.get("conn_errors"):
            out.append(f"  errors: {fp['conn_errors']}")
    for k in ("import_error", "rss_error", "conn_error", "skipped"):
        if k in fp:
            out.append(f"  {k}: {fp[k]}")
    return "\n".join(out)


def render_targets(targets: List[Dict[str, Any]]) -> str:
    out = ["Targets (ipcez from Python; a MISS is reported, never fatal)"]
    for t in targets:
        v = "—" if t["value"] is None else t["value"]
        if isinstance(v, float) and isinstance(t["limit"], str) and t["limit"].endswith("x"):
            v = f"{v:.2f}x"
        out.append(f"  {t['status']:<5} {t['target']:<42} {str(v):>16}  (want {t['limit']})")
    return "\n".join(out)


def machine_info() -> Dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    commit = None
    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=str(ROOT),
                           capture_output=True, text=True, timeout=5)
        commit = r.stdout.strip() or None
    except Exception:
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "git_commit": commit,
    }


def draw_chart(path: Path, results: Dict[str, Dict[str, Any]], fp: Dict[str, Any],
               targets: List[Dict[str, Any]], machine: Dict[str, Any], mode: str) -> Optional[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as exc:
        return f"no chart: matplotlib unavailable ({exc})"
    panels = [
        ("send_p50_us", "acked send p50 (µs; * = echo RTT, no ack)", False),
        ("rtt_p50_us", "echo RTT p50, 64 B (µs)", False),
        ("rtt_p99_us", "echo RTT p99, 64 B (µs)", False),
        ("echo_1mib_gbps", "1 MiB echo (GB/s, both ways)", True),
        ("msgs_per_s_1kib", "1 KiB messages/s", True),
    ]
    keys = [k for k, e in results.items() if "skipped" not in e]
    fig, axes = plt.subplots(2, 3, figsize=(17, 9))
    for ax, (col, title, higher) in zip(axes.flat, panels):
        labels, vals, colors, hatches = [], [], [], []
        for k in keys:
            e = results[k]
            v, standin = value_of(e, col)
            if v is None:
                continue
            labels.append(e["label"] + ("*" if standin else ""))
            vals.append(v)
            local = e["group"] == "local"
            ipcez_row = k.startswith("ipcez")
            colors.append(("#1f5fa8" if ipcez_row else "#8fb3da") if local else ("#c4561b" if ipcez_row else "#f0b48a"))
            hatches.append("//" if standin else "")
        y = list(range(len(vals)))[::-1]
        bars = ax.barh(y, vals, color=colors)
        for b, h in zip(bars, hatches):
            b.set_hatch(h)
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_title(title + (" — higher is better" if higher else " — lower is better"), fontsize=9)
        for yy, v in zip(y, vals):
            ax.text(v, yy, " " + (f"{v:.2f}" if col == "echo_1mib_gbps" else f"{v:,.0f}" if v >= 100 else f"{v:.1f}"),
                    va="center", fontsize=7)
        ax.margins(x=0.18)
    ax = axes.flat[5]
    ax.axis("off")
    text = [render_footprint(fp), "", render_targets(targets)]
    ax.text(0, 1, "\n".join(text), va="top", ha="left", family="monospace", fontsize=6.2, wrap=True)
    fig.suptitle(
        f"ipcez vs anchors — {machine['date']} — {machine['cpu_model']}, {machine['cores']} cores, "
        f"Python {machine['python']} ({mode}); blue = Unix socket, orange = WebSocket, dark = ipcez",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def orchestrate(args: argparse.Namespace) -> int:
    orch = Orchestrator(args)
    mode = "quick" if orch.quick else "full"
    machine = machine_info()
    print(f"ipcez benchmark ({mode}, {orch.rounds} rounds per latency workload, "
          f"median of {orch.repeat} pass(es)) on "
          f"{machine['cpu_model']}, {machine['cores']} cores, Python {machine['python']}", flush=True)
    results: Dict[str, Dict[str, Any]] = {}
    fp: Dict[str, Any] = {}
    aio: Dict[str, Any] = {}
    built: Dict[str, Any] = {}
    try:
        built = orch.ensure_built()
        orch.start = time.monotonic()  # a cargo build does not eat the quick budget
        results = orch.run_impls()
        if orch.left() > 5:
            fp = orch.run_footprint()
        else:
            fp = {"skipped": "time budget used up"}
        import aio_rows

        orch.budget += 45.0 if orch.quick else 300.0  # the asyncio and stream rows' share
        aio = aio_rows.measure(orch)
    except KeyboardInterrupt:
        orch.notes.append("interrupted")
        print("\ninterrupted; cleaning up", flush=True)
    except Exception as exc:
        orch.notes.append(f"benchmark aborted: {exc!r}")
        print(f"benchmark aborted: {exc!r}", flush=True)
    finally:
        orch.cleanup()
    files, sems = orch.leftovers
    # pyzmq leaves its ipc file and the SIGTERM'd Rust example cannot remove its own;
    # an ipcez Python listener closes on SIGTERM and must remove its file.
    ipcez_files = [os.path.basename(f) for f in files if "zmq" not in f and "ipcez-rs" not in f]
    if ipcez_files:
        orch.anomalies.append(f"socket files left by ipcez Python listeners (removed): {ipcez_files}")
    # The Rust example server dies on SIGTERM without closing its listener, so its
    # semaphores are expected leftovers; a Python listener closes on SIGTERM and should not leak.
    python_sems = [s for s in sems if "ipcez-rs-unix" not in s]
    if python_sems:
        orch.anomalies.append(
            f"ack semaphores left after a SIGTERM'd Python ipcez listener (removed): {python_sems}"
        )

    targets = evaluate_targets(results, fp)
    table = render_table(results)
    print()
    print(table)
    print()
    print(render_footprint(fp))
    print()
    print(render_targets(targets))
    if aio:
        import aio_rows

        print()
        print(aio_rows.render(aio))
        targets += aio_rows.evaluate(aio)
    notes = orch.notes + orch.anomalies
    if notes:
        print("\nNotes")
        for n in notes:
            print(f"  - {n}")

    report = {
        **machine,
        "mode": mode,
        "rounds": orch.rounds,
        "repeat": orch.repeat,
        "library": str(orch.library),
        "rust_bench": str(RUST_BENCH),
        "results": results,
        "footprint": fp,
        "aio": aio,
        "targets": targets,
        "notes": notes,
        "built": built,
    }
    out = Path(args.out) if args.out else RESULTS
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
        msg = draw_chart(out / "latest.png", results, fp, targets, machine, mode)
        print(f"\nwrote {out / 'latest.json'}" + (f"; {msg}" if msg else f" and {out / 'latest.png'}"))
    except Exception as exc:
        print(f"could not write results: {exc!r}")
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        child_main(sys.argv[2:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a few hundred rounds; finishes in about 2 min")
    p.add_argument("--rounds", type=int, default=0, help="latency rounds per workload (default 5000, quick 300)")
    p.add_argument("--repeat", type=int, default=0, help="passes over all implementations, median taken (default 3, quick 1)")
    p.add_argument("--library", default="", help="the libipcez_ffi to load (default: the release build)")
    p.add_argument("--out", default="", help="directory for latest.json / latest.png (default bench/results)")
    args = p.parse_args()

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
