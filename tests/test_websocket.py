"""ws:// and wss:// against the ``websockets`` package, in both roles: binary messages,
text delivered as UTF-8 bytes, 0 B and 4 MiB, the 4 MiB limit, close -> ConnectionLost,
404 for other paths, port 0."""

from __future__ import annotations

import queue
import shutil
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Tuple

import pytest

import ipcez

from conftest import run_python

import websockets  # noqa: E402  (requirements-dev.txt; conftest checks it is installed)
from websockets.sync.client import connect as ws_connect  # noqa: E402
from websockets.sync.server import serve as ws_serve  # noqa: E402

MIB4 = 4 * 1024 * 1024
BIG = 8 * 1024 * 1024  # websockets' own limit, set above ours so that ours is what is tested
CLOSE_TIMEOUT = 2  # websockets waits this long for the peer to finish a closing handshake


class WsServer:
    """A websockets server in a background thread; ``url`` is its ws:// address."""

    def __init__(self, handler: Callable[[Any], None], ssl_context: Any = None) -> None:
        self.server = ws_serve(
            handler, "127.0.0.1", 0, max_size=BIG, compression=None, ssl=ssl_context,
            close_timeout=CLOSE_TIMEOUT,
        )
        port = self.server.socket.getsockname()[1]
        scheme = "wss" if ssl_context else "ws"
        host = "localhost" if ssl_context else "127.0.0.1"
        self.url = f"{scheme}://{host}:{port}/ipcez"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        # Bounded: a peer that never closes its TCP side would hold shutdown() for the
        # ping timeout (20 s); the failing test says why, the fixture need not wait.
        closer = threading.Thread(target=self.server.shutdown, daemon=True)
        closer.start()
        closer.join(3)
        self.thread.join(1)


@pytest.fixture
def echo_server() -> Iterator[WsServer]:
    def handler(ws: Any) -> None:
        for message in ws:
            if message in ("close please", b"close please"):
                ws.close()
                return
            ws.send(message)

    s = WsServer(handler)
    yield s
    s.close()


def test_which_and_transport(echo_server: WsServer) -> None:
    assert ipcez.which(echo_server.url).transport == "websocket"
    with ipcez.connect(echo_server.url) as s:
        assert s.transport == "websocket"
        assert s.endpoint == echo_server.url


@pytest.mark.parametrize("size", [0, 1, 1000, MIB4])
def test_binary_round_trip_via_websockets_server(echo_server: WsServer, size: int) -> None:
    data = bytes(i & 0xFF for i in range(size))
    with ipcez.connect(echo_server.url) as s:
        s.send(data)
        got = s.recv(timeout=10)
        assert type(got) is bytes and got == data


def test_text_message_is_delivered_as_utf8_bytes() -> None:
    def handler(ws: Any) -> None:
        ws.send("héllo ✓")  # a text frame
        ws.recv()

    srv = WsServer(handler)
    try:
        with ipcez.connect(srv.url) as s:
            assert s.recv(timeout=5) == "héllo ✓".encode("utf-8")
    finally:
        srv.close()


def test_server_close_gives_connection_lost(echo_server: WsServer) -> None:
    with ipcez.connect(echo_server.url) as s:
        s.send(b"close please")
        t0 = time.monotonic()
        with pytest.raises(ipcez.ConnectionLost):
            s.recv(timeout=5)
        assert time.monotonic() - t0 < 2
        with pytest.raises(ipcez.ConnectionLost):
            s.send(b"x")


def test_ipcez_client_close_ends_the_websocket_promptly() -> None:
    # After the closing handshake the TCP connection must be closed too (RFC 6455 §7.1.1),
    # or a websockets peer sits in CLOSING until its close_timeout.
    ended = threading.Event()

    def handler(ws: Any) -> None:
        for m in ws:
            ws.send(m)
        ended.set()

    srv = WsServer(handler)
    try:
        s = ipcez.connect(srv.url)
        s.send(b"a")
        assert s.recv(timeout=5) == b"a"
        s.close()
        assert ended.wait(CLOSE_TIMEOUT - 0.5), "the websockets server never saw the connection end"
    finally:
        srv.close()


