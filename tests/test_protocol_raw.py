"""The local wire protocol, proven against a peer that does not use ipcez at all:
``socket`` + ``struct`` for frames (4-byte big-endian length, then the payload) and
``posix_ipc`` for the two named semaphores whose names ``ipcez.ack_names`` gives.
Both directions, the ack rules, RecipientAckTimeout, and a peer
that announces an oversized frame."""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys
import threading
import time
from typing import Callable, Iterator, List, Tuple

import pytest

import ipcez

import posix_ipc  # noqa: E402  (requirements-dev.txt; conftest checks it is installed)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="POSIX semaphores / Unix sockets")

MIB4 = 4 * 1024 * 1024


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = conn.recv(min(n, 1 << 20))
        if not chunk:
            raise ConnectionError("peer closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(conn: socket.socket) -> bytes:
    (n,) = struct.unpack(">I", _recv_exact(conn, 4))
    return _recv_exact(conn, n)


def write_frame(conn: socket.socket, payload: bytes) -> None:
    conn.sendall(struct.pack(">I", len(payload)) + payload)


class Sems:
    """The endpoint's data_ready / data_acked semaphores, opened (or created) like a peer would."""

    def __init__(self, path: str) -> None:
        self.names = ipcez.ack_names(path)
        self.ready = posix_ipc.Semaphore(self.names[0], posix_ipc.O_CREAT, 0o600, 0)
        self.acked = posix_ipc.Semaphore(self.names[1], posix_ipc.O_CREAT, 0o600, 0)

    def close(self) -> None:
        self.ready.close()
        self.acked.close()

    @staticmethod
    def unlink_names(names: Tuple[str, str]) -> None:
        for name in names:
            try:
                posix_ipc.unlink_semaphore(name)
            except posix_ipc.ExistentialError:
                pass


@pytest.fixture
def sems(sock_path: str) -> Iterator[Callable[[], Sems]]:
    """Opens the endpoint's semaphores on demand -- after ipcez.listen, which starts the
    endpoint from fresh names -- and unlinks them at the end (for raw listeners)."""
    opened: List[Sems] = []

    def open_sems() -> Sems:
        s = Sems(sock_path)
        opened.append(s)
        return s

    try:
        yield open_sems
    finally:
        for s in opened:
            s.close()
        Sems.unlink_names(ipcez.ack_names(sock_path))


# -- a raw client talking to an ipcez listener ------------------------------------


def test_raw_client_to_ipcez_listener(sock_path: str, sems: Callable[[], Sems]) -> None:
    with ipcez.listen(sock_path) as listener:
        sem = sems()
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.connect(sock_path)
        peer = listener.accept(timeout=5)
        payloads = [b"", b"hello", bytes(range(256)) * 100, b"x" * MIB4]
        payloads += [b"small %d" % i for i in range(100)]
        for p in payloads:
            write_frame(raw, p)
            sem.ready.release()  # data_ready after writing
            sem.acked.acquire(5)  # ipcez's reader acks each whole message it read
        for p in payloads:
            assert peer.recv(timeout=5) == p
        # The reader takes one data_ready token per message (try-wait, so a token posted
        # just after it looked is taken with the next message): the count stays bounded.
        time.sleep(0.05)
        assert sem.ready.value <= 1, f"data_ready grew to {sem.ready.value}"
        assert sem.acked.value == 0, "exactly one data_acked per message"
        while True:  # drain the possible leftover so the next check means something
            try:
                sem.ready.acquire(0)
            except posix_ipc.BusyError:
                break

        # ipcez -> raw: the frame arrives on the wire, data_ready is posted,
        # and send() returns only once the raw peer posts data_acked.
        done = threading.Event()
        errors: List[BaseException] = []

        def send() -> None:
            try:
                peer.send(b"from ipcez")
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
            done.set()

        t = threading.Thread(target=send)
        t.start()
        raw.settimeout(5)
        assert read_frame(raw) == b"from ipcez"
        sem.ready.acquire(5)  # ipcez posted data_ready after writing
        time.sleep(0.2)
        assert not done.is_set(), "send() must wait for data_acked"
        sem.acked.release()
        assert done.wait(5)
        t.join()
        assert not errors, errors
        raw.close()
        peer.close()


def test_raw_listener_with_ipcez_client(sock_path: str, sems: Callable[[], Sems]) -> None:
    sem = sems()  # a raw listener owns the names: it creates them
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(1)
    server.settimeout(5)
    client = ipcez.connect(sock_path)
    conn, _ = server.accept()
    conn.settimeout(5)
    received: List[bytes] = []

    def raw_peer() -> None:
        for _ in range(3):
            received.append(read_frame(conn))
            sem.ready.acquire(5)
            sem.acked.release()

    t = threading.Thread(target=raw_peer)
    t.start()
    for m in (b"a", b"", b"c" * 70000):
        client.send(m)  # returns only after the raw peer acked
    t.join(5)
    assert received == [b"a", b"", b"c" * 70000]

    # raw -> ipcez
    write_frame(conn, b"reply")
    sem.ready.release()
    sem.acked.acquire(5)
    assert client.recv(timeout=5) == b"reply"
    client.close()
    conn.close()
    server.close()


def test_recipient_ack_timeout_against_peer_that_never_acks(sock_path: str, sems: Callable[[], Sems]) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(1)
    client = ipcez.connect(sock_path, ack_timeout=0.3)
    conn, _ = server.accept()
    t0 = time.monotonic()
    with pytest.raises(ipcez.RecipientAckTimeout) as info:
        client.send(b"nobody acks this")
    elapsed = time.monotonic() - t0
    assert 0.25 <= elapsed < 2, elapsed
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, ipcez.SocketError)
    conn.settimeout(5)
    assert read_frame(conn) == b"nobody acks this", "the frame itself was written"
    client.close()
    conn.close()
    server.close()


