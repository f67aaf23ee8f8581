"""A WebSocket peer's close code reaches the sender too, not only the receiver.

Regression: an aiohttp server (default ``max_msg_size``, 4 MiB exclusive) answers a 4 MiB
message with close code 1009 while the send is still writing it; the send used to fail with
a bare "connection lost" (no ``code``, no ``reason``) because the write broke before the
reader had seen the Close frame. A send after the Close frame was read met the WebSocket
layer's "sending after closing" error instead of ``ConnectionLost``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Iterator, List

import pytest

import ipcez
import ipcez.aio

aiohttp = pytest.importorskip("aiohttp", reason="pip install aiohttp")
from aiohttp import web  # noqa: E402

MIB4 = 4 * 1024 * 1024


@pytest.fixture
def aiohttp_url() -> Iterator[str]:
    """An aiohttp WebSocket server with its default limits that reads and drops messages."""
    ready = threading.Event()
    state: List[Any] = []

    async def handler(request: Any) -> Any:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:
            pass
        return ws

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        stop = asyncio.Event()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        state.extend([port, asyncio.get_running_loop(), stop])
        ready.set()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the aiohttp server did not start"
    port, loop, stop = state
    yield f"ws://127.0.0.1:{port}/"
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)


def assert_1009(e: ipcez.ConnectionLost) -> None:
    assert e.code == 1009, (e.code, e.reason, str(e))
    assert e.reason is not None and "1009" in str(e), str(e)


def test_a_sync_send_the_peer_refuses_carries_1009(aiohttp_url: str) -> None:
    with ipcez.connect(aiohttp_url) as s:
        with pytest.raises(ipcez.ConnectionLost) as info:
            for _ in range(5):  # the first send may be taken whole before the peer objects
                s.send(bytes(MIB4))
        assert_1009(info.value)
        with pytest.raises(ipcez.ConnectionLost) as again:  # and on every later call
            s.send(b"x")
        assert_1009(again.value)
        with pytest.raises(ipcez.ConnectionLost) as recv:
            s.recv(timeout=5)
        assert_1009(recv.value)


def test_an_aio_send_the_peer_refuses_carries_1009(aiohttp_url: str) -> None:
    async def run() -> ipcez.ConnectionLost:
        async with await ipcez.aio.connect(aiohttp_url) as s:
            try:
                for _ in range(5):
                    await s.send(bytes(MIB4))
            except ipcez.ConnectionLost as e:
                return e
        raise AssertionError("five 4 MiB sends were all taken")

    assert_1009(asyncio.run(asyncio.wait_for(run(), 30)))


def test_a_send_after_the_peers_close_frame_carries_its_code() -> None:
    """The Close frame was read first (recv saw it): a later send says the same."""
    pytest.importorskip("websockets", reason="pip install websockets")
    from websockets.sync.server import serve

    def handler(ws: Any) -> None:
        ws.close(4000, "done with you")

    with serve(handler, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = "ws://127.0.0.1:%d/" % server.socket.getsockname()[1]
        with ipcez.connect(url) as s:
            with pytest.raises(ipcez.ConnectionLost) as recv:
                s.recv(timeout=5)
            assert (recv.value.code, recv.value.reason) == (4000, "done with you")
            for _ in range(2):
                with pytest.raises(ipcez.ConnectionLost) as send:
                    s.send(b"too late")
                assert (send.value.code, send.value.reason) == (4000, "done with you"), str(send.value)
        server.shutdown()
