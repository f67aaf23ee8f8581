"""Acks you can trust: between ipcez endpoints an ack comes on a channel private to the
connection, so forged, stale or crossed tokens in the shared semaphores can neither give nor
take nor delay it; custom peers (a C program built here from the documented protocol) keep
the shared semaphores in both directions; and other users cannot squat the names or reach a
socket whose mode says they must not."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

import ipcez

from conftest import child_env, pause, run_python

posix_ipc = pytest.importorskip("posix_ipc", reason="pip install posix_ipc (Linux only)")

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Unix sockets, POSIX semaphores, /dev/shm")

FORGED = 10_000

# An ipcez listener in its own process (so the test can stop it): prints "ready", then
# one line per message it takes, in order.
LISTENER = r"""
import sys, ipcez
path = sys.argv[1]
with ipcez.listen(path, ack_timeout=float(sys.argv[2])) as listener:
    print("ready", flush=True)
    sock = listener.accept(timeout=30)
    while True:
        try:
            msg = sock.recv(timeout=30)
        except (ipcez.ConnectionLost, TimeoutError):
            break
        print(msg.decode(), flush=True)
"""


def start(code: str, *args: str) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )


def read_line(proc: "subprocess.Popen[str]") -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line, f"the child ended early (exit {proc.poll()})"
    return line


def stop(proc: "subprocess.Popen[str]") -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
    proc.wait(timeout=10)


def send_counting(sock: ipcez.Socket, payloads: List[bytes]) -> Tuple[int, int]:
    """(acked, timed out) for sending each payload."""
    acked = timed_out = 0
    for p in payloads:
        try:
            sock.send(p)
            acked += 1
        except ipcez.RecipientAckTimeout:
            timed_out += 1
    return acked, timed_out


def forge(names: Tuple[str, str], n: int = FORGED) -> "posix_ipc.Semaphore":
    """What any process of the same user can do: post `n` data_acked tokens."""
    acked = posix_ipc.Semaphore(names[1])
    for _ in range(n):
        acked.release()
    return acked


# -- private acks between ipcez endpoints -----------------------------------------------


def test_a_forged_flood_cannot_ack_a_stopped_listener(sock_path: str) -> None:
    child = start(LISTENER, sock_path, "5")
    try:
        assert read_line(child) == "ready"
        acked = forge(ipcez.ack_names(sock_path))
        with ipcez.connect(sock_path, ack_timeout=0.3) as client:
            # Stopped before it read anything: the first frames cannot be acked by anyone.
            pause(child.pid)
            assert send_counting(client, [b"early-%d" % i for i in range(5)]) == (0, 5)
            os.kill(child.pid, signal.SIGCONT)
            # Reading again: every send is acked once read, and only then.
            for i in range(5):
                assert read_line(child) == "early-%d" % i
            for i in range(50):
                client.send(b"live-%d" % i)
                assert read_line(child) == "live-%d" % i
            # Stopped again, now that the connection is known to be private.
            pause(child.pid)
            assert send_counting(client, [b"late-%d" % i for i in range(5)]) == (0, 5)
            os.kill(child.pid, signal.SIGCONT)
            for i in range(5):
                assert read_line(child) == "late-%d" % i
        assert acked.value == FORGED, "ipcez endpoints never took a shared token"
        acked.close()
    finally:
        stop(child)


# A client in its own process: says who it is, then echoes until it gets b"bye".
ECHO_CLIENT = r"""
import sys, ipcez
with ipcez.connect(sys.argv[1], ack_timeout=5) as sock:
    sock.send(sys.argv[2].encode())
    print("hello sent", flush=True)
    while True:
        msg = sock.recv(timeout=30)
        if msg == b"bye":
            break
        sock.send(msg)
    print("done", flush=True)
