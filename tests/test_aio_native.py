"""ipcez.aio on its native base: cancellation, many connections on few threads, serve(),
send_many and pipelined sends."""

from __future__ import annotations

import asyncio
import ctypes
import os
import resource
import sys
import threading
from typing import Any, List

import pytest

import ipcez
import ipcez.aio
from ipcez import _abi, _errors, _ffi

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets")


def run(coro: Any, timeout: float = 60) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def native_threads() -> int:
    """Every thread of this process, Python's and the library's alike."""
    return len(os.listdir("/proc/self/task"))


def test_cancelled_recvs_lose_nothing_under_load(sock_path: str) -> None:
    """Many recv calls cancelled at random points while messages stream in: every message
    is received exactly once, in order."""

    async def main() -> None:
        async with ipcez.aio.listen(sock_path) as server, ipcez.aio.connect(sock_path) as client:
            peer = await server.accept(timeout=5)
            n = 300
            sender = asyncio.ensure_future(client.send_many(b"%d" % i for i in range(n)))
            got: List[bytes] = []
            i = 0
            while len(got) < n:
                i += 1
                task = asyncio.ensure_future(peer.recv())
                if i % 3 == 0:
                    await asyncio.sleep(0)
                    task.cancel()
                try:
                    got.append(await task)
                except asyncio.CancelledError:
                    pass
            await sender
            assert got == [b"%d" % i for i in range(n)]

    run(main())


def test_several_waiting_tasks_each_get_a_message(sock_path: str) -> None:
    async def main() -> None:
        async with ipcez.aio.listen(sock_path) as server, ipcez.aio.connect(sock_path) as client:
            peer = await server.accept(timeout=5)
            waiting = [asyncio.ensure_future(peer.recv()) for _ in range(5)]
            await asyncio.sleep(0.02)
            waiting[2].cancel()  # one gives up: the other four still get theirs
            await client.send_many([b"a", b"b", b"c", b"d"])
            done = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 5)
            messages = sorted(m for m in done if isinstance(m, bytes))
            assert messages == [b"a", b"b", b"c", b"d"]

    run(main())


def test_cancelled_send_keeps_the_stream_whole_and_acks_in_step(sock_path: str) -> None:
    async def main() -> None:
        async with ipcez.aio.listen(sock_path) as server, ipcez.aio.connect(sock_path) as client:
            peer = await server.accept(timeout=5)
            big = b"\x01" * (4 * 1024 * 1024)
            task = asyncio.ensure_future(client.send(big))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The frame went out whole; the next send is acked on its own ack.
            await client.send(b"after")
            assert await peer.recv(timeout=5) == big
            assert await peer.recv(timeout=5) == b"after"

    run(main())


def test_a_refused_send_leaves_nothing_sent_and_nothing_held(sock_path: str) -> None:
    """A send refused before it was written (too large) lets go of the socket it held for
    the ack; the combined send-and-expect call refuses an unwatched socket with nothing
    sent (a caller may send again)."""

    async def main() -> None:
        async with ipcez.aio.listen(sock_path) as server:
            client = await ipcez.aio.connect(sock_path)
            peer = await server.accept(timeout=5)
            await client.send(b"warm")
            assert await peer.recv(timeout=5) == b"warm"
            await asyncio.sleep(0.05)  # the hold of that send's ack wait ends
            with pytest.raises(ipcez.MessageTooLarge):
                await client.send(b"x" * (ipcez.MAX_MESSAGE_SIZE + 1))
            await asyncio.sleep(0.05)
            assert client._read_fd == -1, "the refused send left the socket held"
            await client.send(b"after")
            assert await peer.recv(timeout=5) == b"after"
            # The C call itself, on a socket no poller watches: refused, nothing sent.
            raw = ipcez.connect(sock_path)
            raw_peer = await server.accept(timeout=5)
            err = _ffi.error_p()
            with raw._use() as handle:
                rc = _ffi.lib.ipcez_socket_start_send_acked(handle, b"never", 5, ctypes.byref(err))
            assert rc == _abi.RESULT_ERROR
            assert "poller" in str(_errors.fail(rc, err))
            with pytest.raises(TimeoutError):
                await raw_peer.recv(timeout=0.3)
            raw.close()
            await raw_peer.close()
            await client.close()
            await peer.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_pending_send_fails_when_the_socket_closes(sock_path: str) -> None:
    """A peer that never reads: the send waits for its ack; closing the socket ends it."""

    async def main() -> None:
        import socket as stdsocket

        raw = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
        raw.bind(sock_path)
        raw.listen(1)
        try:
            client = await ipcez.aio.connect(sock_path, ack_timeout=5)
            task = asyncio.ensure_future(client.send(b"never acked"))
            await asyncio.sleep(0.05)
            assert not task.done()
            await client.close()
            with pytest.raises(ipcez.ConnectionLost):
                await asyncio.wait_for(task, 2)
        finally:
            raw.close()
            for name in ipcez.ack_names(sock_path):
                try:
                    os.unlink("/dev/shm/sem." + name.lstrip("/"))
                except OSError:
                    pass

    run(main())


