"""Socket behaviour over a Unix domain socket: sending any bytes-like object, sizes,
timeouts, iteration, closing, thread safety, GIL release."""

from __future__ import annotations

import array
import errno
import gc
import mmap
import threading
import time
import weakref
from typing import List, Tuple

import pytest

import ipcez

MIB4 = 4 * 1024 * 1024


def test_round_trip_both_directions(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, server = pair
    client.send(b"ping")
    assert server.recv(timeout=5) == b"ping"
    server.send_message(b"pong")
    assert client.recv(timeout=5) == b"pong"


def test_properties(pair: Tuple[ipcez.Socket, ipcez.Socket], sock_path: str) -> None:
    client, server = pair
    assert client.transport == "unix" and server.transport == "unix"
    assert client.endpoint == sock_path
    assert isinstance(server.endpoint, str)
    assert client.closed is False and server.closed is False
    assert client.ack_timeout == pytest.approx(5.0)
    assert "unix" in repr(client)


def test_ack_timeout_is_passed_down(sock_path: str) -> None:
    with ipcez.listen(sock_path) as listener, ipcez.connect(sock_path, ack_timeout=1.25) as s:
        assert s.ack_timeout == pytest.approx(1.25)
        listener.accept(timeout=5).close()


@pytest.mark.parametrize("bad", [0, -1, float("nan")])
def test_bad_ack_timeout(bad: float, sock_path: str) -> None:
    with pytest.raises(ValueError):
        ipcez.connect(sock_path, ack_timeout=bad)


def test_send_accepts_any_bytes_like(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, server = pair
    payloads = [
        b"bytes",
        bytearray(b"bytearray"),
        memoryview(b"0123456789")[2:7],  # a read-only slice
        memoryview(bytearray(b"writable view")),
        array.array("i", [1, 2, 3]),
        memoryview(array.array("d", [1.5, -2.0])).cast("B"),
    ]
    for p in payloads:
        client.send(p)
    for p in payloads:
        assert server.recv(timeout=5) == bytes(memoryview(p).cast("B"))


def test_send_mmap(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, server = pair
    m = mmap.mmap(-1, 4096)
    m[:5] = b"mmap!"
    client.send(m)
    assert server.recv(timeout=5)[:5] == b"mmap!"
    m.close()


def test_send_rejects_non_buffers_and_non_contiguous(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, server = pair
    with pytest.raises(TypeError):
        client.send("text is not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        client.send(12)  # type: ignore[arg-type]
    with pytest.raises(BufferError):
        client.send(memoryview(b"abcdef")[::2])
    # send_many names the message that is not bytes-like, and sends none of them.
    with pytest.raises(TypeError, match=r"message 1 is a str \(encode a str first"):
        client.send_many([b"ok", "text", b"ok"])  # type: ignore[list-item]
    client.send(b"still fine")
    assert server.recv(timeout=5) == b"still fine"


def test_bytearray_is_pinned_not_copied_during_send(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    # After send returns, the buffer is free again (no export left behind).
    client, server = pair
    buf = bytearray(b"abc")
    client.send(buf)
    buf.extend(b"def")  # would raise BufferError if an export leaked
    assert server.recv(timeout=5) == b"abc"


@pytest.mark.parametrize("size", [0, 1, 65536, MIB4 - 1, MIB4])
def test_sizes_up_to_4mib(pair: Tuple[ipcez.Socket, ipcez.Socket], size: int) -> None:
    client, server = pair
    data = bytes((i * 7) & 0xFF for i in range(min(size, 1024))) * (size // 1024 + 1)
    data = data[:size]
    client.send(data)
    got = server.recv(timeout=10)
    assert len(got) == size and got == data
    server.send(data)
    assert client.recv(timeout=10) == data


def test_message_too_large_leaves_socket_usable(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, server = pair
    with pytest.raises(ipcez.MessageTooLarge) as info:
        client.send(b"x" * (MIB4 + 1))
    e = info.value
    assert isinstance(e, ValueError) and isinstance(e, OSError) and isinstance(e, ipcez.IoError)
    assert e.errno == errno.EINVAL
    big = b"y" * MIB4
    client.send(big)
    assert server.recv(timeout=10) == big
    with pytest.raises(ipcez.MessageTooLarge):
        server.send(bytearray(MIB4 + 1))
    server.send(b"after")
    assert client.recv(timeout=5) == b"after"


def test_recv_timeout_is_builtin_timeout_error(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, _ = pair
    t0 = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        client.recv(timeout=0.3)
    elapsed = time.monotonic() - t0
    assert type(info.value) is TimeoutError
    assert 0.25 <= elapsed < 1.5, elapsed
    with pytest.raises(TimeoutError):
        client.recv(timeout=0)


def test_recv_zero_timeout_returns_queued_message(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, server = pair
    client.send(b"queued")  # returns once acked, i.e. once read by the background reader
    assert server.recv(timeout=0) == b"queued"


def test_recv_negative_timeout_is_value_error(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    with pytest.raises(ValueError):
        pair[0].recv(timeout=-1)


def test_order_is_kept(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, server = pair
    for i in range(200):
        client.send(str(i).encode())
    assert [server.recv(timeout=5) for _ in range(200)] == [str(i).encode() for i in range(200)]


def test_iteration_ends_when_peer_closes(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, server = pair
    for i in range(3):
        client.send(b"m%d" % i)
    client.close()
    got: List[bytes] = []
    t0 = time.monotonic()
    for message in server:
        got.append(message)
    assert got == [b"m0", b"m1", b"m2"]
    assert time.monotonic() - t0 < 2


def test_peer_close_gives_connection_lost(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, server = pair
    client.close()
    with pytest.raises(ipcez.ConnectionLost) as info:
        server.recv(timeout=2)
    assert isinstance(info.value, ConnectionResetError)
    assert info.value.errno == errno.ECONNRESET
    assert "connection lost" in str(info.value)
    with pytest.raises(ipcez.ConnectionLost):  # and again, every call after the end
        server.recv(timeout=1)
    with pytest.raises(ipcez.ConnectionLost):
        server.send(b"to nobody")


def test_use_after_close(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, _ = pair
    client.close()
    client.close()  # idempotent
    client.disconnect()
    assert client.closed
    with pytest.raises(ipcez.ConnectionLost):
        client.send(b"x")
    with pytest.raises(ipcez.ConnectionLost):
        client.recv()
    with pytest.raises(ipcez.ConnectionLost):
        client.recv(timeout=0)
    with pytest.raises(ipcez.ConnectionLost):
        client.message_handler(lambda m: None)
    assert list(client) == []
    assert client.transport == "unix"  # cached, still readable
    assert "closed" in repr(client)


def test_context_manager_closes(sock_path: str) -> None:
    with ipcez.listen(sock_path) as listener:
        with ipcez.connect(sock_path) as s:
            peer = listener.accept(timeout=5)
            assert not s.closed
        assert s.closed
        with pytest.raises(ipcez.ConnectionLost):
            peer.recv(timeout=2)
        peer.close()


def test_close_from_another_thread_wakes_recv(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, _ = pair
    threading.Timer(0.2, client.close).start()
    t0 = time.monotonic()
    with pytest.raises(ipcez.ConnectionLost):
        client.recv()
    assert time.monotonic() - t0 < 1.5


def test_socket_cannot_be_constructed_directly() -> None:
    with pytest.raises(TypeError):
        ipcez.Socket()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        ipcez.Listener()  # type: ignore[call-arg]


def test_eight_threads_sending_never_interleave(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, server = pair
    threads, per_thread = 8, 100
    errors: List[BaseException] = []

    def message(t: int, i: int) -> bytes:
        head = b"%d:%d:" % (t, i)
        size = (i * 997 + t * 131) % 50000
        return head + bytes([65 + t]) * size

    def sender(t: int) -> None:
        try:
            for i in range(per_thread):
                client.send(message(t, i))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    workers = [threading.Thread(target=sender, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    received: List[bytes] = []
    deadline = time.monotonic() + 30
    while len(received) < threads * per_thread and time.monotonic() < deadline:
        received.append(server.recv(timeout=10))
    for w in workers:
        w.join(10)
    assert not errors, errors
    assert len(received) == threads * per_thread
    next_seq = [0] * threads
    for m in received:
        t_s, i_s, body = m.split(b":", 2)
        t, i = int(t_s), int(i_s)
        assert m == message(t, i), f"frame {t}:{i} corrupted (interleaved?)"
        assert i == next_seq[t], "per-thread order broken"
        next_seq[t] += 1


def test_blocked_recv_releases_the_gil(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, _ = pair
    stop = threading.Event()
    count = [0]

    def spin() -> None:
        while not stop.is_set():
            count[0] += 1

    # baseline: spinning alone for 0.3 s
    t = threading.Thread(target=spin)
    t.start()
    time.sleep(0.3)
    stop.set()
    t.join()
    baseline = count[0]

    stop.clear()
    count[0] = 0
    t = threading.Thread(target=spin)
    t.start()
    with pytest.raises(TimeoutError):
        client.recv(timeout=0.3)  # the main thread sits in C with the GIL released
    stop.set()
    t.join()
    assert count[0] > baseline * 0.3, (count[0], baseline)


def test_dropped_socket_is_collected_and_closed(sock_path: str) -> None:
    with ipcez.listen(sock_path) as listener:
        s = ipcez.connect(sock_path)
        peer = listener.accept(timeout=5)
        ref = weakref.ref(s)
        del s
        gc.collect()
        assert ref() is None, "a Socket without close() must be collectable"
        with pytest.raises(ipcez.ConnectionLost):
            peer.recv(timeout=2)  # the finalizer closed the native socket
        peer.close()


def test_many_sockets_created_and_dropped(sock_path: str) -> None:
    with ipcez.listen(sock_path) as listener:
        for _ in range(50):
            s = ipcez.connect(sock_path)
            p = listener.accept(timeout=5)
            s.send(b"x")
            assert p.recv(timeout=5) == b"x"
            del s, p
        gc.collect()


def test_native_waits_without_limit_do_not_overflow(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    """Regression: UINT32_MAX ("no limit") in ipcez_socket_send / ipcez_socket_wait_ack used to
    overflow an Instant inside the library: a caught panic, reported after the frame had
    already been delivered."""
    import ctypes

    from ipcez import _abi, _ffi

    client, server = pair
    err = _ffi.error_p()
    with client._use() as handle:
        rc = _ffi.lib.ipcez_socket_send(handle, b"one", 3, 0xFFFFFFFF, ctypes.byref(err))
        assert rc == _abi.RESULT_OK, _ffi.lib.ipcez_error_code(err)
        rc = _ffi.lib.ipcez_socket_send(handle, b"two", 3, 0, ctypes.byref(err))
        assert rc in (_abi.RESULT_OK, _abi.RESULT_TIMEOUT)
        if rc == _abi.RESULT_TIMEOUT:
            rc = _ffi.lib.ipcez_socket_wait_ack(handle, 0xFFFFFFFF, ctypes.byref(err))
            assert rc == _abi.RESULT_OK, _ffi.lib.ipcez_error_code(err)
    assert [server.recv(timeout=5), server.recv(timeout=5)] == [b"one", b"two"]
