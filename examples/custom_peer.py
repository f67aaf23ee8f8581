"""A custom peer in plain Python (``socket`` + ``struct`` + ``posix_ipc``) serving an ipcez client.

Run (Linux; needs ``pip install posix_ipc``)::

    python examples/custom_peer.py                   # a Unix socket in the temp directory
    python examples/custom_peer.py /tmp/peer.sock

The server half of this file does not import ipcez: it speaks the local
protocol directly, the way a program in another language would.  To show
that it interoperates, it starts an ordinary ipcez client (``CLIENT`` below,
run as ``python -c``) that sends three requests and prints the replies.

The protocol, for an endpoint path P:

* Frames on the Unix stream socket: a 4-byte big-endian length, then that many
  bytes (0 to 4 MiB; a larger announced length is a protocol violation).
* Two POSIX named semaphores, ``/ipcez.<tag>.<hash>.data_ready`` and
  ``.data_acked``: ``<tag>`` is the file name of P's canonical path with every byte
  outside ``[A-Za-z0-9_-]`` replaced by ``_``, cut to 32 bytes; ``<hash>`` is the first
  16 hex digits of SHA-256 of P's canonical path (``os.path.realpath``: symlinks
  and ``..`` resolved, so every spelling of P gives the same names;
  ``ipcez.ack_names(P)`` gives the same two names, and the client below checks
  it).  The listener creates them (mode 0600, exclusively, before it binds) and
  unlinks them when it closes; a client opens them after connecting.
* Receiving: read a whole frame, post ``data_acked``, take one ``data_ready``
  token (wait briefly: the sender posts it just after writing).
* Sending: write the frame, post ``data_ready``, wait for ``data_acked``
  (ipcez's default ack timeout is 5 s).  Keep reading while you wait: the
  two names serve both directions, so the other side's own send may take
  your token, and its message then waits for you to read (and ack) it.
"""

from __future__ import annotations

import collections
import hashlib
import os
import re
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time

try:
    import posix_ipc
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("custom_peer.py needs posix_ipc: pip install posix_ipc")

MAX_MESSAGE = 4 * 1024 * 1024
ACK_TIMEOUT = 5.0

# The ipcez side: an ordinary client, started as a second process.
CLIENT = r"""
import os, sys
os.environ.setdefault("target", "local")
os.environ.setdefault("os", "linux")
import ipcez

path, ready, acked = sys.argv[1:4]
assert ipcez.ack_names(path) == (ready, acked), ipcez.ack_names(path)
with ipcez.connect(path) as sock:
    for request in (b"hello", b"how long is this?", bytes(300_000)):
        sock.send(request)                 # returns once the custom peer acked it
        reply = sock.recv(timeout=5)
        print(f"ipcez client: sent {len(request)} bytes, reply: {reply.decode()!r}", flush=True)
"""


def ack_names(path: str) -> "tuple[str, str]":
    full = os.path.realpath(path)
    tag = re.sub(rb"[^A-Za-z0-9_-]", b"_", os.path.basename(full).encode())[:32].decode()
    digest = hashlib.sha256(full.encode()).hexdigest()[:16]
    base = f"/ipcez.{tag}.{digest}"
    return base + ".data_ready", base + ".data_acked"


def recv_exact(conn: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = conn.recv(min(n, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


class Peer:
    """One accepted connection, speaking ipcez's local protocol by hand."""

    def __init__(self, conn: socket.socket, ready: "posix_ipc.Semaphore", acked: "posix_ipc.Semaphore") -> None:
        self.conn, self.ready, self.acked = conn, ready, acked
        self.pending: "collections.deque[bytes]" = collections.deque()

    def _read_frame(self) -> bytes:
        (length,) = struct.unpack(">I", recv_exact(self.conn, 4))
        if length > MAX_MESSAGE:
            raise ValueError(f"protocol violation: a {length}-byte frame")
        payload = recv_exact(self.conn, length)
        self.acked.release()  # "data acked": the sender's send() returns
        try:
            self.ready.acquire(0.5)  # consume the sender's "data ready" token
        except posix_ipc.BusyError:
            pass
        return payload

    def recv(self) -> bytes:
        """The next message (EOFError once the client has gone)."""
        return self.pending.popleft() if self.pending else self._read_frame()

    def send(self, payload: bytes) -> None:
        self.conn.sendall(struct.pack(">I", len(payload)) + payload)
        self.ready.release()  # "data ready"
        deadline = time.monotonic() + ACK_TIMEOUT
        while True:
            try:
                self.acked.acquire(0.05)  # wait until the ipcez side has read it
                return
            except posix_ipc.BusyError:
                pass
            # One pair of semaphores serves both directions, so the other side's own send
            # may have taken the token meant for us; its message is then waiting here.
            # Keep reading while waiting (reading posts the ack that unblocks us both).
            if select.select([self.conn], [], [], 0)[0]:
                self.pending.append(self._read_frame())
            if time.monotonic() > deadline:
                raise TimeoutError("the ipcez client did not acknowledge the reply")


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(tempfile.gettempdir(), f"ipcez-peer-{os.getpid()}.sock")
    ready_name, acked_name = ack_names(path)
    semaphores = []
    for name in (ready_name, acked_name):
        try:
            posix_ipc.unlink_semaphore(name)  # left over from a crashed run
        except posix_ipc.ExistentialError:
            pass
        semaphores.append(posix_ipc.Semaphore(name, posix_ipc.O_CREX, mode=0o600, initial_value=0))
    ready, acked = semaphores
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client = None
    try:
        server.bind(path)
        os.chmod(path, 0o600)
        server.listen()
        server.settimeout(10)
        print(f"custom peer: listening on {path}", flush=True)
        print(f"custom peer: ack semaphores {ready_name}, {acked_name}", flush=True)

        client = subprocess.Popen([sys.executable, "-c", CLIENT, path, ready_name, acked_name])
        conn, _ = server.accept()
        conn.settimeout(10)
        with conn:
            peer = Peer(conn, ready, acked)
            while True:
                try:
                    request = peer.recv()
                except EOFError:
                    print("custom peer: the client disconnected", flush=True)
                    break
                print(f"custom peer: got {len(request)} bytes", flush=True)
                peer.send(f"you sent {len(request)} bytes".encode())
        return client.wait(timeout=10)
    finally:
        if client is not None and client.poll() is None:
            client.kill()
        server.close()
        if os.path.exists(path):
            os.unlink(path)
        for sem in semaphores:
            sem.unlink()  # the listener owns the names
            sem.close()


if __name__ == "__main__":
    sys.exit(main())
