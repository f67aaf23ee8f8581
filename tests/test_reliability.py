"""Reliability under load, faults and hostile input.

- load: many clients through one listener, both transports (a reduced run of bench/load.py);
- faults: a peer SIGKILLed mid-frame, a peer that stops reading, a listener restarted under
  its clients, the stale ack token the README documents;
- hostile input: oversized announcements, garbage, a frame dribbled byte by byte, silent
  connections, oversized WebSocket messages, malformed handshakes -- each costs only its own
  connection while another one on the same listener keeps working;
- leaks: connect/close cycles and a message stream leave fds, /dev/shm and RSS where they were
  (reduced runs of bench/leaks.py).

Full-size versions: ``python bench/load.py`` and ``python bench/leaks.py``; tests marked slow
run with ``IPCEZ_SLOW=1``.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import queue
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any, Iterator, List, Tuple

import pytest

import ipcez

from conftest import ROOT, child_env, python_child, wait_for_line

import posix_ipc  # noqa: E402  (requirements-dev.txt; conftest checks it is installed)
import websockets  # noqa: E402  (requirements-dev.txt; conftest checks it is installed)
from websockets.sync.client import connect as ws_connect  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Unix sockets, POSIX semaphores, /proc")

slow = pytest.mark.skipif(not os.environ.get("IPCEZ_SLOW"), reason="slow; set IPCEZ_SLOW=1 to run")

MIB = 1024 * 1024
MIB4 = 4 * MIB
BENCH = ROOT / "bench"


# -- helpers ----------------------------------------------------------------------------


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = conn.recv(min(n, MIB))
        if not chunk:
            raise ConnectionError("peer closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(conn: socket.socket) -> bytes:
    (n,) = struct.unpack(">I", _recv_exact(conn, 4))
    return _recv_exact(conn, n)


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def settled_fd_count(timeout: float = 3.0) -> int:
    """The fd count once it stops changing (a WebSocket close finishes in the background)."""
    deadline = time.monotonic() + timeout
    last = fd_count()
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        n = fd_count()
        if n != last:
            last, stable_since = n, time.monotonic()
        elif time.monotonic() - stable_since >= 0.3:
            break
    return last


def shm_ipcez() -> set:
    return {n for n in os.listdir("/dev/shm") if n.startswith("sem.ipcez.")}


def sem_files(path: str) -> List[str]:
    return ["/dev/shm/sem." + n.lstrip("/") for n in ipcez.ack_names(path)]


class Sems:
    """The endpoint's two semaphores, opened (created when missing) as a custom peer does."""

    def __init__(self, path: str) -> None:
        self.names = ipcez.ack_names(path)
        self.ready = posix_ipc.Semaphore(self.names[0], posix_ipc.O_CREAT, 0o600, 0)
        self.acked = posix_ipc.Semaphore(self.names[1], posix_ipc.O_CREAT, 0o600, 0)

    def close(self, unlink: bool = True) -> None:
        self.ready.close()
        self.acked.close()
        if unlink:
            for name in self.names:
                try:
                    posix_ipc.unlink_semaphore(name)
                except posix_ipc.ExistentialError:
                    pass


def round_trip(a: ipcez.Socket, b: ipcez.Socket, tag: bytes = b"") -> None:
    """One message each way between two connected sockets."""
    a.send(b"ping " + tag)
    assert b.recv(timeout=5) == b"ping " + tag
    b.send(b"pong " + tag)
    assert a.recv(timeout=5) == b"pong " + tag


@pytest.fixture
def unix_pair(sock_path: str) -> Iterator[Tuple[ipcez.Listener, ipcez.Socket, ipcez.Socket]]:
    """A Unix listener with one healthy connection (client, accepted peer) on it."""
    with ipcez.listen(sock_path) as listener:
        client = ipcez.connect(sock_path)
        peer = listener.accept(timeout=5)
        round_trip(client, peer, b"before")
        yield listener, client, peer
        client.close()
        peer.close()


@pytest.fixture
def ws_pair() -> Iterator[Tuple[ipcez.Listener, ipcez.Socket, ipcez.Socket]]:
    """A ws:// listener with one healthy connection (client, accepted peer) on it."""
    with ipcez.listen("ws://127.0.0.1:0/rel") as listener:
        client = ipcez.connect(listener.address)
        peer = listener.accept(timeout=5)
        round_trip(client, peer, b"before")
        yield listener, client, peer
        client.close()
        peer.close()


