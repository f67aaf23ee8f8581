"""Three WebSocket clients the field uses — Node's built-in WebSocket, aiohttp and
websocket-client — each send a message of 4 MiB + 1 byte to an ipcez listener and must see
the close code 1009 with its reason, not a reset or a broken pipe.

(aiohttp's own receive limit, ``max_msg_size``, defaults to 4 MiB and is exclusive: an
aiohttp client receiving a message of exactly 4 MiB from ipcez needs
``max_msg_size=4 * 1024 * 1024 + 1`` or more; the last test shows it.)
"""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
import subprocess
import textwrap
from typing import Any, Iterator, Tuple

import pytest

import ipcez

MIB4 = 4 * 1024 * 1024


@pytest.fixture
def listener() -> Iterator[ipcez.Listener]:
    with ipcez.listen("ws://127.0.0.1:0/chat") as lst:
        yield lst


def test_node_sees_1009(listener: ipcez.Listener) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("needs Node.js 20+ (apt-get install nodejs)")
    script = textwrap.dedent(
        """
        const ws = new WebSocket(process.argv[1]);
        ws.binaryType = "arraybuffer";
        ws.onopen = () => ws.send(new Uint8Array(4 * 1024 * 1024 + 1));
        ws.onclose = (e) => {
          console.log(JSON.stringify({ code: e.code, reason: e.reason, clean: e.wasClean }));
          process.exit(0);
        };
        setTimeout(() => { console.log("timeout"); process.exit(1); }, 15000);
        """
    )
    probe = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10)
    major = int(probe.stdout.strip().lstrip("v").split(".")[0] or 0)
    if major < 20:
        pytest.skip(f"needs Node.js 20+ for its WebSocket client; found {probe.stdout.strip()}")
    flags = [] if major >= 22 else ["--experimental-websocket"]
    out = subprocess.run(
        [node, *flags, "-e", script, listener.address], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, (out.stdout, out.stderr)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["code"] == 1009, result
    assert "4 MiB" in result["reason"], result
    assert result["clean"] is True, result


def test_websocket_client_sees_1009(listener: ipcez.Listener) -> None:
    websocket = pytest.importorskip("websocket", reason="pip install websocket-client")
    ws = websocket.create_connection(listener.address, timeout=10)
    try:
        ws.send_binary(b"z" * (MIB4 + 1))
        opcode, frame = ws.recv_data_frame(True)
    finally:
        ws.close()
    assert opcode == websocket.ABNF.OPCODE_CLOSE, opcode
    code = struct.unpack("!H", frame.data[:2])[0]
    assert code == 1009 and b"4 MiB" in frame.data[2:], frame.data


def aiohttp_send_oversize(url: str) -> Tuple[Any, Any, Any]:
    aiohttp = pytest.importorskip("aiohttp", reason="pip install aiohttp")

    async def run() -> Tuple[Any, Any, Any]:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
                await ws.send_bytes(b"a" * (MIB4 + 1))
                msg = await asyncio.wait_for(ws.receive(), 10)
                return msg.type, msg.data, msg.extra

    return asyncio.run(run())


def test_aiohttp_sees_1009(listener: ipcez.Listener) -> None:
    aiohttp = pytest.importorskip("aiohttp", reason="pip install aiohttp")
    kind, code, reason = aiohttp_send_oversize(listener.address)
    assert kind == aiohttp.WSMsgType.CLOSE, (kind, code, reason)
    assert code == 1009 and "4 MiB" in reason, (code, reason)


def test_aiohttp_needs_a_limit_above_4_mib_to_receive_exactly_4_mib(listener: ipcez.Listener) -> None:
    aiohttp = pytest.importorskip("aiohttp", reason="pip install aiohttp")

    async def receive(limit: int) -> Any:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(listener.address, max_msg_size=limit) as ws:
                loop = asyncio.get_running_loop()
                server = await loop.run_in_executor(None, listener.accept, 5)
                sending = loop.run_in_executor(None, server.send, b"m" * MIB4)
                msg = await asyncio.wait_for(ws.receive(), 10)
                await asyncio.gather(sending, return_exceptions=True)  # refused: lost
                server.close()
                return msg

    refused = asyncio.run(receive(MIB4))  # aiohttp's default
    assert refused.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE), refused
    taken = asyncio.run(receive(MIB4 + 1))
    assert taken.type == aiohttp.WSMsgType.BINARY and len(taken.data) == MIB4
