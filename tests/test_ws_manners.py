"""WebSocket manners against real peers: the Origin check, subprotocols, close codes
(1000 on close, 1001 when the listener goes away, 1009 for an oversize message) and a
clean TCP end (FIN, not a reset) after ipcez closes."""

from __future__ import annotations

import base64
import logging
import os
import socket
import struct
import threading
import time
from typing import Any, Iterator, List, Optional, Tuple

import pytest

import ipcez

websockets = pytest.importorskip("websockets", reason="pip install websockets")
from websockets.sync.client import connect as ws_connect  # noqa: E402
from websockets.sync.server import serve as ws_serve  # noqa: E402

MIB4 = 4 * 1024 * 1024


@pytest.fixture
def listener() -> Iterator[ipcez.Listener]:
    with ipcez.listen("ws://127.0.0.1:0/chat") as lst:
        yield lst


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


# -- raw HTTP: the Origin rules --------------------------------------------------------


def handshake(port: int, path: str = "/chat", headers: Tuple[str, ...] = ()) -> Tuple[socket.socket, bytes]:
    """A raw upgrade request; returns the socket and the response head."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *headers,
    ]
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    return s, head


@pytest.mark.parametrize(
    "origin, allowed, expected",
    [
        (None, [], 101),  # most non-browser clients send no Origin
        ("http://127.0.0.1:{port}", [], 101),  # the listener's own origin
        ("http://evil.example", [], 403),
        ("null", [], 403),
        ("http://127.0.0.1:1", [], 403),  # same host, other port: another origin
        ("https://app.example", ["https://app.example"], 101),
        ("HTTPS://APP.example/", ["https://app.example"], 101),
        ("http://anything.example", ["*"], 101),
    ],
)
def test_origin_rules(origin: Optional[str], allowed: List[str], expected: int) -> None:
    with ipcez.listen("ws://127.0.0.1:0/chat", origins=allowed) as lst:
        port = port_of(lst.address)
        headers = () if origin is None else (f"Origin: {origin.format(port=port)}",)
        s, head = handshake(port, headers=headers)
        with s:
            assert head.startswith(f"HTTP/1.1 {expected}".encode()), head
            if expected == 403:
                assert b"Origin" in head or b"origin" in head.lower(), head
                with pytest.raises(TimeoutError):
                    lst.accept(timeout=0.3)
            else:
                lst.accept(timeout=5).close()


def test_refusals_are_logged_with_the_peer(caplog: pytest.LogCaptureFixture, listener: ipcez.Listener) -> None:
    caplog.set_level(logging.INFO, logger="ipcez")
    port = port_of(listener.address)
    cases = [
        ("/elsewhere", ("Origin: http://127.0.0.1:%d" % port,), b"404"),
        ("/chat", ("Origin: http://evil.example",), b"403"),
    ]
    for path, headers, status in cases:
        s, head = handshake(port, path, headers)
        peer = "%s:%d" % s.getsockname()
        s.close()
        assert status in head.split(b"\r\n")[0], head
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            hits = [r for r in caplog.records if peer in r.getMessage()]
            if hits:
                break
            time.sleep(0.02)
        assert hits, [r.getMessage() for r in caplog.records]
        assert status.decode() in hits[0].getMessage(), hits[0].getMessage()
        assert hits[0].name.startswith("ipcez."), hits[0].name


def test_options_are_checked_in_python() -> None:
    with pytest.raises(TypeError, match="list of strings"):
        ipcez.listen("ws://127.0.0.1:0/x", origins="http://a.example")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_connections"):
        ipcez.listen("ws://127.0.0.1:0/x", max_connections=0)
    with pytest.raises(ipcez.IoError, match="subprotocol"):
        ipcez.listen("ws://127.0.0.1:0/x", subprotocols=["a b"])
    with pytest.raises(ipcez.IoError, match="origin"):
        ipcez.listen("ws://127.0.0.1:0/x", origins=["example.com"])


# -- subprotocols ----------------------------------------------------------------------


def test_first_offered_supported_subprotocol_is_chosen() -> None:
    with ipcez.listen("ws://127.0.0.1:0/chat", subprotocols=["v1", "v2"]) as lst:
        with ws_connect(lst.address, subprotocols=["x", "v2", "v1"], open_timeout=5) as client:
            assert client.subprotocol == "v2"
            server = lst.accept(timeout=5)
            assert server.subprotocol == "v2"
            client.send(b"hi")
            assert server.recv(timeout=5) == b"hi"
            server.close()


def test_unsupported_subprotocols_are_refused_in_the_handshake() -> None:
    with ipcez.listen("ws://127.0.0.1:0/chat", subprotocols=["v1"]) as lst:
        with pytest.raises(websockets.exceptions.InvalidStatus) as info:
            ws_connect(lst.address, subprotocols=["v9"], open_timeout=5)
        assert info.value.response.status_code == 400
        assert b"v1" in info.value.response.body
        with pytest.raises(TimeoutError):  # no dead connection is handed out
            lst.accept(timeout=0.3)


def test_connect_offers_subprotocols_and_reports_the_choice() -> None:
    def handler(ws: Any) -> None:
        ws.send(ws.subprotocol or "none")
        try:
            ws.recv()
        except websockets.exceptions.ConnectionClosed:
            pass

    with ws_serve(handler, "127.0.0.1", 0, subprotocols=["chat"]) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = "ws://127.0.0.1:%d/" % server.socket.getsockname()[1]
        with ipcez.connect(url, subprotocols=["other", "chat"]) as s:
            assert s.subprotocol == "chat"
            assert s.recv(timeout=5) == b"chat"
        server.shutdown()


def test_local_sockets_have_no_subprotocol(sock_path: str) -> None:
    with ipcez.listen(sock_path) as lst, ipcez.connect(sock_path) as c:
        assert c.subprotocol is None
        assert lst.accept(timeout=5).subprotocol is None


# -- close codes -----------------------------------------------------------------------


def test_close_sends_1000(listener: ipcez.Listener) -> None:
    with ws_connect(listener.address, open_timeout=5, close_timeout=2) as client:
        listener.accept(timeout=5).close()
        with pytest.raises(websockets.exceptions.ConnectionClosed) as info:
            client.recv(timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1000


def test_listener_close_sends_1001_to_connections_not_accepted() -> None:
    lst = ipcez.listen("ws://127.0.0.1:0/chat")
    with ws_connect(lst.address, open_timeout=5, close_timeout=2) as client:
        time.sleep(0.2)  # the upgrade completes in the background
        lst.close()
        with pytest.raises(websockets.exceptions.ConnectionClosed) as info:
            client.recv(timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1001


def test_the_peers_close_code_and_reason_reach_connection_lost(listener: ipcez.Listener) -> None:
    with ws_connect(listener.address, open_timeout=5, close_timeout=2) as client:
        server = listener.accept(timeout=5)
        client.close(1001, "going to lunch")
        with pytest.raises(ipcez.ConnectionLost) as info:
            server.recv(timeout=5)
    e = info.value
    assert (e.code, e.reason) == (1001, "going to lunch")
    assert "1001" in str(e) and "going to lunch" in str(e), str(e)
    assert e.errno is not None  # still an ordinary ConnectionResetError


def test_a_plain_loss_has_no_close_code(sock_path: str) -> None:
    with ipcez.listen(sock_path) as lst:
        c = ipcez.connect(sock_path)
        server = lst.accept(timeout=5)
        c.close()
        with pytest.raises(ipcez.ConnectionLost) as info:
            server.recv(timeout=5)
    assert info.value.code is None and info.value.reason is None


def test_ipcez_client_answers_an_oversize_message_with_1009() -> None:
    seen: List[Any] = []

    def handler(ws: Any) -> None:
        ws.send(b"x" * (MIB4 + 1))
        try:
            ws.recv(timeout=5)
        except websockets.exceptions.ConnectionClosed as e:
            seen.append(e.rcvd)

    with ws_serve(handler, "127.0.0.1", 0, max_size=None) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = "ws://127.0.0.1:%d/" % server.socket.getsockname()[1]
        with ipcez.connect(url) as s:
            with pytest.raises(ipcez.IoError, match="4 MiB"):
                s.recv(timeout=5)
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
        server.shutdown()
    assert seen and seen[0] is not None and seen[0].code == 1009, seen


# -- a raw socket: the close frame, then FIN (not RST) ---------------------------------


def masked_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload[:64])) + payload[64:]
    return head + mask + body  # only the start is masked right: the peer never reads on


def read_close_then_end(s: socket.socket) -> Tuple[int, bytes, str]:
    """Reads frames until a Close frame; then reads on until the end. Returns the close
    code, its reason, and how the stream ended ("fin" or "reset")."""
    s.settimeout(5)
    data = b""
    while True:
        while len(data) < 2:
            data += s.recv(65536)
        length = data[1] & 0x7F
        start = 2 + {126: 2, 127: 8}.get(length, 0)
        while len(data) < start:
            data += s.recv(65536)
        if length == 126:
            length = struct.unpack("!H", data[2:4])[0]
        elif length == 127:
            length = struct.unpack("!Q", data[2:10])[0]
        while len(data) < start + length:
            data += s.recv(65536)
        opcode, payload, data = data[0] & 0x0F, data[start:start + length], data[start + length:]
        if opcode == 8:
            break
    code = struct.unpack("!H", payload[:2])[0]
    try:
        while s.recv(65536):
            pass
        end = "fin"
    except ConnectionResetError:
        end = "reset"
    return code, payload[2:], end


def test_oversize_message_gets_1009_then_a_clean_end(listener: ipcez.Listener) -> None:
    s, head = handshake(port_of(listener.address))
    with s:
        assert head.startswith(b"HTTP/1.1 101"), head
        s.sendall(masked_frame(2, b"y" * (MIB4 + 1)))  # one frame over the limit, all sent
        code, reason, end = read_close_then_end(s)
    assert code == 1009 and b"4 MiB" in reason, (code, reason)
    assert end == "fin", "ipcez reset the connection instead of closing it"


def test_close_frame_then_fin_when_the_peer_answers(listener: ipcez.Listener) -> None:
    s, head = handshake(port_of(listener.address))
    with s:
        server = listener.accept(timeout=5)
        s.sendall(masked_frame(2, b"unread message"))  # still unread when ipcez closes
        time.sleep(0.1)
        server.close()
        code, _, _ = read_close_then_end_answering(s)
    assert code == 1000


def read_close_then_end_answering(s: socket.socket) -> Tuple[int, bytes, str]:
    """Like :func:`read_close_then_end`, answering the Close frame first, as clients do."""
    s.settimeout(5)
    first = s.recv(2)
    while len(first) < 2:
        first += s.recv(2 - len(first))
    assert first[0] & 0x0F == 8, first
    payload = b""
    while len(payload) < (first[1] & 0x7F):
        payload += s.recv((first[1] & 0x7F) - len(payload))
    s.sendall(masked_frame(8, payload[:2]))
    t = time.monotonic()
    try:
        while s.recv(65536):
            pass
        end = "fin"
    except ConnectionResetError:
        end = "reset"
    assert end == "fin"
    assert time.monotonic() - t < 0.9, "ipcez should close at once after the peer's answer"
    return struct.unpack("!H", payload[:2])[0], payload[2:], end


def test_websocket_options_on_a_local_endpoint_are_an_error(sock_path: str) -> None:
    with pytest.raises(ipcez.IoError, match="WebSocket"):
        ipcez.listen(sock_path, origins=["https://app.example"])
    with pytest.raises(ipcez.IoError, match="WebSocket"):
        ipcez.listen(sock_path, subprotocols=["v1"])
    with ipcez.listen(sock_path):
        with pytest.raises(ipcez.IoError, match="WebSocket"):
            ipcez.connect(sock_path, subprotocols=["v1"])
