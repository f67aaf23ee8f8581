"""Resource bounds under hostile peers, measured on a listener in a process of its own:
its memory (RSS) under a ping flood and under a flood of connections it never accepts, the
connection cap, and a good client that is served within 1 s while slowloris,
connect/close floods and half frames go on (tests/test_descriptors.py: out of descriptors).

Linux only (/proc, AF_UNIX, RLIMIT_NOFILE)."""

from __future__ import annotations

import base64
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

from conftest import python_child

import ipcez

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only: /proc")

MIB = 1024 * 1024


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def stop(proc: "subprocess.Popen[str]") -> str:
    proc.kill()
    _, err = proc.communicate(timeout=10)
    return err


def read_stderr_until(proc: "subprocess.Popen[str]", text: str, seconds: float) -> str:
    """The child's stderr once it contains ``text`` (log records arrive a little after
    the event) or ``seconds`` passed; then the child is stopped."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    os.set_blocking(fd, False)
    seen = b""
    deadline = time.monotonic() + seconds
    while text.encode() not in seen and time.monotonic() < deadline:
        try:
            seen += os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.05)
    proc.kill()
    proc.wait(10)
    return seen.decode("utf-8", "replace")


# A listener process: listens, prints its address, then does what argv[2] says.
LISTENER = """
import logging, sys, time, ipcez
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
lst = ipcez.listen(sys.argv[1], max_connections=int(sys.argv[3]) if len(sys.argv) > 3 else 1024)
print(lst.address, flush=True)
if sys.argv[2] == "accept-and-hold":  # accept, never read
    held = [lst.accept(timeout=30)]
print("ready", flush=True)
time.sleep(60)
"""


def start_listener(endpoint: str, mode: str, *extra: str) -> "tuple[subprocess.Popen[str], str]":
    proc = python_child(LISTENER, endpoint, mode, *extra)
    assert proc.stdout is not None
    address = proc.stdout.readline().strip()
    assert address, proc.stderr.read() if proc.stderr else ""
    return proc, address


def ws_handshake(port: int, path: str = "/x") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def masked(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + body


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


# -- memory ----------------------------------------------------------------------------


def test_ping_flood_that_never_reads_pongs_is_bounded_and_cut_off() -> None:
    proc, address = start_listener("ws://127.0.0.1:0/x", "accept-and-hold")
    try:
        s = ws_handshake(port_of(address))
        # ... and never read. (Shrinking SO_RCVBUF here would stall the kernel's TCP flow
        # itself, so that the flood stops on its own.)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        before = rss_mib(proc.pid)
        ping = masked(9, b"p" * 125) * 64
        s.setblocking(False)
        peak, cut_off, offset = before, False, 0
        start = time.monotonic()
        deadline = start + 15
        while time.monotonic() < deadline:
            try:
                offset = (offset + s.send(ping[offset:])) % len(ping)  # whole frames only
            except BlockingIOError:
                time.sleep(0.001)
            except (BrokenPipeError, ConnectionResetError):
                cut_off = True
                break
            peak = max(peak, rss_mib(proc.pid))
        took = time.monotonic() - start
        err = read_stderr_until(proc, "does not read the pongs", 5)
    finally:
        if proc.poll() is None:
            proc.kill()
    grown = peak - before
    print(f"ping flood: RSS {before:.1f} -> peak {peak:.1f} MiB; cut off: {cut_off} after {took:.1f} s")
    assert grown < 48, f"RSS grew by {grown:.1f} MiB under the ping flood (bound: ~4 MiB + buffers)"
    assert cut_off, "a peer that never reads its pongs must be disconnected"
    assert "does not read the pongs" in err, err[-2000:]


@pytest.mark.parametrize("transport", ["unix", "ws"])
def test_connections_never_accepted_are_read_only_a_small_budget(transport: str, short_dir: Path) -> None:
    endpoint = str(short_dir / "s.sock") if transport == "unix" else "ws://127.0.0.1:0/x"
    proc, address = start_listener(endpoint, "never-accept")
    peers: List[socket.socket] = []
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        before = rss_mib(proc.pid)
        for _ in range(20):
            if transport == "unix":
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(address)
                frame = struct.pack(">I", MIB) + b"u" * MIB  # local frames of 1 MiB
            else:
                s = ws_handshake(port_of(address))
                frame = struct.pack("!BBH", 0x82, 0x80 | 127, 0)[:2] + struct.pack("!Q", MIB)
                frame += os.urandom(4) + b"w" * MIB
            s.setblocking(False)
            peers.append(s)
            sent, blocked_since = 0, None
            # Until 8 MiB are sent or the socket stays full for 0.2 s (nobody reads on).
            while sent < 8 * MIB:
                try:
                    sent += s.send(frame[sent % len(frame):])
                    blocked_since = None
                except BlockingIOError:
                    blocked_since = blocked_since or time.monotonic()
                    if time.monotonic() - blocked_since > 0.2:
                        break
                    time.sleep(0.005)
        time.sleep(0.5)
        grown = rss_mib(proc.pid) - before
        print(f"20 unaccepted {transport} connections: RSS grew {grown:.1f} MiB")
    finally:
        for s in peers:
            s.close()
        stop(proc)
    # 20 connections x (64 KiB budget + read buffers); before: 64 MiB queue each.
    assert grown < 32, f"RSS grew by {grown:.1f} MiB for 20 unaccepted connections"


# -- the connection cap and the accept loop --------------------------------------------


def closed_at_once(connect: Callable[[], socket.socket]) -> bool:
    s = connect()
    s.settimeout(2)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    finally:
        s.close()


def test_max_connections_closes_new_ones_at_once(sock_path: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="ipcez")

    def raw() -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock_path)
        return s

    with ipcez.listen(sock_path, max_connections=3) as lst:
        clients = [ipcez.connect(sock_path) for _ in range(3)]
        accepted = lst.accept(timeout=5)  # accepted ones count as well as waiting ones
        assert closed_at_once(raw), "the 4th connection must be closed at once, not queued"
        deadline = time.monotonic() + 5  # records arrive from the native side's log thread
        while not any("max_connections=3" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.02)
        accepted.close()  # gives its place back
        time.sleep(0.1)
        extra = ipcez.connect(sock_path)
        extra.send(b"in again")
        lst.accept(timeout=5)  # the second and third clients, waiting since before
        lst.accept(timeout=5)
        assert lst.accept(timeout=5).recv(timeout=5) == b"in again"
        for c in clients + [extra]:
            c.close()


def test_max_connections_on_websocket() -> None:
    with ipcez.listen("ws://127.0.0.1:0/x", max_connections=1) as lst:
        port = port_of(lst.address)
        first = ws_handshake(port)
        try:
            assert closed_at_once(lambda: socket.create_connection(("127.0.0.1", port), timeout=5))
        finally:
            first.close()


# -- a good client is served within 1 s while hostile peers are busy -------------------


@pytest.fixture
def echo_listener(sock_path: str) -> Iterator[ipcez.Listener]:
    lst = ipcez.listen(sock_path)

    def serve(sock: ipcez.Socket) -> None:
        try:
            for message in sock:
                sock.send(message)
        except ipcez.SocketError:
            pass
        finally:
            sock.close()

    def accept_loop() -> None:
        for sock in lst:
            threading.Thread(target=serve, args=(sock,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    yield lst
    lst.close()


def round_trip_seconds(endpoint: str) -> float:
    t = time.monotonic()
    with ipcez.connect(endpoint, ack_timeout=5) as c:
        c.send(b"good client")
        assert c.recv(timeout=5) == b"good client"
    return time.monotonic() - t


def worst_round_trip(endpoint: str, while_busy: Callable[[threading.Event], None]) -> float:
    stop_flag = threading.Event()
    attacker = threading.Thread(target=while_busy, args=(stop_flag,), daemon=True)
    attacker.start()
    try:
        time.sleep(0.3)
        return max(round_trip_seconds(endpoint) for _ in range(5))
    finally:
        stop_flag.set()
        attacker.join(10)


FLOOD = """
import socket, sys, time
end = time.monotonic() + float(sys.argv[2])
n = 0
while time.monotonic() < end:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(sys.argv[1])
        n += 1
    except OSError:
        pass
    s.close()
