"""Receiving in batches: one native call takes every message already waiting, and the
socket keeps the rest in a small buffer.  Every promise of one message per call must hold:
order, nothing lost or doubled, fileno readiness, handlers, close, fork, Ctrl-C, bounds."""

from __future__ import annotations

import asyncio
import os
import selectors
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import pytest

import ipcez
import ipcez.aio
from ipcez import _batch, _socket


pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fileno and fork are Unix only")

N = 300


class CountingLib:
    """Stands in for the ctypes library (or its unchecked calls, ``_ffi.fast``) and counts
    the receiving calls made through it."""

    def __init__(self, lib: Any, calls: Optional[Dict[str, int]] = None) -> None:
        self._lib = lib
        self.calls: Dict[str, int] = {} if calls is None else calls

    def over(self, lib: Any) -> "CountingLib":
        """The same count, over another set of functions."""
        return CountingLib(lib, self.calls)

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._lib, name)
        if not name.startswith("ipcez_socket_recv"):
            return fn

        def counted(*args: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return fn(*args)

        return counted

    def total(self) -> int:
        return sum(self.calls.values())


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> CountingLib:
    counter = CountingLib(_socket.lib)
    monkeypatch.setattr(_socket, "lib", counter)
    monkeypatch.setattr(_batch, "lib", counter)
    monkeypatch.setattr(_batch, "fast", counter.over(_batch.fast))
    return counter


def readable(sock: ipcez.Socket, timeout: float = 0.0) -> bool:
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ)
        return bool(sel.select(timeout))


def messages(n: int = N) -> List[bytes]:
    return [b"m%05d" % i + bytes([i % 251]) * (i % 40) for i in range(n)]


def send_all(client: ipcez.Socket, msgs: List[bytes]) -> None:
    for m in msgs:
        client.send(m)  # acked: every one is in the server's queue when this returns


def with_buffered(client: ipcez.Socket, server: ipcez.Socket, n: int) -> List[bytes]:
    """Sends ``n`` messages and receives the first: the others are then in the server's
    buffer (one native call took them all)."""
    sent = messages(n)
    send_all(client, sent)
    assert server.recv(timeout=5) == sent[0]
    assert server._pending.messages, "a batch is buffered"
    return sent


def test_iteration_takes_many_messages_per_native_call(
    pair: Tuple[ipcez.Socket, ipcez.Socket], counting: CountingLib
) -> None:
    client, server = pair
    sent = messages()
    send_all(client, sent)
    client.close()
    got = list(server)
    assert got == sent, "in order, nothing lost or doubled"
    # One call per message before; now one per batch, plus the call that finds the end.
    assert counting.total() <= N // _batch.MAX_COUNT + 4, counting.calls


def test_send_many_peer_and_recv_with_timeouts(
    pair: Tuple[ipcez.Socket, ipcez.Socket], counting: CountingLib
) -> None:
    client, server = pair
    sent = messages(3000)  # more than the library queues: the sender waits for the reader
    feeder = threading.Thread(target=client.send_many, args=(sent,))
    feeder.start()
    got = [server.recv(timeout=5) for _ in sent]
    feeder.join(10)
    assert got == sent
    assert counting.total() < len(sent) // 4, counting.calls
    with pytest.raises(TimeoutError):
        server.recv(timeout=0.05)