def test_a_thread_waiting_in_recv_answers_the_peers_pings() -> None:
    # The waiting thread reads the socket itself; a websockets server that pings every
    # 100 ms and gives up after 1 s without a pong must still find ipcez alive after 25
    # pings, and a message after that wait must arrive.
    go = threading.Event()
    codes: "queue.Queue[Any]" = queue.Queue()

    def handler(ws: Any) -> None:
        go.wait(10)
        ws.send(b"after the pings")
        try:
            for _ in ws:
                pass
        finally:
            codes.put(ws.close_code)

    server = ws_serve(handler, "127.0.0.1", 0, compression=None, ping_interval=0.1, ping_timeout=1.0)
    port = server.socket.getsockname()[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with ipcez.connect(f"ws://127.0.0.1:{port}/") as s:
            with pytest.raises(TimeoutError):
                s.recv(timeout=2.5)  # about 25 pings pass meanwhile
            go.set()
            assert s.recv(timeout=5) == b"after the pings"
        assert codes.get(timeout=5) == 1000, "the server saw the connection end normally"
    finally:
        closer = threading.Thread(target=server.shutdown, daemon=True)
        closer.start()
        closer.join(3)


def test_too_large_send_over_ws(echo_server: WsServer) -> None:
    with ipcez.connect(echo_server.url) as s:
        with pytest.raises(ipcez.MessageTooLarge):
            s.send(b"z" * (MIB4 + 1))
        s.send(b"usable")
        assert s.recv(timeout=5) == b"usable"


def test_too_large_incoming_over_ws() -> None:
    def handler(ws: Any) -> None:
        ws.send(b"q" * (MIB4 + 1))
        try:
            ws.recv(timeout=5)
        except Exception:  # noqa: BLE001
            pass

    srv = WsServer(handler)
    try:
        with ipcez.connect(srv.url) as s:
            with pytest.raises(ipcez.SocketError):
                s.recv(timeout=5)
    finally:
        srv.close()


def test_connect_refused_is_an_error() -> None:
    import socket

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(ipcez.SocketError) as info:
        ipcez.connect(f"ws://127.0.0.1:{port}/x")
    assert isinstance(info.value, (ipcez.IoError, ipcez.WsError))
    assert "is the server running, and are the host and port right?" in str(info.value), info.value


def test_handler_over_ws(echo_server: WsServer) -> None:
    q: "queue.Queue[Any]" = queue.Queue()
    s = ipcez.connect(echo_server.url)
    s.message_handler(q.put)
    s.send(b"a")
    s.send(b"b")
    assert [q.get(timeout=5), q.get(timeout=5)] == [b"a", b"b"]
    s.close()
    assert isinstance(q.get(timeout=5), ipcez.ConnectionLost)


# -- ipcez listening, websockets connecting ----------------------------------------


@pytest.fixture
def ws_listener() -> Iterator[ipcez.Listener]:
    with ipcez.listen("ws://127.0.0.1:0/ipcez") as listener:
        yield listener


def test_port_zero_reports_real_port(ws_listener: ipcez.Listener) -> None:
    addr = ws_listener.address
    assert addr.startswith("ws://127.0.0.1:")
    port = int(addr.rsplit(":", 1)[1].split("/")[0])
    assert port != 0
    assert addr.endswith("/ipcez")


def test_websockets_client_to_ipcez_listener(ws_listener: ipcez.Listener) -> None:
    with ws_connect(ws_listener.address, max_size=BIG, compression=None, proxy=None, close_timeout=CLOSE_TIMEOUT) as ws:
        peer = ws_listener.accept(timeout=5)
        assert peer.transport == "websocket"
        ws.send(b"binary")
        assert peer.recv(timeout=5) == b"binary"
        ws.send("text é")
        assert peer.recv(timeout=5) == "text é".encode()
        ws.send(b"")
        assert peer.recv(timeout=5) == b""
        ws.send(b"m" * MIB4)
        assert peer.recv(timeout=10) == b"m" * MIB4
        peer.send(b"back")
        got = ws.recv(timeout=5)
        assert got == b"back" and isinstance(got, bytes), "ipcez sends binary messages"
        peer.send(b"")
        assert ws.recv(timeout=5) == b""
        peer.send(b"n" * MIB4)
        assert ws.recv(timeout=10) == b"n" * MIB4
        ws.close()
        with pytest.raises(ipcez.ConnectionLost):
            peer.recv(timeout=5)
        peer.close()


def test_ipcez_close_closes_the_websocket(ws_listener: ipcez.Listener) -> None:
    with ws_connect(ws_listener.address, proxy=None, close_timeout=CLOSE_TIMEOUT) as ws:
        peer = ws_listener.accept(timeout=5)
        peer.close()
        t0 = time.monotonic()
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            ws.recv(timeout=CLOSE_TIMEOUT + 1)
        assert time.monotonic() - t0 < CLOSE_TIMEOUT - 0.5, "ipcez did not close the TCP connection"


def test_other_paths_get_404(ws_listener: ipcez.Listener) -> None:
    wrong = ws_listener.address.rsplit("/", 1)[0] + "/elsewhere"
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        ws_connect(wrong, proxy=None, open_timeout=5, close_timeout=CLOSE_TIMEOUT)
    assert info.value.response.status_code == 404
    # ipcez's own client says what to check.
    with pytest.raises(ipcez.WsError, match=r"404 Not Found; check the URL's path"):
        ipcez.connect(wrong)


def test_ipcez_to_ipcez_over_ws(ws_listener: ipcez.Listener) -> None:
    with ipcez.connect(ws_listener.address) as c:
        peer = ws_listener.accept(timeout=5)
        c.send(b"hi")
        assert peer.recv(timeout=5) == b"hi"
        peer.send(b"ho")
        assert c.recv(timeout=5) == b"ho"
        peer.close()
        with pytest.raises(ipcez.ConnectionLost):
            c.recv(timeout=5)


# -- wss -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, Path, Path]:
    """(ca.pem, leaf cert.pem, leaf key.pem) for localhost / 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    d = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    # Extensions as strict verifiers (Python 3.13's VERIFY_X509_STRICT, webpki) want them.
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=ipcez test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "leaf.csr",
        "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text(
        "basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "cert.pem", "-days", "2", "-extfile", "ext.cnf")
    return d / "ca.pem", d / "cert.pem", d / "key.pem"


def test_wss_listener_with_websockets_client(pki: Tuple[Path, Path, Path]) -> None:
    ca, cert, key = pki
    with ipcez.listen("wss://localhost:0/secure", certfile=str(cert), keyfile=key) as listener:
        assert listener.address.startswith("wss://")
        ctx = ssl.create_default_context(cafile=str(ca))
        with ws_connect(listener.address, ssl=ctx, proxy=None, close_timeout=CLOSE_TIMEOUT) as ws:
            peer = listener.accept(timeout=5)
            ws.send(b"over tls")
            assert peer.recv(timeout=5) == b"over tls"
            peer.send(b"and back")
            assert ws.recv(timeout=5) == b"and back"
            peer.close()


def test_wss_client_trusts_ssl_cert_file(pki: Tuple[Path, Path, Path]) -> None:
    ca, cert, key = pki
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))

    def handler(ws: Any) -> None:
        for m in ws:
            ws.send(m)

    srv = WsServer(handler, ssl_context=ctx)
    try:
        code = """
            import os, sys, ipcez
            with ipcez.connect(sys.argv[1]) as s:
                s.send(b"tls echo")
                print(s.recv(timeout=5).decode())
        """
        import os

        os.environ["SSL_CERT_FILE"] = str(ca)
        try:
            result = run_python(code, srv.url, timeout=30)
        finally:
            del os.environ["SSL_CERT_FILE"]
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "tls echo"

        # without the CA the certificate is not trusted: always verified
        result = run_python(code, srv.url, timeout=30)
        assert result.returncode != 0
        assert "SocketError" in result.stderr or "Error" in result.stderr
    finally:
        srv.close()