def test_oversized_announcement_is_one_error_then_close(sock_path: str, sems: Callable[[], Sems]) -> None:
    with ipcez.listen(sock_path) as listener:
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.connect(sock_path)
        peer = listener.accept(timeout=5)
        raw.sendall(struct.pack(">I", MIB4 + 1) + b"abc")  # announces 4 MiB + 1
        with pytest.raises(ipcez.IoError) as info:
            peer.recv(timeout=5)
        assert "4194305" in str(info.value) or "4 MiB" in str(info.value), str(info.value)
        # then the connection is closed: the raw side sees EOF
        raw.settimeout(5)
        assert raw.recv(1) == b""
        with pytest.raises(ipcez.ConnectionLost):
            peer.recv(timeout=2)
        raw.close()
        peer.close()


@pytest.mark.parametrize("taker", ["recv", "background"])
def test_whole_frames_before_a_bad_one_are_acked(sock_path: str, sems: Callable[[], Sems], taker: str) -> None:
    """A whole message and a bad announcement in one write: the message is delivered and
    acked, then the error ends the connection."""
    with ipcez.listen(sock_path) as listener:
        sem = sems()
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.connect(sock_path)
        peer = listener.accept(timeout=5)
        if taker == "recv":  # a thread waiting in recv reads the socket itself
            got: List[bytes] = []
            t = threading.Thread(target=lambda: got.append(peer.recv(timeout=5)))
            t.start()
            time.sleep(0.1)
        raw.sendall(struct.pack(">I", 5) + b"whole" + struct.pack(">I", 0xFFFFFFFF))
        sem.ready.release()
        sem.acked.acquire(5)  # posix_ipc.BusyError when the ack never comes
        if taker == "recv":
            t.join(timeout=10)
            assert got == [b"whole"]
        else:
            assert peer.recv(timeout=5) == b"whole"
        with pytest.raises(ipcez.IoError):
            peer.recv(timeout=5)
        raw.close()
        peer.close()


def test_oversized_announcement_reported_as_invalid_data(sock_path: str, sems: Callable[[], Sems]) -> None:
    with ipcez.listen(sock_path) as listener:
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.connect(sock_path)
        peer = listener.accept(timeout=5)
        raw.sendall(struct.pack(">I", 0xFFFFFFFF))
        with pytest.raises(ipcez.IoError) as info:
            peer.recv(timeout=5)
        assert not isinstance(info.value, ipcez.ConnectionLost), "an InvalidData Io error"
        assert info.value.errno in (None, 0, errno.EINVAL, errno.EPROTO, errno.EBADMSG), info.value
        raw.close()
        peer.close()


def test_listener_unlinks_semaphores_on_close(sock_path: str) -> None:
    names = ipcez.ack_names(sock_path)
    listener = ipcez.listen(sock_path)
    c = ipcez.connect(sock_path)
    p = listener.accept(timeout=5)
    c.send(b"make sure the semaphores exist")
    assert p.recv(timeout=5)
    for name in names:
        s = posix_ipc.Semaphore(name)  # exists now
        s.close()
    c.close()
    p.close()
    listener.close()
    for name in names:
        with pytest.raises(posix_ipc.ExistentialError):
            posix_ipc.Semaphore(name)


def test_semaphores_are_mode_0600(sock_path: str) -> None:
    names = ipcez.ack_names(sock_path)
    with ipcez.listen(sock_path) as listener, ipcez.connect(sock_path) as c:
        p = listener.accept(timeout=5)
        c.send(b"x")
        p.recv(timeout=5)
        for name in names:
            st = os.stat("/dev/shm/sem." + name.lstrip("/"))
            assert st.st_mode & 0o777 == 0o600, oct(st.st_mode)
        p.close()


def test_client_never_unlinks(sock_path: str, sems: Callable[[], Sems]) -> None:
    sem = sems()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(1)
    c = ipcez.connect(sock_path)
    conn, _ = server.accept()
    c.close()
    time.sleep(0.1)
    for name in sem.names:
        posix_ipc.Semaphore(name).close()  # still there
    conn.close()
    server.close()