@pytest.mark.skipif(sys.platform != "linux", reason="POSIX semaphores")
def test_sends_past_the_bound_of_waiting_frames_wait_and_keep_their_order(sock_path: str) -> None:
    """A custom peer that reads nothing at first: 100 MiB of concurrent sends exceed what may
    wait for the socket (64 MiB), so the rest go the waiting way; once the peer reads (and
    acks each message, as the protocol says), every send completes, in order, whole."""
    posix_ipc = pytest.importorskip("posix_ipc", reason="pip install posix_ipc (Linux only)")
    import socket as stdsocket
    import struct

    names = ipcez.ack_names(sock_path)
    ready = posix_ipc.Semaphore(names[0], posix_ipc.O_CREAT, 0o600, 0)
    acked = posix_ipc.Semaphore(names[1], posix_ipc.O_CREAT, 0o600, 0)
    server = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(1)
    big = 4 * 1024 * 1024
    messages = [bytes([i]) * big for i in range(25)]
    received: List[bytes] = []

    def peer(conn: stdsocket.socket) -> None:
        def exact(n: int) -> bytes:
            chunks = []
            while n:
                chunk = conn.recv(min(n, 1 << 20))
                assert chunk, "peer closed"
                chunks.append(chunk)
                n -= len(chunk)
            return b"".join(chunks)

        for _ in messages:
            (n,) = struct.unpack(">I", exact(4))
            received.append(exact(n))
            acked.release()

    async def main() -> None:
        client = await ipcez.aio.connect(sock_path, ack_timeout=30)
        conn, _ = server.accept()
        conn.settimeout(30)
        sends = [asyncio.ensure_future(client.send(m)) for m in messages]
        await asyncio.sleep(0.2)  # the peer reads nothing yet: the waiting frames fill up
        assert not any(s.done() for s in sends)
        assert client._slow_sends > 0, "some sends had to go the waiting way"
        reader = threading.Thread(target=peer, args=(conn,))
        reader.start()
        await asyncio.gather(*sends)
        await asyncio.get_running_loop().run_in_executor(None, reader.join, 30)
        await client.close()
        conn.close()

    try:
        run(main(), timeout=90)
        assert [m[:1] for m in received] == [m[:1] for m in messages]
        assert received == messages
    finally:
        server.close()
        ready.close()
        acked.close()
        for name in names:
            try:
                posix_ipc.unlink_semaphore(name)
            except posix_ipc.ExistentialError:
                pass