def test_a_batch_is_bounded_in_count_and_bytes(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, server = pair
    client.send_many([bytes(1000)] * 500)  # all queued by the library (under its bounds)
    assert server.recv(timeout=5) == bytes(1000)
    held = list(server._pending.messages)
    assert 0 < len(held) < _batch.MAX_COUNT
    assert sum(map(len, held)) + 1000 <= _batch.MAX_BYTES
    assert [server.recv(timeout=5) for _ in range(499)] == [bytes(1000)] * 499


def test_fileno_stays_readable_while_the_buffer_holds_a_message(
    pair: Tuple[ipcez.Socket, ipcez.Socket],
) -> None:
    client, server = pair
    sent = messages(50)
    send_all(client, sent)
    got = []
    while readable(server, 0.2):
        got.append(server.recv(timeout=0))  # readable: a message at once
        if len(got) == 1:
            assert server._pending.messages, "the first call took more than one"
    assert got == sent
    assert not server._pending.messages
    assert not readable(server, 0.05), "all taken: quiet"
    client.send(b"late")
    assert readable(server, 5), "a new message makes it readable again"
    assert server.recv(timeout=0) == b"late"


def test_recv_into_takes_from_the_buffer_first_and_keeps_what_does_not_fit(
    pair: Tuple[ipcez.Socket, ipcez.Socket],
) -> None:
    client, server = pair
    send_all(client, [b"a" * 10, b"b" * 30, b"c" * 5])
    buf = bytearray(16)
    assert server.recv_into(buf, timeout=5) == 10 and buf[:10] == b"a" * 10
    with pytest.raises(ValueError, match="30 bytes"):
        server.recv_into(buf, timeout=5)
    assert readable(server), "the kept message still counts as waiting"
    assert server.recv(timeout=5) == b"b" * 30
    assert server.recv_into(buf, timeout=5) == 5 and buf[:5] == b"c" * 5


def test_a_message_kept_back_alone_still_counts_as_waiting(
    pair: Tuple[ipcez.Socket, ipcez.Socket],
) -> None:
    client, server = pair
    client.send(b"x" * 100)
    with pytest.raises(ValueError):
        server.recv_into(bytearray(10), timeout=5)
    assert len(server._pending.messages) == 1
    assert readable(server), "kept in the buffer, and readable"
    assert server.recv(timeout=0) == b"x" * 100
    assert not readable(server, 0.05)


def test_a_handler_registered_later_gets_the_buffered_messages_first(
    pair: Tuple[ipcez.Socket, ipcez.Socket],
) -> None:
    client, server = pair
    sent = with_buffered(client, server, 100)
    got: List[Any] = []
    done = threading.Event()

    def on_message(m: Any) -> None:
        got.append(m)
        if len(got) == len(sent):
            done.set()

    server.message_handler(on_message)
    client.send(b"after")
    assert done.wait(10), f"{len(got)} of {len(sent)}"
    assert got[: len(sent) - 1] == sent[1:] and got[len(sent) - 1] == b"after"


def test_close_drops_the_buffer(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, server = pair
    with_buffered(client, server, 20)
    server.close()
    with pytest.raises(ipcez.ConnectionLost):
        server.recv(timeout=1)
    with pytest.raises(ipcez.ConnectionLost):
        server.recv_into(bytearray(100), timeout=1)
    assert list(server) == []
    assert not server._pending.messages
    assert server.fileno() == -1


def test_close_from_another_thread_ends_a_blocked_recv(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    _, server = pair
    threading.Timer(0.2, server.close).start()
    t0 = time.monotonic()
    with pytest.raises(ipcez.ConnectionLost):
        server.recv(timeout=10)
    assert time.monotonic() - t0 < 5


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_never_gets_the_parents_buffered_messages(
    pair: Tuple[ipcez.Socket, ipcez.Socket],
) -> None:
    client, server = pair
    sent = with_buffered(client, server, 20)
    pid = os.fork()
    if pid == 0:  # the child: every use is refused, nothing is taken
        code = 0
        for call in (lambda: server.recv(timeout=0.1), lambda: server.recv_into(bytearray(64), 0.1)):
            try:
                call()
                code = 1
            except ipcez.ForkedError:
                pass
            except BaseException:  # noqa: BLE001
                code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [server.recv(timeout=5) for _ in sent[1:]] == sent[1:], "the parent still has them all"


def test_aio_receives_in_batches_in_order(sock_path: str, counting: CountingLib) -> None:
    sent = messages(1000)

    async def main() -> List[bytes]:
        async with ipcez.aio.listen(sock_path) as listener:
            client = ipcez.connect(sock_path)
            server = await listener.accept(timeout=5)
            feeder = threading.Thread(target=client.send_many, args=(sent,))
            feeder.start()
            got = [await server.recv(timeout=10) for _ in sent]
            feeder.join(10)
            client.close()
            async for extra in server:
                got.append(extra)
            await server.close()
            return got

    assert asyncio.run(main()) == sent
    assert counting.total() < len(sent) // 2, counting.calls


class InterruptOnce:
    """Stands in for the library's unchecked calls: the next batch receive that returns messages is followed
    by KeyboardInterrupt, as when Ctrl-C comes while the call runs (Python raises it at the
    first chance after the call returns)."""

    def __init__(self, lib: Any) -> None:
        self._lib = lib
        self.armed = True

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._lib, name)
        if name != "ipcez_socket_recv_batch":
            return fn

        def interrupted(*args: Any) -> Any:
            rc = fn(*args)
            if self.armed and rc == 0:
                self.armed = False
                raise KeyboardInterrupt
            return rc

        return interrupted


@pytest.mark.parametrize("how", ["recv", "recv_into", "long"])
def test_ctrl_c_right_after_a_batch_loses_nothing(
    pair: Tuple[ipcez.Socket, ipcez.Socket], monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    client, server = pair
    sent = [bytes([i]) * (100_000 if how == "long" else 10 + i) for i in range(5)]
    send_all(client, sent)
    monkeypatch.setattr(_batch, "fast", InterruptOnce(_batch.fast))
    buf = bytearray(200_000)
    with pytest.raises(KeyboardInterrupt):
        server.recv_into(buf, timeout=5) if how == "recv_into" else server.recv(timeout=5)
    assert readable(server), "what the interrupted call took still counts as waiting"
    got = [server.recv(timeout=5) for _ in sent]
    assert got == sent, "in order, nothing lost or doubled"
    assert not readable(server, 0.05)
