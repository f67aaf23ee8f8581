"""fileno() readiness, recv_into() and send_many(), with real peers where a peer matters."""

from __future__ import annotations

import selectors
import socket
import struct
import sys
import threading
import time
from multiprocessing.connection import wait as mp_wait
from typing import List, Tuple

import pytest

import ipcez

from conftest import run_python

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fileno is Unix only")

MIB4 = 4 * 1024 * 1024


def readable(fd: int, timeout: float = 0.0) -> bool:
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        return bool(sel.select(timeout))


# -- fileno ---------------------------------------------------------------------------


def test_socket_fileno_with_selectors(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, server = pair
    fd = server.fileno()
    assert fd >= 0 and server.fileno() == fd
    with selectors.DefaultSelector() as sel:
        sel.register(server, selectors.EVENT_READ, "server")
        assert sel.select(0.05) == [], "nothing sent yet"
        client.send(b"one")
        client.send(b"two")
        events = sel.select(5)
        assert [key.data for key, _ in events] == ["server"]
        assert server.recv(timeout=0) == b"one"
        assert sel.select(0) != [], "a second message still waits"
        assert server.recv(timeout=0) == b"two"
        assert sel.select(0.05) == [], "drained: nothing waits"
        with pytest.raises(TimeoutError):
            server.recv(timeout=0)


def test_fileno_becomes_readable_when_the_peer_goes(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, server = pair
    fd = server.fileno()
    client.close()
    assert readable(fd, 5), "the end of the connection is readable too"
    with pytest.raises(ipcez.ConnectionLost):
        server.recv(timeout=0)


def test_fileno_is_minus_one_after_close(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, _ = pair
    assert client.fileno() >= 0
    client.close()
    assert client.fileno() == -1


def test_multiprocessing_wait_picks_the_ready_sockets(sock_path: str) -> None:
    with ipcez.listen(sock_path) as listener:
        clients = [ipcez.connect(sock_path) for _ in range(3)]
        servers = [listener.accept(timeout=5) for _ in clients]
        try:
            assert mp_wait(servers, timeout=0.05) == []
            clients[1].send(b"b")
            assert mp_wait(servers, timeout=5) == [servers[1]]
            assert servers[1].recv(timeout=0) == b"b"
            clients[0].send(b"a")
            clients[2].send(b"c")
            deadline = time.monotonic() + 5
            ready: List[ipcez.Socket] = []
            while len(ready) < 2 and time.monotonic() < deadline:
                ready = mp_wait(servers, timeout=1)  # type: ignore[assignment]
            assert sorted(servers.index(s) for s in ready) == [0, 2]
        finally:
            for s in clients + servers:
                s.close()


def test_a_message_taken_by_a_blocked_recv_leaves_fileno_quiet(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, server = pair
    fd = server.fileno()
    got: List[bytes] = []
    t = threading.Thread(target=lambda: got.append(server.recv(timeout=5)))
    t.start()
    time.sleep(0.05)  # the thread is blocked in recv, reading the socket itself
    client.send(b"direct")
    t.join(5)
    assert got == [b"direct"]
    assert not readable(fd, 0.05), "nothing is left waiting"


def test_fileno_on_websocket() -> None:
    with ipcez.listen("ws://127.0.0.1:0/r") as listener:
        with ipcez.connect(listener.address) as client:
            server = listener.accept(timeout=5)
            fd = client.fileno()
            assert not readable(fd, 0.05)
            server.send(b"over ws")
            assert readable(fd, 5)
            assert client.recv(timeout=0) == b"over ws"
            assert not readable(fd, 0.05)
            server.close()


def test_listener_fileno(sock_path: str) -> None:
    with ipcez.listen(sock_path) as listener:
        with selectors.DefaultSelector() as sel:
            sel.register(listener, selectors.EVENT_READ)
            assert sel.select(0.05) == []
            with pytest.raises(TimeoutError):
                listener.accept(timeout=0)
            client = ipcez.connect(sock_path)
            assert sel.select(5), "a pending connection makes it readable"
            server = listener.accept(timeout=0)
            assert sel.select(0.05) == [], "taken: nothing pending"
            client.send(b"works")
            assert server.recv(timeout=5) == b"works"
            listener.close()
            assert listener.fileno() == -1
            client.close()
            server.close()


# -- recv_into --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 100, MIB4])
def test_recv_into_exact_fit(pair: Tuple[ipcez.Socket, ipcez.Socket], size: int) -> None:
    client, server = pair
    payload = bytes(i % 251 for i in range(size)) if size < 1000 else b"\x5a" * size
    client.send(payload)
    buf = bytearray(size)
    assert server.recv_into(buf, timeout=5) == size
    assert buf == payload


def test_recv_into_larger_buffer_and_memoryview(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, server = pair
    client.send(b"abc")
    buf = bytearray(b"." * 10)
    assert server.recv_into(memoryview(buf)[2:], timeout=5) == 3
    assert buf == b"..abc....."


def test_recv_into_too_small_keeps_the_message(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, server = pair
    client.send(b"0123456789")
    client.send(b"next")
    small = bytearray(4)
    with pytest.raises(ValueError, match="10 bytes"):
        server.recv_into(small, timeout=5)
    assert small == bytearray(4), "nothing written"
    with pytest.raises(ValueError):
        server.recv_into(bytearray(0), timeout=5)
    big = bytearray(10)
    assert server.recv_into(big, timeout=5) == 10 and big == b"0123456789"
    assert server.recv(timeout=5) == b"next"


def test_recv_into_too_small_then_plain_recv(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, server = pair
    client.send(b"x" * MIB4)
    with pytest.raises(ValueError):
        server.recv_into(bytearray(MIB4 - 1), timeout=5)
    assert server.recv(timeout=5) == b"x" * MIB4


def test_recv_into_refuses_read_only_buffers(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    _, server = pair
    with pytest.raises(TypeError, match="writable"):
        server.recv_into(b"immutable", timeout=0)
    with pytest.raises(TypeError):
        server.recv_into("text", timeout=0)  # type: ignore[arg-type]


def test_recv_into_times_out_and_fails_after_close(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, server = pair
    with pytest.raises(TimeoutError):
        server.recv_into(bytearray(8), timeout=0.05)
    client.close()
    with pytest.raises(ipcez.ConnectionLost):
        server.recv_into(bytearray(8), timeout=5)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts page faults with getrusage (Linux)")
def test_large_receives_reuse_memory(sock_path: str) -> None:
    # Each 1 MiB message received into a new `bytes` used to fault a fresh 1 MiB of memory
    # in (185-440 page faults per message): the library's buffer, freed beside the copy,
    # made glibc give its heap top back. Buffers are reused now. Counted in a fresh
    # process, where no other test shapes the heap.
    code = """
        import resource, sys, threading, ipcez
        path = sys.argv[1]
        msg = bytes(range(256)) * 4096  # 1 MiB
        with ipcez.listen(path) as lst:
            client = ipcez.connect(path)
            server = lst.accept(timeout=5)
            sender = threading.Thread(target=lambda: [client.send(msg) for _ in range(80)])
            sender.start()
            for _ in range(20):  # warm up
                assert server.recv(timeout=10) == msg
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(60):
                server.recv(timeout=10)
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
            sender.join(10)
            print(faults / 60)
    """
    r = run_python(code, sock_path, timeout=60)
    assert r.returncode == 0, r.stderr
    per_message = float(r.stdout.split()[-1])
    assert per_message < 64, f"{per_message:.0f} page faults per 1 MiB message received"


# -- send_many --------------------------------------------------------------------------


def test_send_many_between_ipcez_peers(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, server = pair
    messages = [b"m%d" % i for i in range(3000)] + [b"", bytearray(b"ba"), memoryview(b"mv")]
    got: List[bytes] = []
    t = threading.Thread(target=lambda: got.extend(server.recv(timeout=5) for _ in messages))
    t.start()
    client.send_many(messages)
    t.join(10)
    assert got == [bytes(m) for m in messages]


def test_send_many_refuses_an_oversized_message_before_writing(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, server = pair
    messages = [b"a"] * 600 + [b"x" * (MIB4 + 1)]
    with pytest.raises(ipcez.MessageTooLarge):
        client.send_many(messages)
    with pytest.raises(TimeoutError):
        server.recv(timeout=0.1)
    client.send_many([])
    client.send(b"still usable")
    assert server.recv(timeout=5) == b"still usable"
    with pytest.raises(TypeError):
        client.send_many([b"ok", 42])  # type: ignore[list-item]


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = conn.recv(min(n, 1 << 20))
        if not chunk:
            raise ConnectionError("peer closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


@pytest.mark.skipif(sys.platform != "linux", reason="POSIX semaphores")
@pytest.mark.parametrize("acks", ["all", "short"])
def test_send_many_to_a_custom_peer(sock_path: str, acks: str) -> None:
    """A plain-socket peer written from the README's protocol: it reads ordinary frames,
    takes one data_ready and posts one data_acked per message. send_many returns only
    after the last ack; a peer that acks one too few gives RecipientAckTimeout."""
    posix_ipc = pytest.importorskip("posix_ipc", reason="pip install posix_ipc (Linux only)")
    names = ipcez.ack_names(sock_path)
    ready = posix_ipc.Semaphore(names[0], posix_ipc.O_CREAT, 0o600, 0)
    acked = posix_ipc.Semaphore(names[1], posix_ipc.O_CREAT, 0o600, 0)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(1)
    messages = [b"msg %d" % i for i in range(700)] + [b"y" * 100_000]
    received: List[bytes] = []
    last_ack = threading.Event()
    try:
        client = ipcez.connect(sock_path, ack_timeout=1.0)
        conn, _ = server.accept()
        conn.settimeout(5)

        def peer() -> None:
            for i in range(len(messages)):
                (n,) = struct.unpack(">I", _recv_exact(conn, 4))
                received.append(_recv_exact(conn, n))
                try:
                    ready.acquire(0)
                except posix_ipc.BusyError:
                    pass  # posted just after we looked; the count stays bounded anyway
                if acks == "short" and i == len(messages) - 1:
                    break
                if i == len(messages) - 1:
                    time.sleep(0.2)
                    last_ack.set()
                acked.release()

        t = threading.Thread(target=peer)
        t.start()
        if acks == "all":
            client.send_many(messages)
            assert last_ack.is_set(), "send_many returned before the last ack"
            time.sleep(0.05)
            assert acked.value == 0, "every ack was taken exactly once"
        else:
            with pytest.raises(ipcez.RecipientAckTimeout):
                client.send_many(messages)
        t.join(5)
        assert received == messages, "ordinary frames, in order"
        client.close()
        conn.close()
    finally:
        server.close()
        ready.close()
        acked.close()
        for name in names:
            try:
                posix_ipc.unlink_semaphore(name)
            except posix_ipc.ExistentialError:
                pass
