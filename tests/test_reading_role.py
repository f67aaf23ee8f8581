"""Who reads a local connection: a thread blocked in ``recv`` or spinning in ``send`` for its
ack reads the socket itself, and hands the reading back to the library's own thread when it
returns. Whatever thread read last, a message that arrives while the application is busy
elsewhere is still read and acknowledged at once, and nothing is lost or reordered."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

import ipcez

from conftest import python_child

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="direct reads are Unix-only")

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
