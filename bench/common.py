"""What the orchestrator and every child process of the benchmark share: paths, sizes,
the nearest-rank percentile, /proc readings, the READY handshake and the test payloads."""

from __future__ import annotations

import os
import resource
import signal
import socket
import struct
import sys
from pathlib import Path
from typing import Any, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
RELEASE_LIB = ROOT / "rust" / "target" / "release" / "libipcez_ffi.so"
RUST_BENCH = ROOT / "rust" / "target" / "release" / "examples" / "bench"
MANIFEST = ROOT / "rust" / "Cargo.toml"

MIB = 1024 * 1024
SMALL = 64
KIB = 1024
#: The 4-byte big-endian length prefix of ipcez frames (and of the raw and streams anchors).
HDR = struct.Struct(">I")


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


def reply_for(msg: bytes) -> Optional[bytes]:
    c = msg[:1]
    if c == b"E":
        return msg
    if c == b"A":
        return b"a"
    return None


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            raise EOFError("peer closed")
        got += k
    return bytes(buf)


def raw_send(sock: socket.socket, msg: bytes) -> None:
    header = struct.pack(">I", len(msg))
    if len(msg) <= 65536:
        sock.sendall(header + msg)
    else:
        sock.sendall(header)
        sock.sendall(msg)


def raw_recv(sock: socket.socket) -> bytes:
    (n,) = struct.unpack(">I", recv_exact(sock, 4))
    return recv_exact(sock, n)

