"""ipcez.aio: the event loop keeps running while a recv/accept waits, cancellation and
timeouts lose nothing, async for / async with work."""

from __future__ import annotations

import asyncio
import errno
import time
from typing import Any, List

import pytest

import ipcez
import ipcez.aio


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_round_trip_and_context_managers(sock_path: str) -> None:
    async def main() -> None:
        async with ipcez.aio.listen(sock_path) as server:
            assert server.address == sock_path
            async with ipcez.aio.connect(sock_path) as client:
                peer = await server.accept(timeout=5)
                await client.send(b"hello")
                assert await peer.recv(timeout=5) == b"hello"
                await peer.send_message(bytearray(b"world"))
                assert await client.recv() == b"world"
                await client.send(b"")  # bytes go straight to the library, empty ones too
                await peer.send(bytearray())
                assert await peer.recv(timeout=5) == b"" and await client.recv(timeout=5) == b""
                assert client.transport == "unix" and client.endpoint == sock_path
                await peer.close()
            assert client.closed

    run(main())


def test_awaitable_forms(sock_path: str) -> None:
    async def main() -> None:
        server = await ipcez.aio.listen(sock_path)
        client = await ipcez.aio.connect(sock_path)
        peer = await server.accept()
        assert isinstance(client, ipcez.aio.AsyncSocket)
        assert isinstance(peer.socket, ipcez.Socket)
        await client.close()
        await peer.close()
        async with await ipcez.aio.connect(sock_path) as again:  # the README's form
            peer2 = await server.accept(timeout=5)
            await again.send(b"x")
            assert await peer2.recv(timeout=5) == b"x"
            await peer2.close()
        assert again.closed
        await server.close()
        await server.close()  # idempotent

    run(main())


def test_loop_stays_responsive_while_recv_waits(sock_path: str) -> None:
    async def main() -> None:
        async with ipcez.aio.listen(sock_path) as server, ipcez.aio.connect(sock_path) as client:
            peer = await server.accept()
            ticks: List[float] = []

            async def ticker() -> None:
                while True:
                    ticks.append(time.monotonic())
                    await asyncio.sleep(0.01)

            t = asyncio.ensure_future(ticker())
            with pytest.raises(TimeoutError):
                await client.recv(timeout=0.5)
            t.cancel()
            assert len(ticks) >= 20, f"only {len(ticks)} ticks in 0.5 s: the loop was blocked"
            gaps = [b - a for a, b in zip(ticks, ticks[1:])]
            assert max(gaps) < 0.15, f"the loop stalled for {max(gaps):.3f} s"
            await peer.close()

    run(main())


def test_loop_stays_responsive_while_accept_waits(sock_path: str) -> None:
    async def main() -> None:
        async with ipcez.aio.listen(sock_path) as server:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.01)

            t = asyncio.ensure_future(ticker())
            with pytest.raises(TimeoutError):
                await server.accept(timeout=0.4)
            t.cancel()
            assert ticks >= 15

    run(main())


def test_timed_out_or_cancelled_recv_loses_nothing(sock_path: str) -> None:
    async def main() -> None:
        async with ipcez.aio.listen(sock_path) as server, ipcez.aio.connect(sock_path) as client:
            peer = await server.accept()
            # A recv that times out just as a message arrives must not eat it.
            for i in range(20):
                send = asyncio.ensure_future(client.send(b"m%d" % i))
                try:
                    got = await peer.recv(timeout=0.0005 * (i % 4))
                except TimeoutError:
                    got = await peer.recv(timeout=5)
                assert got == b"m%d" % i
                await send
            # A cancelled recv leaves the next message for the next recv.
            task = asyncio.ensure_future(peer.recv())
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await client.send(b"after cancel")
            assert await peer.recv(timeout=5) == b"after cancel"
            # wait_for around recv is safe too
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(peer.recv(), 0.05)
            await client.send(b"after wait_for")
            assert await peer.recv(timeout=5) == b"after wait_for"

    run(main())


def test_async_for_ends_on_peer_close(sock_path: str) -> None:
    async def main() -> None:
        async with ipcez.aio.listen(sock_path) as server:
            client = await ipcez.aio.connect(sock_path)
            peer = await server.accept()
            for i in range(5):
                await client.send(b"%d" % i)
            await client.close()
            got = [m async for m in peer]
            assert got == [b"%d" % i for i in range(5)]
            with pytest.raises(ipcez.ConnectionLost):
                await peer.recv()
            with pytest.raises(ipcez.ConnectionLost):
                await peer.recv()

    run(main())


def test_async_for_over_listener(sock_path: str) -> None:
    async def main() -> None:
        server = await ipcez.aio.listen(sock_path)

        accepted: list = []

        async def clients() -> list:
            # Kept open: a connection that ended unsent before accept is skipped.
            conns = [await ipcez.aio.connect(sock_path) for _ in range(3)]
            while len(accepted) < 3:  # bounded by run()'s 30 s
                await asyncio.sleep(0.01)
            await server.close()
            return conns

        t = asyncio.ensure_future(clients())
        async for s in server:
            accepted.append(s)
        conns = await t
        assert len(accepted) == 3
        for s in accepted + conns:
            await s.close()

    run(main())


def test_close_wakes_pending_recv(sock_path: str) -> None:
    async def main() -> None:
        async with ipcez.aio.listen(sock_path) as server, ipcez.aio.connect(sock_path) as client:
            await server.accept()
            task = asyncio.ensure_future(client.recv())
            await asyncio.sleep(0.05)
            await client.close()
            with pytest.raises(ipcez.ConnectionLost):
                await asyncio.wait_for(task, 2)
            with pytest.raises(ipcez.ConnectionLost):
                await client.send(b"x")

    run(main())


def test_concurrent_sends_from_tasks(sock_path: str) -> None:
    async def main() -> None:
        async with ipcez.aio.listen(sock_path) as server, ipcez.aio.connect(sock_path) as client:
            peer = await server.accept()
            await asyncio.gather(*(client.send(b"t%03d" % i) for i in range(50)))
            got = sorted([await peer.recv(timeout=5) for _ in range(50)])
            assert got == sorted(b"t%03d" % i for i in range(50))

    run(main())


def test_connect_errors_propagate(sock_path: str) -> None:
    async def main() -> None:
        with pytest.raises(ipcez.IoError) as info:
            await ipcez.aio.connect(sock_path)
        assert info.value.errno == errno.ENOENT

    run(main())


def test_many_messages(sock_path: str) -> None:
    async def main() -> None:
        async with ipcez.aio.listen(sock_path) as server, ipcez.aio.connect(sock_path) as client:
            peer = await server.accept()
            n = 200
            for i in range(n):
                await client.send(b"%d" % i)
            got = [await peer.recv(timeout=5) for _ in range(n)]
            assert got == [b"%d" % i for i in range(n)]

    run(main())