print(n, flush=True)
"""


def test_good_client_during_connect_close_flood(echo_listener: ipcez.Listener) -> None:
    path = echo_listener.address
    cycles: List[int] = []

    def flood(stop_flag: threading.Event) -> None:
        # Another process, as an attacker would be (and so not slowed down by our GIL).
        proc = python_child(FLOOD, path, "4")
        out, err = proc.communicate(timeout=30)
        cycles.append(int(out.strip() or 0))

    worst = worst_round_trip(path, flood)
    assert cycles and cycles[0] > 1000, f"the flood did not run: {cycles}"
    assert worst < 1.0, f"a good client waited {worst:.2f} s during a connect/close flood"


def test_good_client_during_half_frames(echo_listener: ipcez.Listener) -> None:
    path = echo_listener.address
    stalled: List[socket.socket] = []

    def half_frames(stop_flag: threading.Event) -> None:
        for _ in range(50):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.sendall(struct.pack(">I", 4 * MIB) + b"half")  # announces 4 MiB, sends 4 bytes
            stalled.append(s)
        stop_flag.wait(30)

    try:
        worst = worst_round_trip(path, half_frames)
    finally:
        for s in stalled:
            s.close()
    assert len(stalled) == 50
    assert worst < 1.0, f"a good client waited {worst:.2f} s beside 50 half frames"


def test_good_client_during_slowloris() -> None:
    with ipcez.listen("ws://127.0.0.1:0/x") as lst:
        port = port_of(lst.address)
        stalled: List[socket.socket] = []

        def echo() -> None:
            for sock in lst:
                try:
                    sock.send(sock.recv(timeout=5))
                except ipcez.SocketError:
                    pass

        threading.Thread(target=echo, daemon=True).start()

        def slowloris(stop_flag: threading.Event) -> None:
            for _ in range(50):
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the rest
                stalled.append(s)
            while not stop_flag.wait(0.2):
                for s in stalled:
                    s.send(b"X-a: b\r\n")  # a header now and then, never the end

        try:
            worst = worst_round_trip(lst.address, slowloris)
        finally:
            for s in stalled:
                s.close()
        assert len(stalled) == 50
        assert worst < 1.0, f"a good client waited {worst:.2f} s beside 50 stalled handshakes"
