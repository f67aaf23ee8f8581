"""An event loop that awaits ``recv`` reads the socket itself (Linux): the library's I/O
thread stands aside while the loop watches the socket's descriptor, and reads (and acks)
again once nobody awaits, once the loop's thread blocks in a call of the library, or once
the loop has left the socket readable and unread for about 100 ms (a blocked loop must not
hold acks back)."""

from __future__ import annotations

import asyncio
import select
import sys
import threading
import time
from typing import List

import pytest

import ipcez
import ipcez.aio
from ipcez import _aio_hub, _batch

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the held reading is Linux's")


def sender(sock: ipcez.Socket, msgs: List[bytes], errors: List[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            for m in msgs:
                sock.send(m)
        except BaseException as e:  # noqa: BLE001 -- reported by the test
            errors.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


async def warmed(listener: ipcez.aio.AsyncListener, client: ipcez.Socket) -> ipcez.aio.AsyncSocket:
    """The accepted socket, once the library has read it in the background (from then on
    a waiting loop can hold it)."""
    server = await listener.accept(timeout=5)
    client.send(b"warm")
    assert await server.recv(timeout=5) == b"warm"
    fd = _aio_hub.hold_read(server.socket, True)
    _aio_hub.hold_read(server.socket, False)
    assert fd >= 0, "the loop could not hold the socket: the test would prove nothing"
    return server


async def waiting_recv(
    server: ipcez.aio.AsyncSocket, settle: float = 0.05
) -> "asyncio.Future[bytes]":
    """A task awaiting ``server.recv``, given time to start (the loop then holds the socket)."""
    waiting = asyncio.ensure_future(server.recv(timeout=10))
    await asyncio.sleep(settle)
    assert server._readers == 1, "the waiting task holds the socket"
    return waiting


def test_a_loop_reads_the_socket_while_it_waits_and_hands_it_back(sock_path: str) -> None:
    async def main() -> None:
        async with ipcez.aio.listen(sock_path) as listener:
            client = ipcez.connect(sock_path, ack_timeout=5.0)
            server = await warmed(listener, client)
            # In order and whole while the loop reads, including batches of many.
            errors: List[BaseException] = []
            msgs = [b"m%d" % i * (1 + i % 7) for i in range(500)]
            t = sender(client, msgs, errors)
            got = [await server.recv(timeout=5) for _ in msgs]
            t.join(10)
            assert not errors and got == msgs
            # A wait that timed out gave the socket back: a message that comes while nobody
            # awaits is acked by the library (the send returns while the loop sleeps).
            with pytest.raises(TimeoutError):
                await server.recv(timeout=0.05)
            assert server._readers == 0
            done = sender(client, [b"late"], errors)
            await asyncio.sleep(0)
            done.join(3)
            assert not done.is_alive() and not errors, errors
            assert await server.recv(timeout=5) == b"late"
            # So does a cancelled wait.
            waiting = asyncio.ensure_future(server.recv())
            await asyncio.sleep(0.05)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert server._readers == 0
            done = sender(client, [b"later"], errors)
            done.join(3)
            assert not done.is_alive() and not errors, errors
            assert await server.recv(timeout=5) == b"later"
            client.close()
            with pytest.raises(ipcez.ConnectionLost):
                await server.recv(timeout=5)
            await server.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_message_taken_for_a_receive_cancelled_before_it_ran_goes_to_the_next(sock_path: str) -> None:
    """The loop takes the message for the waiting receive when the socket turns readable;
    a receive cancelled after that, before it ran, leaves the message to the next receive,
    in order. After close, ConnectionLost, not the message."""

    async def main() -> None:
        async with ipcez.aio.listen(sock_path) as listener:
            client = ipcez.connect(sock_path, ack_timeout=5.0)
            server = await warmed(listener, client)
            errors: List[BaseException] = []
            for last_step in ("receive", "close"):
                waiting = await waiting_recv(server)
                msgs = [b"one", b"two"] if last_step == "receive" else [b"three"]
                t = sender(client, msgs, errors)
                assert select.select([server._read_fd], [], [], 5)[0], "nothing came"
                server._on_readable()  # what the loop runs when the socket turns readable
                assert list(server._taken) == msgs[:1], "the loop took the message for the waiter"
                waiting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiting
                if last_step == "receive":
                    assert [await server.recv(timeout=5) for _ in msgs] == msgs
                else:
                    await server.close()
                    with pytest.raises(ipcez.ConnectionLost):
                        await server.recv(timeout=5)
                t.join(5)
                assert not t.is_alive() and not errors, errors
            client.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_blocked_loop_does_not_hold_back_acks(sock_path: str) -> None:
    """A task awaits recv (the loop holds the socket), then the loop blocks for 2 s: a
    sender with a 1 s ack timeout still gets its ack, from the library's reader."""

    async def main() -> None:
        async with ipcez.aio.listen(sock_path) as listener:
            client = ipcez.connect(sock_path, ack_timeout=1.0)
            server = await warmed(listener, client)
            waiting = await waiting_recv(server)
            errors: List[BaseException] = []
            t = sender(client, [b"while blocked"], errors)
            began = time.monotonic()
            time.sleep(2.0)  # the loop is blocked: it cannot read
            t.join(1)
            assert not t.is_alive() and not errors, f"ack held back by the blocked loop: {errors}"
            assert await waiting == b"while blocked"
            assert time.monotonic() - began < 5
            await server.close()
            client.close()

    asyncio.run(asyncio.wait_for(main(), 60))


@pytest.mark.parametrize("size", [16, 2 << 20], ids=["small", "2MiB"])
def test_a_blocking_send_on_the_loops_thread_is_acked_at_once(sock_path: str, size: int) -> None:
    """A sync send made on the loop's own thread to a socket that loop holds (a test, a
    demo): the thread lets go of its holds before it waits (for room to write, for the
    ack), so the library's reader reads and acks at once. Left to the fallbacks, every send
    would take 50 ms (the writer's slice) or 100 ms (the watchdog) or more."""

    async def main() -> None:
        async with ipcez.aio.listen(sock_path) as listener:
            client = ipcez.connect(sock_path, ack_timeout=5.0)
            server = await warmed(listener, client)
            took = []
            for i in range(5):
                waiting = await waiting_recv(server, settle=0.01)
                message = (b"s%d" % i).ljust(size, b".")
                began = time.monotonic()
                client.send(message)  # blocks the loop until acked
                took.append(time.monotonic() - began)
                assert await waiting == message
            assert sorted(took)[2] < 0.03, f"sends waited for a fallback: {took}"
            await server.close()
            client.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_close_stops_the_loop_watching_before_the_socket_closes(sock_path: str) -> None:
    """The loop must not watch a descriptor number the close frees (another file may get
    it): ``close`` takes it out of the loop before the socket closes."""

    async def main() -> None:
        async with ipcez.aio.listen(sock_path) as listener:
            client = ipcez.connect(sock_path, ack_timeout=5.0)
            server = await warmed(listener, client)
            waiting = await waiting_recv(server)
            fd = server._read_fd
            assert fd >= 0, "the waiting task holds the socket"
            await server.close()
            assert not asyncio.get_running_loop().remove_reader(fd), "still watched after close"
            with pytest.raises(ipcez.ConnectionLost):
                await waiting
            assert server._readers == 0
            client.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_websocket_is_read_by_the_loop_too() -> None:
    async def main() -> None:
        async with ipcez.aio.listen("ws://127.0.0.1:0/held") as listener:
            client = await ipcez.aio.connect(listener.address)
            server = await listener.accept(timeout=5)
            await client.send(b"warm")
            assert await server.recv(timeout=5) == b"warm"
            fd = _aio_hub.hold_read(client.socket, True)
            _aio_hub.hold_read(client.socket, False)
            assert fd >= 0
            for i in range(300):
                await server.send(b"x%d" % i)
                assert await client.recv(timeout=5) == b"x%d" % i
            # While nobody awaits, the library reads (and answers pings) again.
            await server.send(b"unawaited")
            await asyncio.sleep(0.1)
            assert client._readers == 0
            assert await client.recv(timeout=5) == b"unawaited"
            await client.close()
            with pytest.raises(ipcez.ConnectionLost):
                await server.recv(timeout=5)
            await server.close()

    asyncio.run(asyncio.wait_for(main(), 60))


class _CountingTakes:
    """Stands in for ``_batch.fast``: counts the loop's takes (``ipcez_socket_take_batch``)."""

    def __init__(self, fast: object) -> None:
        self._fast = fast
        self.takes = 0

    def __getattr__(self, name: str) -> object:
        fn = getattr(self._fast, name)
        if name != "ipcez_socket_take_batch":
            return fn

        def counted(*args: object) -> object:
            self.takes += 1
            return fn(*args)

        return counted


@pytest.mark.parametrize("kind", ["unix", "ws"])
def test_a_receive_waits_without_a_look_that_would_find_nothing(
    kind: str, sock_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A held socket whose last take found the library keeps nothing more is waited for at
    once: a message that comes to a waiting receive costs one take, not a look that finds
    nothing and then the take."""
    counter = _CountingTakes(_batch.fast)
    monkeypatch.setattr(_batch, "fast", counter)
    endpoint = "ws://127.0.0.1:0/dry" if kind == "ws" else sock_path
    msgs = [b"m%d" % i for i in range(200)]

    async def main() -> None:
        async with ipcez.aio.listen(endpoint) as listener:
            client = await asyncio.to_thread(ipcez.connect, listener.address)
            try:
                server = await warmed(listener, client)

                def send_slowly() -> None:  # each message comes to a receive that waits
                    for m in msgs:
                        time.sleep(0.001)
                        client.send(m)

                sending = asyncio.ensure_future(asyncio.to_thread(send_slowly))
                before = counter.takes
                for m in msgs:
                    # A message left in the library with no word of it would wait forever:
                    # a bound per receive (its own timeout would end in a last look).
                    assert await asyncio.wait_for(server.recv(), 5) == m
                takes = counter.takes - before
                await sending
                await server.close()
            finally:
                client.close()
        # Looking first made it two per message.
        assert takes <= 1.4 * len(msgs), f"{takes} takes for {len(msgs)} messages"

    asyncio.run(asyncio.wait_for(main(), 60))


@pytest.mark.parametrize("kind", ["unix", "ws"])
def test_bursts_and_long_messages_all_come_in_order_to_a_held_socket(kind: str, sock_path: str) -> None:
    """Messages that come several at a time (some queued, one read ahead) or longer than a
    batch are all received, in order, by a loop that waits without looking first."""
    endpoint = "ws://127.0.0.1:0/bursts" if kind == "ws" else sock_path
    sizes = [10, 70_000, 3, 200_000, 5, 1, 65_536, 2]
    bursts = [[bytes([k % 251]) * n + b"%d.%d" % (k, j) for j, n in enumerate(sizes)] for k in range(15)]
    expected = [m for burst in bursts for m in burst]

    async def main() -> None:
        async with ipcez.aio.listen(endpoint) as listener:
            client = await asyncio.to_thread(ipcez.connect, listener.address)
            try:
                server = await warmed(listener, client)

                def send_all() -> None:
                    for burst in bursts:
                        client.send_many(burst)
                        time.sleep(0.005)

                sending = asyncio.ensure_future(asyncio.to_thread(send_all))
                for i, want in enumerate(expected):
                    got = await asyncio.wait_for(server.recv(), 5)  # (as above)
                    assert got == want, f"message {i}: {len(got)} bytes, not {len(want)}"
                    if i % 7 == 0:  # now and then nobody waits long enough for the loop to
                        await asyncio.sleep(0.03)  # let go (after 10 ms) and hold anew
                await sending
                await server.close()
            finally:
                client.close()

    asyncio.run(asyncio.wait_for(main(), 60))


@pytest.mark.parametrize("then", ["handler", "close"])
def test_a_receive_that_would_not_look_first_still_raises_what_the_look_would(then: str, sock_path: str) -> None:
    """A socket left held with nothing kept by the library, then given a message handler
    or closed from another thread: the next ``recv`` raises at once, as a look would."""

    async def main() -> None:
        async with ipcez.aio.listen(sock_path) as listener:
            client = await asyncio.to_thread(ipcez.connect, sock_path)
            try:
                server = await warmed(listener, client)
                waiting = await waiting_recv(server)
                await asyncio.to_thread(client.send, b"m")
                assert await waiting == b"m"
                assert server.socket._pending.dry, "the next recv would look first: the test would prove nothing"
                if then == "handler":
                    server.socket.message_handler(lambda m: None)
                    with pytest.raises(ipcez.IoError, match="message handler"):
                        await asyncio.wait_for(server.recv(), 5)
                else:
                    await asyncio.to_thread(server.socket.close)
                    with pytest.raises(ipcez.ConnectionLost):
                        await asyncio.wait_for(server.recv(), 5)
                await server.close()
            finally:
                client.close()

    asyncio.run(asyncio.wait_for(main(), 60))
