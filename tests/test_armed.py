"""Who reads a local connection: a thread blocked in ``recv`` reads the socket itself and
hands the reading back to the library's I/O thread when it returns. Whichever thread held
the role last, a message that arrives while nobody calls recv is still read and acked at
once, and two peers that both send and wait never wait on each other. A lost wake-up shows
as RecipientAckTimeout here.

Linux only (the I/O thread's one-shot readiness is Linux's)."""

from __future__ import annotations

import select
import sys
import threading
import time
from typing import Any, List

import pytest

import ipcez
from conftest import python_child, wait_for_line

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux readiness")


def run_all(jobs: List[threading.Thread], timeout: float) -> None:
    for t in jobs:
        t.start()
    for t in jobs:
        t.join(timeout)
    assert not any(t.is_alive() for t in jobs), "a send never returned"


def test_fresh_connections_send_both_ways_at_once(sock_path: str) -> None:
    """Each side sends (and waits for its ack) right after connecting, before the I/O
    thread may have waited on the socket even once."""
    with ipcez.listen(sock_path) as listener:
        for i in range(150):
            client = ipcez.connect(sock_path, ack_timeout=3.0)
            server = listener.accept(timeout=5)
            errors: List[BaseException] = []

            def send(sock: ipcez.Socket, msg: bytes) -> None:
                try:
                    sock.send(msg)
                except BaseException as e:  # noqa: BLE001 -- reported below
                    errors.append(e)

            run_all([threading.Thread(target=send, args=(client, b"c%d" % i)),
                     threading.Thread(target=send, args=(server, b"s%d" % i))], timeout=10)
            assert not errors, f"connection {i}: {errors}"
            assert server.recv(timeout=5) == b"c%d" % i
            assert client.recv(timeout=5) == b"s%d" % i
            client.close()
            server.close()


PEER = """
import sys, threading, ipcez
path, threads, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sock = ipcez.connect(path, ack_timeout=5.0)
print("connected", flush=True)
errors = []
def send(t):
    try:
        for k in range(count):
            sock.send(b"peer:%d:%d" % (t, k))
    except BaseException as e:
        errors.append(repr(e))
jobs = [threading.Thread(target=send, args=(t,)) for t in range(threads)]
for j in jobs: j.start()
for j in jobs: j.join(60)
print("sent", errors, flush=True)
got = [sock.recv(timeout=10) for _ in range(threads * count)]
print("received", len(got), flush=True)
sys.stdin.readline()
"""


def test_two_processes_send_and_wait_while_nobody_receives(sock_path: str) -> None:
    """Both peers send from several threads and wait for every ack before either receives:
    every message must be read and acked by whoever holds the reading role."""
    threads, count = 3, 200  # 600 a side: under the default queue of 1024
    with ipcez.listen(sock_path) as listener:
        peer = python_child(PEER, sock_path, str(threads), str(count), stdin=-1)
        try:
            wait_for_line(peer, "connected")
            sock = listener.accept(timeout=5)
            sock_errors: List[BaseException] = []

            def send(t: int) -> None:
                try:
                    for k in range(count):
                        sock.send(b"us:%d:%d" % (t, k))
                except BaseException as e:  # noqa: BLE001 -- reported below
                    sock_errors.append(e)

            run_all([threading.Thread(target=send, args=(t,)) for t in range(threads)], timeout=60)
            assert not sock_errors, sock_errors[:3]
            assert peer.stdout is not None
            line = peer.stdout.readline().strip()
            assert line == "sent []", line
            got = [sock.recv(timeout=10) for _ in range(threads * count)]
            for t in range(threads):  # each thread's messages in the order it sent them
                mine = [m for m in got if m.startswith(b"peer:%d:" % t)]
                assert mine == [b"peer:%d:%d" % (t, k) for k in range(count)]
            # Read directly (the two lines may come in one chunk); the watchdog bounds it.
            assert peer.stdout.readline().strip() == "received %d" % (threads * count)
            sock.close()
        finally:
            peer.kill()
            peer.communicate(timeout=10)


def test_a_sender_with_unread_messages_still_gets_its_peers_messages_acked(sock_path: str) -> None:
    """A sends without ever receiving, so its queue is never empty: the I/O thread must keep
    reading and acking B's messages beside A's sends."""
    count = 800  # B's messages: all fit A's queue (1024) beside the first
    with ipcez.listen(sock_path) as listener:
        b = ipcez.connect(sock_path, ack_timeout=3.0)
        a = listener.accept(timeout=5)
        b.send(b"unread")
        stop = threading.Event()
        errors: List[BaseException] = []

        def a_sends() -> None:
            try:
                while not stop.is_set():
                    a.send(b"a")
            except BaseException as e:  # noqa: BLE001 -- reported below
                errors.append(e)

        def b_drains() -> None:
            while not stop.is_set():
                try:
                    b.recv(timeout=0.05)
                except TimeoutError:
                    pass

        def b_sends() -> None:
            try:
                for k in range(count):
                    b.send(b"b%d" % k)
            except BaseException as e:  # noqa: BLE001 -- reported below
                errors.append(e)
            finally:
                stop.set()

        run_all([threading.Thread(target=f) for f in (a_sends, b_drains, b_sends)], timeout=60)
        assert not errors, errors[:3]
        got = [a.recv(timeout=5) for _ in range(count + 1)]
        assert got == [b"unread"] + [b"b%d" % k for k in range(count)]
        a.close()
        b.close()