def ws_port(listener: ipcez.Listener) -> int:
    return int(listener.address.rsplit(":", 1)[1].split("/")[0])


# -- 1. load (reduced bench/load.py) ----------------------------------------------------


@pytest.mark.parametrize("transport", ["unix", "ws"])
def test_load_many_clients_exactly_once_in_order(transport: str) -> None:
    """8 client threads in 2 processes x 300 numbered messages through one listener, plus
    50 idle connections that must all still work: bench/load.py exits 0 only when every
    message arrived once, in order, intact, with no ack timeout."""
    r = subprocess.run(
        [sys.executable, str(BENCH / "load.py"), "--clients", "8", "--messages", "300", "--procs", "2",
         "--idle", "50", "--idle-seconds", "0.3", "--transport", transport, "--json"],
        env=child_env(), capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    results = json.loads(r.stdout.strip().splitlines()[-2])
    flood, idle = results
    assert flood["ok"] and idle["ok"], results
    assert flood["received"] == flood["expected"] == 2400
    assert (flood["duplicates"], flood["reorders"], flood["corrupt"], flood["missing"], flood["ack_timeouts"]) == (0,) * 5
    print(f"\n{transport}: {flood['messages_per_second']} msg/s, idle conn costs "
          f"{idle['listener_rss_per_conn_kib']} KiB, {idle['listener_fds_per_conn']} fd")


# -- 2. faults ---------------------------------------------------------------------------

RAW_CLIENT_DIES_MID_FRAME = """
import socket, struct, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(struct.pack(">I", 5) + b"whole")
s.sendall(struct.pack(">I", 1000) + b"0123456789")   # announces 1000 bytes, sends 10
print("written", flush=True)
time.sleep(60)
"""

RAW_SERVER_DIES_MID_FRAME = """
import os, socket, struct, sys, time
path = sys.argv[1]
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(1)
print("listening", flush=True)
conn, _ = srv.accept()
conn.sendall(struct.pack(">I", 5) + b"whole")
conn.sendall(struct.pack(">I", 1000) + b"0123456789")
print("written", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("use_handler", [False, True], ids=["recv", "handler"])
@pytest.mark.parametrize("ipcez_side", ["listener", "client"])
def test_peer_sigkilled_mid_frame(sock_path: str, ipcez_side: str, use_handler: bool) -> None:
    """A raw peer writes one whole frame and then a header announcing 1000 bytes followed
    by 10 of them, and is SIGKILLed: ipcez delivers the whole frame, then exactly one
    ConnectionLost, never the partial message."""
    listener = None
    if ipcez_side == "listener":
        listener = ipcez.listen(sock_path)
        proc = python_child(RAW_CLIENT_DIES_MID_FRAME, sock_path)
        sock = listener.accept(timeout=5)
    else:
        proc = python_child(RAW_SERVER_DIES_MID_FRAME, sock_path)
        wait_for_line(proc, "listening")
        sock = ipcez.connect(sock_path)
    try:
        wait_for_line(proc, "written")
        got: "queue.Queue[Any]" = queue.Queue()
        if use_handler:
            sock.message_handler(got.put)
            assert got.get(timeout=5) == b"whole"
        else:
            assert sock.recv(timeout=5) == b"whole"
        time.sleep(0.1)  # the 14 partial bytes are read by now
        if use_handler:
            with pytest.raises(queue.Empty):
                got.get(timeout=0.1)  # nothing deliverable yet
        else:
            with pytest.raises(TimeoutError):
                sock.recv(timeout=0.1)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        if use_handler:
            end = got.get(timeout=5)
            elapsed = time.monotonic() - t0
            assert isinstance(end, ipcez.ConnectionLost), end
            time.sleep(0.3)
            assert got.empty(), f"more than one final item: {got.get()!r}"
        else:
            with pytest.raises(ipcez.ConnectionLost):
                sock.recv(timeout=5)
            elapsed = time.monotonic() - t0
            assert list(sock) == [], "nothing after the loss"
        assert elapsed < 1.0, f"loss noticed after {elapsed:.3f} s"
        with pytest.raises(ipcez.ConnectionLost):
            sock.send(b"after")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        sock.close()
        if listener is not None:
            listener.close()
        else:
            Sems(sock_path).close()  # the raw server never unlinks its names


STALLED_LISTENER = """
import sys, time, ipcez
l = ipcez.listen(sys.argv[1])
print("listening", flush=True)
s = l.accept(timeout=30)
print("accepted", flush=True)
time.sleep(120)       # never reads
"""


@pytest.mark.parametrize(
    "size,bound",
    [(1024, 1024), (MIB, 64)],
    ids=["1KiB-messages-hit-1024", "1MiB-messages-hit-64MiB"],
)
def test_peer_that_stops_reading(sock_path: str, size: int, bound: int) -> None:
    """An ipcez listener that accepts but never receives: its reader queues 1,024 messages or
    64 MiB and then stops reading, so exactly that many sends are acked, the next one raises
    RecipientAckTimeout, and the listener process's memory stays bounded however long the
    client keeps trying."""
    proc = python_child(STALLED_LISTENER, sock_path)
    try:
        wait_for_line(proc, "listening")
        base = rss_kib(proc.pid)
        c = ipcez.connect(sock_path, ack_timeout=0.5)
        wait_for_line(proc, "accepted")
        msg = b"s" * size
        acked = 0
        # The first send over the bound times out; on a loaded machine a 1 MiB frame may not
        # even be written whole by then, and the connection ends instead (as documented).
        with pytest.raises((ipcez.RecipientAckTimeout, ipcez.ConnectionLost)):
            for _ in range(bound + 10):
                c.send(msg)
                acked += 1
        assert acked == bound, f"{acked} sends acked, expected the queue bound {bound}"
        filled = rss_kib(proc.pid)
        # Keep pushing: every further send fails (timeout, or connection lost once a frame
        # could only be half written), and the listener's memory does not grow.
        failures = set()
        for _ in range(4):
            try:
                c.send(msg)
            except (ipcez.RecipientAckTimeout, ipcez.ConnectionLost) as exc:
                failures.add(type(exc).__name__)
            else:
                raise AssertionError("a send was acked by a listener that does not read")
        final = rss_kib(proc.pid)
        queued_kib = bound * size // 1024
        print(f"\nlistener RSS: base {base} KiB, after {acked} x {size} B {filled} KiB "
              f"(+{filled - base}), after 4 more sends {final} KiB; failures {sorted(failures)}")
        assert filled - base < queued_kib + 48 * 1024, "queue bigger than its bound"
        assert final - filled < 8 * 1024, "memory kept growing after the queue was full"
        c.close()
    finally:
        proc.kill()
        proc.communicate()
        Sems(sock_path).close()  # the killed listener could not unlink its names


ECHO_SERVER = """
import sys, threading, ipcez
listener = ipcez.listen(sys.argv[1])
socks = []
def serve(s):
    for m in s:
        s.send(m)
def accept_loop():
    for s in listener:
        socks.append(s)
        threading.Thread(target=serve, args=(s,), daemon=True).start()
threading.Thread(target=accept_loop, daemon=True).start()
print("listening", flush=True)
sys.stdin.readline()              # "stop": a clean shutdown
for s in socks:
    s.close()
listener.close()
print("closed", flush=True)
"""


@pytest.mark.parametrize("how", ["clean", "sigkill"])
def test_listener_restarted_under_its_clients(sock_path: str, how: str) -> None:
    """Clients of a listener that is stopped (cleanly, or by SIGKILL) see ConnectionLost;
    a new listener on the same path takes over (a stale socket file is replaced) and
    reconnecting to it works."""
    server = python_child(ECHO_SERVER, sock_path, stdin=subprocess.PIPE)
    try:
        wait_for_line(server, "listening")
        clients = [ipcez.connect(sock_path, ack_timeout=2) for _ in range(3)]
        for i, c in enumerate(clients):
            c.send(b"hello %d" % i)
            assert c.recv(timeout=5) == b"hello %d" % i
        if how == "clean":
            assert server.stdin is not None
            server.stdin.write("stop\n")
            server.stdin.flush()
            wait_for_line(server, "closed")
            server.wait(5)
            assert not os.path.exists(sock_path), "a clean close removes the socket file"
        else:
            server.kill()
            server.wait(5)
            assert os.path.exists(sock_path), "SIGKILL leaves a stale socket file"
        for c in clients:
            with pytest.raises(ipcez.ConnectionLost):
                c.recv(timeout=2)
            with pytest.raises(ipcez.ConnectionLost):
                c.send(b"into the void")
            c.close()

        server2 = python_child(ECHO_SERVER, sock_path, stdin=subprocess.PIPE)
        try:
            wait_for_line(server2, "listening")
            again = [ipcez.connect(sock_path, ack_timeout=2) for _ in range(3)]
            for i, c in enumerate(again):
                c.send(b"again %d" % i)
                assert c.recv(timeout=5) == b"again %d" % i
                c.close()
        finally:
            assert server2.stdin is not None
            server2.stdin.write("stop\n")
            server2.stdin.flush()
            server2.communicate(timeout=10)
        assert not os.path.exists(sock_path)
        for f in sem_files(sock_path):
            assert not os.path.exists(f), f"{f} outlived its listener"
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate()


def test_late_ack_releases_the_next_send_early(sock_path: str) -> None:
    """README, limitations: one-to-one, one direction at a time, the ack is exact -- except
    after a RecipientAckTimeout: the late ack stays in the semaphore and releases the *next*
    send early.  A raw peer (socket + posix_ipc) makes it deterministic."""
    sem = Sems(sock_path)  # a raw listener owns the names
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(1)
    server.settimeout(5)
    client = ipcez.connect(sock_path, ack_timeout=1.0)
    conn, _ = server.accept()
    conn.settimeout(5)

    def send_in_thread(msg: bytes) -> Tuple[threading.Thread, List[Any]]:
        outcome: List[Any] = []

        def run() -> None:
            try:
                client.send(msg)
                outcome.append("ok")
            except BaseException as exc:  # noqa: BLE001
                outcome.append(exc)

        t = threading.Thread(target=run)
        t.start()
        return t, outcome

    try:
        # 1. exact: the send waits for the peer's ack of this very message.
        t, outcome = send_in_thread(b"zero")
        assert read_frame(conn) == b"zero"
        assert sem.ready.acquire(2) is None
        time.sleep(0.15)
        assert t.is_alive(), "send returned before its message was acked"
        sem.acked.release()
        t.join(2)
        assert outcome == ["ok"]

        # 2. the peer is too slow: RecipientAckTimeout.
        with pytest.raises(ipcez.RecipientAckTimeout):
            client.send(b"one")
        assert read_frame(conn) == b"one"
        sem.ready.acquire(2)

        # 3. its ack arrives late and stays in the semaphore ...
        sem.acked.release()
        assert sem.acked.value == 1

        # 4. ... where it releases the next send at once, although the peer has not acked it.
        t0 = time.monotonic()
        client.send(b"two")  # succeeds: nobody acks "two" in this test
        assert time.monotonic() - t0 < 0.5, "expected an immediate release by the stale token"
        assert sem.acked.value == 0, "the stale token was used up"
        assert read_frame(conn) == b"two"
        sem.ready.acquire(2)

        # 5. exactly one token was stale: the send after that is exact again.
        t, outcome = send_in_thread(b"three")
        assert read_frame(conn) == b"three"
        time.sleep(0.15)
        assert t.is_alive(), "a second stale token released a send"
        sem.acked.release()
        t.join(2)
        assert outcome == ["ok"]
    finally:
        client.close()
        conn.close()
        server.close()
        sem.close()


def test_stale_ack_token_does_not_cross_a_listener_restart(sock_path: str) -> None:
    """README: a listener starts from fresh names, so a stale token never crosses a restart."""
    stale = Sems(sock_path)
    for _ in range(3):
        stale.acked.release()  # tokens left over by a previous life of the endpoint
    assert stale.acked.value == 3
    with ipcez.listen(sock_path) as listener:
        try:
            fresh = posix_ipc.Semaphore(stale.names[1])
        except posix_ipc.ExistentialError:
            pass  # unlinked; created fresh on first use
        else:
            assert fresh.value == 0, "the listener kept the old data_acked"
            fresh.close()
        with ipcez.connect(sock_path) as c:
            p = listener.accept(timeout=5)
            c.send(b"fresh")
            assert p.recv(timeout=5) == b"fresh"
            acked = posix_ipc.Semaphore(stale.names[1])
            assert acked.value == 0, "a stale token survived into the new listener's names"
            acked.close()
            p.close()
    stale.close(unlink=False)


# -- 3. hostile input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        struct.pack(">I", MIB4 + 1) + b"abc",
        struct.pack(">I", 0xFFFFFFFF),
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",  # "GET " announces 1.2 GB
        b"\xff" * 64,
        bytes([0x7F]) + random.Random(6).randbytes(4095),
    ],
    ids=["4MiB+1", "4GiB", "http-request", "ff-bytes", "random"],
)
def test_hostile_unix_input_costs_only_its_connection(
    unix_pair: Tuple[ipcez.Listener, ipcez.Socket, ipcez.Socket], sock_path: str, data: bytes
) -> None:
    """A header announcing more than 4 MiB (or garbage that reads as one): one IoError
    (InvalidData, EBADMSG) for that connection, which is then closed; the listener and the
    other connection carry on."""
    listener, good_client, good_peer = unix_pair
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(sock_path)
    raw.settimeout(5)
    bad = listener.accept(timeout=5)
    raw.sendall(data)
    with pytest.raises(ipcez.IoError) as info:
        bad.recv(timeout=5)
    assert not isinstance(info.value, ipcez.ConnectionLost), "expected a protocol error first"
    assert info.value.errno == errno.EBADMSG, info.value
    assert "4 MiB" in str(info.value) or "protocol" in str(info.value), info.value
    assert raw.recv(1) == b"", "the offending connection is closed"
    with pytest.raises(ipcez.ConnectionLost):
        bad.recv(timeout=2)
    bad.close()
    raw.close()
    round_trip(good_client, good_peer, b"after")
    with ipcez.connect(sock_path) as c2:
        round_trip(c2, listener.accept(timeout=5), b"new")


def test_plausible_garbage_then_close_delivers_nothing(
    unix_pair: Tuple[ipcez.Listener, ipcez.Socket, ipcez.Socket], sock_path: str
) -> None:
    """Garbage whose header is a legal length (4096) but which ends early: no message, one
    ConnectionLost."""
    listener, good_client, good_peer = unix_pair
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(sock_path)
    bad = listener.accept(timeout=5)
    raw.sendall(b"\x00\x00\x10\x00" + os.urandom(100))
    raw.close()
    with pytest.raises(ipcez.ConnectionLost):
        bad.recv(timeout=5)
    assert list(bad) == []
    round_trip(good_client, good_peer, b"after")


def test_frame_dribbled_one_byte_per_write(
    unix_pair: Tuple[ipcez.Listener, ipcez.Socket, ipcez.Socket], sock_path: str
) -> None:
    """Frames written one byte per write (with pauses, so each byte is its own read) arrive
    whole and in order, while the other connection keeps working meanwhile."""
    listener, good_client, good_peer = unix_pair
    messages = [b"", b"a", b"dribbled payload " * 8, bytes(range(256)) * 2, b"last"]
    stream = b"".join(frame(m) for m in messages)
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(sock_path)
    peer = listener.accept(timeout=5)
    errors: List[BaseException] = []

    def dribble() -> None:
        try:
            for i in range(len(stream)):
                raw.send(stream[i : i + 1])
                time.sleep(0.0005)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=dribble)
    t.start()
    got: List[bytes] = []
    n = 0
    while t.is_alive() or len(got) < len(messages):
        round_trip(good_client, good_peer, b"%d" % n)  # unaffected while the dribble goes on
        n += 1
        try:
            got.append(peer.recv(timeout=0.01))
        except TimeoutError:
            pass
        if n > 5000:
            break
    t.join(5)
    assert not errors, errors
    assert got == messages
    assert n > 10, "the good connection was not exercised during the dribble"

    # and a 256 KiB frame in random pieces of 1..17 bytes, no pauses
    big = random.Random(3).randbytes(256 * 1024)
    data = frame(big) + frame(b"tail")
    rng = random.Random(4)
    i = 0
    while i < len(data):
        k = rng.randint(1, 17)
        raw.sendall(data[i : i + k])
        i += k
    assert peer.recv(timeout=10) == big
    assert peer.recv(timeout=5) == b"tail"
    raw.close()
    peer.close()


def test_silent_connections_hold_up_nobody(
    unix_pair: Tuple[ipcez.Listener, ipcez.Socket, ipcez.Socket], sock_path: str
) -> None:
    """A connection that opens and sends nothing, and one that sends half a header, block
    neither the listener nor the other connections; they deliver nothing and end with one
    ConnectionLost when they close."""
    listener, good_client, good_peer = unix_pair
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.connect(sock_path)
    half = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    half.connect(sock_path)
    half.sendall(b"\x00\x00")
    s_peer = listener.accept(timeout=5)
    h_peer = listener.accept(timeout=5)
    with ipcez.connect(sock_path) as c3:
        p3 = listener.accept(timeout=5)
        for i in range(20):
            round_trip(c3, p3, b"%d" % i)
            round_trip(good_client, good_peer, b"%d" % i)
        for p in (s_peer, h_peer):
            with pytest.raises(TimeoutError):
                p.recv(timeout=0.05)
        p3.close()
    silent.close()
    half.close()
    for p in (s_peer, h_peer):
        with pytest.raises(ipcez.ConnectionLost):
            p.recv(timeout=5)
        assert list(p) == []
        p.close()


def test_silent_tcp_connection_does_not_block_websocket_accept(
    ws_pair: Tuple[ipcez.Listener, ipcez.Socket, ipcez.Socket],
) -> None:
    listener, good_client, good_peer = ws_pair
    silent = socket.create_connection(("127.0.0.1", ws_port(listener)))
    try:
        t0 = time.monotonic()
        with ipcez.connect(listener.address) as c:
            p = listener.accept(timeout=5)
            assert time.monotonic() - t0 < 2
            round_trip(c, p, b"next")
        round_trip(good_client, good_peer, b"after")
    finally:
        silent.close()


@slow
def test_silent_tcp_connection_is_dropped_after_the_handshake_timeout(
    ws_pair: Tuple[ipcez.Listener, ipcez.Socket, ipcez.Socket],
) -> None:
    """The listener gives a handshake 10 s, then closes the connection."""
    listener, good_client, good_peer = ws_pair
    silent = socket.create_connection(("127.0.0.1", ws_port(listener)))
    silent.settimeout(20)
    t0 = time.monotonic()
    assert silent.recv(1) == b""
    assert 8 < time.monotonic() - t0 < 15
    silent.close()
    round_trip(good_client, good_peer, b"after")


def test_oversized_websocket_message_costs_only_its_connection(
    ws_pair: Tuple[ipcez.Listener, ipcez.Socket, ipcez.Socket],
) -> None:
    """A websockets client with no size limit of its own sends exactly 4 MiB (delivered) and
    then 4 MiB + 1: that connection gets one error (EBADMSG) and is closed;
    the listener and the other connection carry on."""
    listener, good_client, good_peer = ws_pair
    with ws_connect(listener.address, max_size=None, compression=None, proxy=None, close_timeout=2) as ws:
        peer = listener.accept(timeout=5)
        ws.send(b"m" * MIB4)
        assert peer.recv(timeout=10) == b"m" * MIB4
        closed = None
        try:  # ipcez may close while the client is still writing the oversized message
            ws.send(b"o" * (MIB4 + 1))
        except websockets.exceptions.ConnectionClosed as exc:
            closed = exc
        with pytest.raises(ipcez.SocketError) as info:
            peer.recv(timeout=10)
        first = info.value
        assert isinstance(first, ipcez.IoError) and first.errno == errno.EBADMSG, first
        assert "4 MiB" in str(first), first
        if closed is None:
            with pytest.raises(websockets.exceptions.ConnectionClosed) as raised:
                ws.recv(timeout=5)
            closed = raised.value
        code = closed.rcvd.code if closed.rcvd else None
        print(f"\nipcez side: {type(first).__name__}: {first}; websockets side: close code {code}")
        # RFC 6455 suggests 1009 (message too big); ipcez currently closes with no status
        # (1005), which is still a close: the connection is ended, nothing is delivered.
        assert code in (1009, 1005, None), closed
        with pytest.raises(ipcez.ConnectionLost):
            peer.recv(timeout=2)
        peer.close()
    round_trip(good_client, good_peer, b"after")
    with ipcez.connect(listener.address) as c2:
        round_trip(c2, listener.accept(timeout=5), b"new")


def _http_exchange(port: int, data: bytes, timeout: float = 5) -> bytes:
    """Send ``data`` on a fresh TCP connection; everything the server says until it closes."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(timeout)
    out = b""
    try:
        s.sendall(data)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except ConnectionResetError:
        pass
    finally:
        s.close()
    return out


@pytest.mark.parametrize(
    "data",
    [
        os.urandom(200) + b"\r\n\r\n",
        b"\x00\x01garbage\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(200),  # a TLS ClientHello on ws://
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
    ],
    ids=["random", "nul-garbage", "tls-on-plain", "ssh-banner"],
)
def test_websocket_garbage_handshake_costs_only_its_connection(
    ws_pair: Tuple[ipcez.Listener, ipcez.Socket, ipcez.Socket], data: bytes
) -> None:
    """Raw garbage instead of a handshake: that connection is closed promptly (with an HTTP
    4xx or nothing), no Socket is produced for it, and the listener keeps serving."""
    listener, good_client, good_peer = ws_pair
    t0 = time.monotonic()
    reply = _http_exchange(ws_port(listener), data)
    assert time.monotonic() - t0 < 4, "not closed promptly"
    assert reply == b"" or reply.startswith(b"HTTP/1.1 4"), reply[:200]
    with pytest.raises(TimeoutError):
        listener.accept(timeout=0.2)
    round_trip(good_client, good_peer, b"after")
    with ipcez.connect(listener.address) as c2:
        round_trip(c2, listener.accept(timeout=5), b"new")


# Regression: a plain HTTP GET used to be closed without any answer (tungstenite writes
# none for an invalid handshake request); ipcez now answers 426 itself.
@pytest.mark.parametrize("path", ["/rel", "/elsewhere"])
def test_websocket_plain_http_get_gets_a_clear_http_error(
    ws_pair: Tuple[ipcez.Listener, ipcez.Socket, ipcez.Socket], path: str
) -> None:
    """A well-formed HTTP GET without the upgrade (what curl or a browser sends) deserves a
    clear answer: an HTTP 4xx status line (400/426 on the WebSocket path, 404 elsewhere),
    then close; the listener keeps serving."""
    listener, good_client, good_peer = ws_pair
    req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n".encode()
    reply = _http_exchange(ws_port(listener), req)
    with pytest.raises(TimeoutError):
        listener.accept(timeout=0.2)
    round_trip(good_client, good_peer, b"after")
    assert reply.startswith(b"HTTP/1.1 4"), f"no HTTP error response, got {reply[:200]!r}"


# -- 5. leaks (reduced bench/leaks.py) ---------------------------------------------------


@pytest.mark.parametrize("transport", ["unix", "ws"])
def test_connect_close_cycles_leave_no_fds_or_semaphores(sock_path: str, transport: str) -> None:
    """Many connect/accept/close cycles: the fd count and the ipcez entries in /dev/shm end
    where they started (the listener's own names are gone once it closes)."""
    cycles = 1000 if transport == "unix" else 300
    # /dev/shm is shared with whatever else runs on the machine: look at this endpoint's names
    mine = {f.rsplit("/", 1)[1] for f in sem_files(sock_path)}
    shm0 = shm_ipcez() & mine
    gc.collect()
    fds0 = settled_fd_count()
    endpoint = sock_path if transport == "unix" else "ws://127.0.0.1:0/leak"
    with ipcez.listen(endpoint) as listener:
        for i in range(cycles):
            c = ipcez.connect(listener.address)
            p = listener.accept(timeout=5)
            if i % 50 == 0:
                round_trip(c, p)
            c.close()
            p.close()
        during = fd_count()
        del c, p  # a closed Socket's fd is released when the object goes (see below)
    gc.collect()
    fds1 = settled_fd_count()
    shm1 = shm_ipcez() & mine
    print(f"\n{transport}: {cycles} cycles, fds {fds0} -> {during} (listener open) -> {fds1}")
    assert fds1 == fds0, f"fd leak: {fds0} -> {fds1}"
    assert shm1 == shm0, f"/dev/shm: new {shm1 - shm0}, gone {shm0 - shm1}"


@pytest.mark.parametrize("transport", ["unix", "ws"])
def test_message_stream_rss_growth(sock_path: str, transport: str) -> None:
    """50,000 messages after a warm-up: RSS grows by at most 1 MiB (bench/leaks.py runs
    1,000,000)."""
    endpoint = sock_path if transport == "unix" else "ws://127.0.0.1:0/leak"
    n = 50_000 if transport == "ws" else 30_000
    with ipcez.listen(endpoint) as listener, ipcez.connect(listener.address) as c:
        p = listener.accept(timeout=5)
        payload = b"x" * 100

        def burst(count: int) -> None:
            for _ in range(count):
                c.send(payload)
                assert p.recv(timeout=5) == payload

        burst(10_000)  # warm-up: allocator pools, runtime threads, caches
        gc.collect()
        before = rss_kib(os.getpid())
        burst(n)
        gc.collect()
        after = rss_kib(os.getpid())
        p.close()
    print(f"\n{transport}: RSS {before} -> {after} KiB after {n} messages (+{after - before} KiB)")
    assert after - before <= 1024, f"RSS grew by {after - before} KiB over {n} messages"


# Regression: a closed Unix socket used to keep its fd until garbage collection.
@pytest.mark.parametrize("transport", ["unix", "ws"])
def test_close_releases_the_file_descriptor(sock_path: str, transport: str) -> None:
    """Like socket.socket.close(): once close() returns, the connection's fd is gone, even
    while the (closed) Socket object is still referenced."""
    endpoint = sock_path if transport == "unix" else "ws://127.0.0.1:0/fd"
    with ipcez.listen(endpoint) as listener:
        warm = ipcez.connect(listener.address)  # runtime fds exist before we count
        listener.accept(timeout=5).close()
        warm.close()
        del warm
        gc.collect()
        before = settled_fd_count()
        kept = []
        for _ in range(10):
            c = ipcez.connect(listener.address)
            p = listener.accept(timeout=5)
            c.close()
            p.close()
            kept += [c, p]
        held = settled_fd_count()  # a WebSocket close completes in the background
        del kept, c, p
        gc.collect()
        after = settled_fd_count()
    print(f"\n{transport}: fds {before}, 20 closed sockets still referenced {held}, dropped {after}")
    assert held == before, f"{held - before} fds held by 20 closed sockets"


def test_no_semaphore_outlives_its_listener(sock_path: str) -> None:
    """After traffic in both directions and a clean close (even with a client still
    connected), neither named semaphore is left in /dev/shm."""
    files = sem_files(sock_path)
    listener = ipcez.listen(sock_path)
    c = ipcez.connect(sock_path)
    p = listener.accept(timeout=5)
    for i in range(20):
        round_trip(c, p, b"%d" % i)
    assert all(os.path.exists(f) for f in files), "the semaphores exist while in use"
    p.close()
    listener.close()
    for f in files:
        assert not os.path.exists(f), f"{f} outlived its listener"
    c.close()  # clients never unlink and never recreate on close
    for f in files:
        assert not os.path.exists(f)


@slow
def test_bench_leaks_full_size() -> None:
    r = subprocess.run([sys.executable, str(BENCH / "leaks.py")], env=child_env(),
                       capture_output=True, text=True, timeout=3600)
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr


@slow
def test_bench_load_full_size() -> None:
    r = subprocess.run([sys.executable, str(BENCH / "load.py")], env=child_env(),
                       capture_output=True, text=True, timeout=3600)
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_receiver_that_exits_right_after_recv_has_acked(sock_path: str) -> None:
    """The ack goes out before the message can be taken: a child that receives one message
    and exits at once never leaves its sender without the ack."""
    child = """
    import os, sys
    import ipcez
    c = ipcez.connect(sys.argv[1])
    print("connected", flush=True)
    while True:  # takes the message the moment it can be taken, then exits
        try:
            c.recv(timeout=0)
            os._exit(0)
        except TimeoutError:
            pass
    """
    failures = []
    with ipcez.listen(sock_path) as listener:
        for i in range(50):
            proc = python_child(child, sock_path)
            try:
                wait_for_line(proc, "connected")
                peer = listener.accept(timeout=10)
                try:
                    peer.send(b"one")
                except ipcez.SocketError as e:
                    failures.append((i, repr(e)))
                finally:
                    peer.close()
                assert proc.wait(timeout=10) == 0, proc.stderr.read() if proc.stderr else ""
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)
    assert failures == []