def test_thousand_receiving_connections_need_few_threads(sock_path: str) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4500:
        pytest.skip(f"needs 4,500 file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4500), hard))
    n = 1000

    async def main() -> None:
        async with ipcez.aio.listen(sock_path) as server:
            # One connection first, so the library's own runtime is counted in the baseline.
            warm = await ipcez.aio.connect(sock_path)
            warm_peer = await server.accept(timeout=5)
            await warm.send(b"warm")
            assert await warm_peer.recv(timeout=5) == b"warm"
            baseline = native_threads()
            clients: List[ipcez.aio.AsyncSocket] = []
            for _ in range(n):
                clients.append(await ipcez.aio.connect(sock_path))
            peers = [await server.accept(timeout=5) for _ in range(n)]
            receivers = [asyncio.ensure_future(p.recv(timeout=30)) for p in peers]
            await asyncio.sleep(0.2)
            waiting_threads = native_threads() - baseline
            await asyncio.gather(*(c.send(b"to %d" % i) for i, c in enumerate(clients)))
            got = await asyncio.gather(*receivers)
            extra = max(waiting_threads, native_threads() - baseline)
            assert sorted(got) == sorted(b"to %d" % i for i in range(n))
            print(f"extra threads: {extra}")
            assert extra <= 8, f"{n} receiving aio connections took {extra} extra threads"
            for s in clients + peers + [warm, warm_peer]:
                await s.close()

    run(main(), timeout=120)


def test_serve_runs_a_handler_per_connection(sock_path: str) -> None:
    async def echo(sock: ipcez.aio.AsyncSocket) -> None:
        async for message in sock:
            if message == b"boom":
                raise RuntimeError("handler failure")
            await sock.send(message.upper())

    async def main() -> None:
        async with ipcez.aio.serve(echo, sock_path) as server:
            assert server.address == sock_path
            async with ipcez.aio.connect(sock_path) as a, ipcez.aio.connect(sock_path) as b:
                await a.send(b"one")
                await b.send(b"two")
                assert await a.recv(timeout=5) == b"ONE"
                assert await b.recv(timeout=5) == b"TWO"
                await b.send(b"boom")  # its handler fails; the server goes on
                with pytest.raises(ipcez.ConnectionLost):
                    await b.recv(timeout=5)
                await a.send(b"still")
                assert await a.recv(timeout=5) == b"STILL"
        assert not os.path.exists(sock_path), "closing the server removed the socket file"

    run(main())


def test_serve_forever_stops_on_close_and_closes_connections(sock_path: str) -> None:
    async def hold(sock: ipcez.aio.AsyncSocket) -> None:
        await sock.recv()  # until the server closes it

    async def main() -> None:
        server = await ipcez.aio.serve(hold, sock_path)
        forever = asyncio.ensure_future(server.serve_forever())
        client = await ipcez.aio.connect(sock_path)
        for _ in range(100):
            if server.connections:
                break
            await asyncio.sleep(0.01)
        assert len(server.connections) == 1
        server.close()
        await asyncio.wait_for(forever, 5)
        await asyncio.wait_for(server.wait_closed(), 5)
        assert not server.connections
        with pytest.raises(ipcez.ConnectionLost):
            await client.recv(timeout=5)

    run(main())


def test_pipelined_sends_and_send_many(sock_path: str) -> None:
    async def main() -> None:
        async with ipcez.aio.listen(sock_path) as server, ipcez.aio.connect(sock_path) as client:
            peer = await server.accept(timeout=5)
            n = 800  # below the peer's queue bound: nobody takes them until all are acked
            await asyncio.gather(*(client.send(b"p%d" % i) for i in range(n)))
            got = [await peer.recv(timeout=5) for _ in range(n)]
            assert got == [b"p%d" % i for i in range(n)], "frames in the order the sends started"
            many = [b"m%d" % i for i in range(5000)] + [bytearray(b"last")]

            async def take() -> List[bytes]:
                return [await peer.recv(timeout=5) for _ in many]

            receiving = asyncio.ensure_future(take())
            await client.send_many(many)
            assert await receiving == [bytes(m) for m in many]
            with pytest.raises(ipcez.MessageTooLarge):
                await client.send_many([b"ok", b"x" * (4 * 1024 * 1024 + 1)])
            with pytest.raises(TimeoutError):
                await peer.recv(timeout=0.05)

    run(main())


def test_websocket_aio_round_trip() -> None:
    async def main() -> None:
        async with ipcez.aio.listen("ws://127.0.0.1:0/aio") as server:
            async with ipcez.aio.connect(server.address) as client:
                peer = await server.accept(timeout=5)
                await client.send(b"over ws")
                assert await peer.recv(timeout=5) == b"over ws"
                await peer.send_many([b"a", b"b"])
                assert [await client.recv(timeout=5) for _ in range(2)] == [b"a", b"b"]
                await peer.close()

    run(main())


def test_websocket_aio_sends_keep_their_order() -> None:
    """Sends that can go at once go on the loop's thread, the others through a helper
    thread; either way they arrive in the order they were made, large ones included."""

    async def main() -> None:
        async with ipcez.aio.listen("ws://127.0.0.1:0/order") as server:
            async with ipcez.aio.connect(server.address) as client:
                peer = await server.accept(timeout=5)
                sizes = [10, 3 * 1024 * 1024, 5, 2 * 1024 * 1024] * 5 + [7] * 200
                messages = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
                async def take() -> List[bytes]:
                    return [await peer.recv(timeout=20) for _ in messages]

                receiving = asyncio.ensure_future(take())
                await asyncio.gather(*(client.send(m) for m in messages))
                got = await receiving
                assert [len(m) for m in got] == sizes
                assert got == messages

    run(main())


def test_one_loop_per_socket(sock_path: str) -> None:
    async def first() -> Any:
        server = await ipcez.aio.listen(sock_path)
        client = await ipcez.aio.connect(sock_path)
        with pytest.raises(TimeoutError):
            await client.recv(timeout=0.01)
        return server, client

    server, client = asyncio.run(first())
    result: List[BaseException] = []

    def other_loop() -> None:
        try:
            asyncio.run(client.recv(timeout=0.01))
        except BaseException as exc:  # noqa: BLE001
            result.append(exc)

    t = threading.Thread(target=other_loop)
    t.start()
    t.join(5)
    assert isinstance(result[0], RuntimeError) and "another event loop" in str(result[0])
    # It says the first loop is gone, and what to do instead.
    assert "(now closed)" in str(result[0]) and "open a new one in this loop" in str(result[0])
    client.socket.close()
    server.listener.close()