"""


def test_a_stalled_client_beside_a_busy_one(sock_path: str) -> None:
    """0 false acks towards the stalled client and 0 false timeouts towards the busy one,
    with a forged flood in the shared semaphore on top."""
    with ipcez.listen(sock_path, ack_timeout=0.5) as listener:
        busy = start(ECHO_CLIENT, sock_path, "busy")
        stalled = start(ECHO_CLIENT, sock_path, "stalled")
        try:
            peers = {}
            for _ in range(2):
                s = listener.accept(timeout=10)
                peers[s.recv(timeout=10)] = s
            assert read_line(stalled) == "hello sent"
            pause(stalled.pid)
            acked = forge(ipcez.ack_names(sock_path))
            false_acks: List[int] = []
            t = threading.Thread(
                target=lambda: false_acks.append(send_counting(peers[b"stalled"], [b"x"] * 8)[0])
            )
            t.start()
            false_timeouts = 0
            for i in range(300):
                msg = b"m%d" % i
                try:
                    peers[b"busy"].send(msg)
                except ipcez.RecipientAckTimeout:
                    false_timeouts += 1
                assert peers[b"busy"].recv(timeout=5) == msg
            t.join(timeout=30)
            assert false_acks == [0]
            assert false_timeouts == 0
            peers[b"busy"].send(b"bye")
            assert read_line(busy) == "hello sent"
            assert read_line(busy) == "done"
            assert acked.value == FORGED
            acked.close()
        finally:
            stop(busy)
            stop(stalled)


def test_every_spelling_of_the_path_is_acked(short_dir: Path) -> None:
    """A symlinked directory, ``..`` and a symlink to the socket file: clients on each
    spelling send and receive without a single ack timeout."""
    real = short_dir / "real"
    real.mkdir()
    (short_dir / "sub").mkdir()
    os.symlink(real, short_dir / "linkdir")
    path = str(real / "app.sock")
    with ipcez.listen(path, ack_timeout=2) as listener:
        os.symlink(path, short_dir / "file-link.sock")
        spellings = [
            str(short_dir / "linkdir" / "app.sock"),
            str(short_dir / "sub" / ".." / "real" / "app.sock"),
            str(short_dir / "file-link.sock"),
        ]
        for spelling in spellings:
            assert ipcez.ack_names(spelling) == ipcez.ack_names(path)
            with ipcez.connect(spelling, ack_timeout=2) as client:
                peer = listener.accept(timeout=5)
                for i in range(20):
                    client.send(b"%d" % i)
                    assert peer.recv(timeout=5) == b"%d" % i
                    peer.send(b"r%d" % i)
                    assert client.recv(timeout=5) == b"r%d" % i
                peer.close()


# -- custom peers: a C program that speaks the documented protocol ----------------------

# Also the custom peer of the Node binding's interop tests (node/test/).
C_PEER = (Path(__file__).parent / "custom_peer.c").read_text()

ROUNDS = 20


@pytest.fixture(scope="module")
def c_peer(tmp_path_factory: pytest.TempPathFactory) -> str:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    d = tmp_path_factory.mktemp("cpeer")
    src = d / "peer.c"
    src.write_text(C_PEER)
    exe = d / "peer"
    subprocess.run(["gcc", "-O1", "-Wall", "-Werror", "-pthread", "-o", str(exe), str(src)], check=True)
    assert len([line for line in C_PEER.splitlines() if line.strip()]) < 80
    return str(exe)


def test_c_custom_listener_with_an_ipcez_client(c_peer: str, short_dir: Path) -> None:
    path = str(short_dir / "c.sock")
    ready, acked = ipcez.ack_names(path)
    peer = subprocess.Popen([c_peer, "listen", path, ready, acked, str(ROUNDS)], stdout=subprocess.PIPE, text=True)
    try:
        assert read_line(peer) == "ready"  # type: ignore[arg-type]
        with ipcez.connect(path, ack_timeout=5) as client:
            for i in range(ROUNDS):
                client.send(b"c" * (1 << 20) if i == 0 else b"c%d" % i)
            for i in range(ROUNDS):
                assert client.recv(timeout=5) == b"l%d" % i
        out, _ = peer.communicate(timeout=10)
        assert peer.returncode == 0, out
        assert out.split("\n")[:2] == [f"got {1 << 20}", "got 2"]
        assert out.strip().endswith("ok")
    finally:
        if peer.poll() is None:
            peer.kill()


@pytest.mark.parametrize("spelling", ["direct", "symlinked-dir"])
def test_c_custom_client_with_an_ipcez_listener(c_peer: str, short_dir: Path, spelling: str) -> None:
    real = short_dir / "real"
    real.mkdir()
    path = str(real / "l.sock")
    os.symlink(real, short_dir / "linkdir")
    dial = path if spelling == "direct" else str(short_dir / "linkdir" / "l.sock")
    with ipcez.listen(path, ack_timeout=5) as listener:
        ready, acked = ipcez.ack_names(dial)
        peer = subprocess.Popen([c_peer, "connect", dial, ready, acked, str(ROUNDS)], stdout=subprocess.PIPE, text=True)
        try:
            sock = listener.accept(timeout=10)
            assert sock.recv(timeout=5) == b"c" * (1 << 20)
            for i in range(1, ROUNDS):
                assert sock.recv(timeout=5) == b"c%d" % i
            for i in range(ROUNDS):
                sock.send(b"l%d" % i)  # acked by the C peer's sem_post
            out, _ = peer.communicate(timeout=10)
            assert peer.returncode == 0, out
            assert out.split() == [w for i in range(ROUNDS) for w in ("got", "l%d" % i)] + ["ok"]
        finally:
            if peer.poll() is None:
                peer.kill()


def test_a_mixed_listener_keeps_the_ipcez_connections_exact(c_peer: str, sock_path: str) -> None:
    """ipcez clients (one of them stalled) and a custom C client on one listener: the custom
    client's tokens in the shared semaphores ack nothing of the ipcez connections."""
    with ipcez.listen(sock_path, ack_timeout=0.5) as listener:
        busy = start(ECHO_CLIENT, sock_path, "busy")
        stalled = start(ECHO_CLIENT, sock_path, "stalled")
        ready, acked = ipcez.ack_names(sock_path)
        custom = subprocess.Popen(
            [c_peer, "connect", sock_path, ready, acked, str(ROUNDS)], stdout=subprocess.PIPE, text=True
        )
        try:
            peers = {}
            for _ in range(3):
                s = listener.accept(timeout=10)
                first = s.recv(timeout=10)
                peers[first if first in (b"busy", b"stalled") else b"custom"] = s
            assert read_line(stalled) == "hello sent"
            pause(stalled.pid)
            false_acks: List[int] = []
            t = threading.Thread(
                target=lambda: false_acks.append(send_counting(peers[b"stalled"], [b"x"] * 6)[0])
            )
            t.start()
            for i in range(1, ROUNDS):
                assert peers[b"custom"].recv(timeout=5) == b"c%d" % i
            for i in range(ROUNDS):
                peers[b"custom"].send(b"l%d" % i)
                peers[b"busy"].send(b"m%d" % i)
                assert peers[b"busy"].recv(timeout=5) == b"m%d" % i
            t.join(timeout=30)
            assert false_acks == [0]
            out, _ = custom.communicate(timeout=10)
            assert custom.returncode == 0 and out.strip().endswith("ok"), out
            peers[b"busy"].send(b"bye")
        finally:
            for p in (busy, stalled):
                stop(p)
            if custom.poll() is None:
                custom.kill()