IDLE = 4.0

# Reads one message itself (recv), sends one (its ack wait spins reading the socket), then
# does something else for IDLE seconds: the messages that come meanwhile must be acked.
BUSY_PEER = r"""
import sys, time, ipcez
with ipcez.listen(sys.argv[1]) as listener:
    print("ready", flush=True)
    sock = listener.accept(timeout=30)
    first = sock.recv(timeout=30)
    sock.send(b"reply to " + first)
    print("busy", flush=True)
    time.sleep(float(sys.argv[2]))
    while True:
        try:
            print(sock.recv(timeout=2).decode(), flush=True)
        except (TimeoutError, ipcez.ConnectionLost):
            break
"""


def test_messages_are_acked_while_the_peer_that_read_last_is_busy(sock_path: str) -> None:
    proc = python_child(BUSY_PEER, sock_path, str(IDLE))
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        with ipcez.connect(sock_path, ack_timeout=IDLE / 4) as sock:
            sock.send(b"first")
            assert sock.recv(timeout=10) == b"reply to first"
            assert proc.stdout.readline().strip() == "busy"
            started = time.monotonic()
            for i in range(20):
                # Raises RecipientAckTimeout if nobody reads while the peer is busy.
                sock.send(f"m{i}".encode())
            assert time.monotonic() - started < IDLE, "sent after the peer came back"
        out, _ = proc.communicate(timeout=30)
        assert out.split() == [f"m{i}" for i in range(20)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


# Sends COUNT messages while its main thread reads none, then takes all of the other side's.
BOTH_WAYS = r"""
import sys, threading, ipcez
count = int(sys.argv[2])
sock = ipcez.connect(sys.argv[1], ack_timeout=10)
t = threading.Thread(target=lambda: [sock.send(b"c%d" % i) for i in range(count)])
t.start()
got = [sock.recv(timeout=20) for _ in range(count)]
t.join()
assert got == [b"s%d" % i for i in range(count)], got[:5]
print("ok", flush=True)
sock.close()
"""


def test_both_sides_sending_at_once_never_wait_on_each_other(sock_path: str) -> None:
    count = 3000
    with ipcez.listen(sock_path) as listener:
        proc = python_child(BOTH_WAYS, sock_path, str(count))
        try:
            with listener.accept(timeout=10) as sock:
                sent: "list[BaseException]" = []

                def send_all() -> None:
                    try:
                        for i in range(count):
                            sock.send(b"s%d" % i)
                    except BaseException as exc:  # noqa: BLE001 - reported below
                        sent.append(exc)

                t = threading.Thread(target=send_all)
                t.start()
                got = [sock.recv(timeout=20) for _ in range(count)]
                t.join(timeout=30)
                assert not t.is_alive() and not sent, sent
                assert got == [b"c%d" % i for i in range(count)]
            out, err = proc.communicate(timeout=30)
            assert out.strip() == "ok", err[-2000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)


def test_a_websocket_is_read_by_the_library_after_a_blocked_recv_returned() -> None:
    """The same hand-back on a WebSocket, with the `websockets` package as the peer: after
    a recv read the socket itself, messages that come while nobody calls recv are read into
    the socket's queue by the library (its ``fileno`` turns readable) without any call."""
    websockets_sync = pytest.importorskip("websockets.sync.server")
    go = threading.Event()

    def handler(conn: Any) -> None:
        conn.send(b"first")
        go.wait(10)
        for i in range(20):
            conn.send(f"m{i}".encode())
        conn.recv()  # until the client closes

    server = websockets_sync.serve(handler, "127.0.0.1", 0, compression=None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.socket.getsockname()[1]
        with ipcez.connect(f"ws://127.0.0.1:{port}/") as sock:
            assert sock.recv(timeout=10) == b"first"
            go.set()
            readable, _, _ = select.select([sock.fileno()], [], [], 5)
            assert readable, "nothing was read while nobody called recv"
            deadline = time.monotonic() + 5
            got: List[bytes] = []
            while len(got) < 20 and time.monotonic() < deadline:
                select.select([sock.fileno()], [], [], 1)
                while True:
                    try:
                        got.append(sock.recv(timeout=0))
                    except TimeoutError:
                        break
            assert got == [f"m{i}".encode() for i in range(20)]
    finally:
        server.shutdown()