def test_a_connection_keeps_no_descriptor_beyond_its_socket(sock_path: str) -> None:
    """The private channel's descriptors are closed once both sides know each other, so a
    listener with many connections needs no more descriptors than it did with shared acks."""
    pairs = []
    with ipcez.listen(sock_path) as listener:
        warm = ipcez.connect(sock_path)  # the runtime and its threads exist before counting
        pairs.append((warm, listener.accept(timeout=5)))
        base = len(os.listdir("/proc/self/fd"))
        for i in range(20):
            client = ipcez.connect(sock_path)
            server = listener.accept(timeout=5)
            client.send(b"x%d" % i)
            assert server.recv(timeout=5) == b"x%d" % i
            server.send(b"y%d" % i)
            assert client.recv(timeout=5) == b"y%d" % i
            pairs.append((client, server))
        grown = len(os.listdir("/proc/self/fd")) - base
        assert grown <= 2 * 20, f"{grown} descriptors for 20 connections (two sockets each)"
        for client, server in pairs:
            client.close()
            server.close()


def test_close_leaves_a_newer_listeners_socket_and_semaphores_alone(sock_path: str) -> None:
    """Listener A's file is removed by someone, B listens on the same path; A's close must
    remove neither B's socket file nor B's semaphores."""
    a = ipcez.listen(sock_path)
    os.unlink(sock_path)
    names = ["/dev/shm/sem." + n.lstrip("/") for n in ipcez.ack_names(sock_path)]
    with ipcez.listen(sock_path) as b:
        inodes = [os.stat(p).st_ino for p in [sock_path] + names]
        a.close()
        assert [os.stat(p).st_ino for p in [sock_path] + names] == inodes
        with ipcez.connect(sock_path) as client:
            client.send(b"still b's")
            assert b.accept(timeout=5).recv(timeout=5) == b"still b's"
    assert not any(os.path.exists(p) for p in [sock_path] + names)


NESTED_PEER = """
import sys, threading, ipcez
listener = ipcez.listen(sys.argv[1])
print("ready", flush=True)
def serve(c):
    while True:
        c.recv()
for _ in range(2):
    threading.Thread(target=serve, args=(listener.accept(),), daemon=True).start()
threading.Event().wait()
"""

NESTED_SENDER = """
import os, signal, subprocess, sys, threading, time
import ipcez
path, peer_code = sys.argv[1], sys.argv[2]
peer = subprocess.Popen([sys.executable, "-c", peer_code, path], stdout=subprocess.PIPE, text=True)
try:
    assert peer.stdout.readline().strip() == "ready"
    s1, s2 = ipcez.connect(path), ipcez.connect(path)
    s1.send(b"warm")
    s2.send(b"warm")
    inner = []
    def on_alarm(signum, frame):
        s2.send(b"inner")
        inner.append("inner sent")
    signal.signal(signal.SIGALRM, on_alarm)
    os.kill(peer.pid, signal.SIGSTOP)
    while not all(open(f"/proc/{peer.pid}/task/{t}/stat").read().rsplit(")", 1)[1].split()[0] in "tT"
                  for t in os.listdir(f"/proc/{peer.pid}/task")):
        time.sleep(0.001)
    threading.Timer(0.6, os.kill, (peer.pid, signal.SIGCONT)).start()
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    s1.send(b"outer")
    print("outer sent", inner)
finally:
    os.kill(peer.pid, signal.SIGCONT)
    peer.kill()
    peer.wait()
"""


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs SIGALRM")
def test_a_send_from_a_signal_handler_leaves_the_outer_send_whole(sock_path: str) -> None:
    """A signal handler that sends on another socket while a send on this thread awaits its
    ack: both sends succeed."""
    out = run_python(NESTED_SENDER, sock_path, textwrap.dedent(NESTED_PEER), timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "outer sent ['inner sent']", (out.stdout, out.stderr)
