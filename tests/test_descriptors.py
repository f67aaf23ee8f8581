"""A listener out of file descriptors, in a process of its own with a low `ulimit -n`.

Regressions:
- Unix: with every descriptor held by connections the application accepted, a good
  client's connection sat in the kernel's backlog, never accepted, and its send ran into
  ``RecipientAckTimeout`` after 5 s. Now the listener lends itself a spare descriptor to
  take such newcomers and close them at once: the client sees ``ConnectionLost`` at once.
- WebSocket: 70 half-sent HTTP requests under ``ulimit -n 64`` made a good client wait
  9.8 s, until the attackers' handshakes timed out. Now a handshake slower than 200 ms
  makes way for a newcomer when descriptors (or places under the cap) run out.
- The default ``max_connections`` fits under the descriptor limit (24 under 64).

Each scenario also runs while two processes keep both cores busy.

Linux only (/proc, RLIMIT_NOFILE)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from typing import Iterator, List, Optional

import pytest

from conftest import cpu_seconds, python_child, wait_for_line

import ipcez

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only: /proc")

ATTACKERS = 70


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture(params=["idle", "busy"])
def load(request: pytest.FixtureRequest) -> Iterator[str]:
    """Nothing, or two spinning processes that keep both cores busy."""
    spinners: List["subprocess.Popen[bytes]"] = []
    if request.param == "busy":
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield request.param
    finally:
        for p in spinners:
            p.kill()
            p.wait()


SERVER = """
import logging, resource, sys, threading, ipcez
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
cap = None if sys.argv[2] == "default" else int(sys.argv[2])
lst = ipcez.listen(sys.argv[1], max_connections=cap)
print(lst.address, flush=True)

def echo(sock):
    with sock:  # closed when the peer hangs up
        try:
            for m in sock:
                sock.send(m)
        except ipcez.SocketError:
            pass

for sock in lst:  # the application keeps (and reads from) every connection it gets
    threading.Thread(target=echo, args=(sock,), daemon=True).start()
"""


def start_server(endpoint: str, cap: str) -> "tuple[subprocess.Popen[str], str]":
    proc = python_child(SERVER, endpoint, cap)
    assert proc.stdout is not None
    address = proc.stdout.readline().strip()
    assert address, proc.stderr.read() if proc.stderr else ""
    return proc, address


def echo_once(address: str) -> float:
    """A good client's whole visit (connect, send, receive the echo), in seconds."""
    started = time.monotonic()
    with ipcez.connect(address, ack_timeout=5) as c:
        c.send(b"good client")
        assert c.recv(timeout=5) == b"good client"
    return time.monotonic() - started


def stop(proc: "subprocess.Popen[str]") -> str:
    proc.kill()
    _, err = proc.communicate(timeout=10)
    return err


@pytest.mark.parametrize("cap", ["1000", "default"])
def test_unix_newcomer_is_refused_at_once_when_every_descriptor_is_held(
    sock_path: str, cap: str, load: str
) -> None:
    proc, address = start_server(sock_path, cap)
    attackers: List[socket.socket] = []
    try:
        for _ in range(ATTACKERS):  # idle connections the application accepts and keeps
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock_path)
            attackers.append(s)
        time.sleep(0.5)
        held = open_descriptors(proc.pid)
        assert held <= 64
        started = time.monotonic()
        with pytest.raises((ipcez.ConnectionLost, ConnectionRefusedError)):
            with ipcez.connect(address, ack_timeout=5) as c:
                c.send(b"turned away?")
                c.recv(timeout=5)
        refused = time.monotonic() - started
        cpu = cpu_seconds(proc.pid)
        time.sleep(2)
        spent = cpu_seconds(proc.pid) - cpu
        for s in attackers:
            s.close()
        attackers.clear()
        time.sleep(0.2)  # the server notices the hang-ups
        served = echo_once(address)
    finally:
        for s in attackers:
            s.close()
        err = stop(proc)
    print(f"unix cap={cap} {load}: refused in {refused:.3f} s, {spent:.2f} s CPU in 2 s, served in {served:.3f} s")
    assert refused < 1.0, f"refused after {refused:.2f} s ({load}); stderr: {err[-2000:]}"
    assert spent < 0.2, f"{spent:.2f} s of CPU in 2 s while saturated ({load})"
    assert served < 1.0, f"served {served:.2f} s after the attackers left ({load})"
    if cap == "default":
        assert "max_connections=24, to fit under the descriptor limit" in err, err[-2000:]
    else:
        assert err.count("out of file descriptors") == 1, err[-2000:]


@pytest.mark.parametrize("cap", ["1000", "default"])
def test_websocket_slowloris_under_a_descriptor_limit(cap: str, load: str) -> None:
    proc, address = start_server("ws://127.0.0.1:0/x", cap)
    port = int(address.rsplit(":", 1)[1].split("/")[0])
    attackers: List[socket.socket] = []
    try:
        for _ in range(ATTACKERS):  # half-sent HTTP requests, never finished
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            attackers.append(s)
        time.sleep(0.5)
        assert open_descriptors(proc.pid) <= 64
        waited = echo_once(address)
        cpu = cpu_seconds(proc.pid)
        time.sleep(2)
        spent = cpu_seconds(proc.pid) - cpu
        again = echo_once(address)
        for s in attackers:
            s.close()
        attackers.clear()
        time.sleep(0.2)
        after = echo_once(address)
    finally:
        for s in attackers:
            s.close()
        err = stop(proc)
    print(f"ws cap={cap} {load}: served in {waited:.3f} s and {again:.3f} s, {spent:.2f} s CPU in 2 s, "
          f"after: {after:.3f} s")
    # 1 s is the promise; with both cores spun by other processes the test allows 1.5 s (seen
    # so far: at most 0.65 s at a load average of 9 on 2 cores).
    bound = 1.0 if load == "idle" else 1.5
    assert waited < bound, f"a good client waited {waited:.2f} s beside {ATTACKERS} stalled handshakes ({load})"
    assert again < bound, f"the second good client waited {again:.2f} s ({load})"
    assert spent < 0.2, f"{spent:.2f} s of CPU in 2 s while saturated ({load})"
    assert after < 1.0, f"served {after:.2f} s after the attackers left ({load})"
    assert "dropped a WebSocket handshake slower than" in err, err[-2000:]


EXHAUSTED = """
import logging, os, resource, sys, ipcez
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
lst = ipcez.listen(sys.argv[1])
hog = []
try:
    while True:
        hog.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
print("exhausted", flush=True)
sys.stdin.readline()
for fd in hog:
    os.close(fd)
print("freed", flush=True)
sock = lst.accept(timeout=10)
sock.send(sock.recv(timeout=10))
print("served", flush=True)
sys.stdin.readline()
"""


def test_out_of_descriptors_refuses_at_once_without_spinning_and_recovers(sock_path: str) -> None:
    """Every descriptor taken by something else: the newcomer is closed at once (it used to
    wait in the backlog until served or timed out), the loop does not spin, and once
    descriptors are free again the next client is served."""
    proc = python_child(EXHAUSTED, sock_path, stdin=subprocess.PIPE)
    outcome: List[Optional[BaseException]] = []
    try:
        wait_for_line(proc, "exhausted")
        started = time.monotonic()
        client = ipcez.connect(sock_path)  # taken from the backlog and closed

        def visit() -> None:
            try:
                client.send(b"anyone?")
                client.recv(timeout=5)
                outcome.append(None)
            except BaseException as e:  # noqa: BLE001 -- what happened is the result
                outcome.append(e)

        t = threading.Thread(target=visit, daemon=True)
        t.start()
        t.join(5)
        refused = time.monotonic() - started
        cpu = cpu_seconds(proc.pid)
        time.sleep(2)
        spun = cpu_seconds(proc.pid) - cpu
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        wait_for_line(proc, "freed")
        served = echo_once(sock_path)
        wait_for_line(proc, "served", timeout=10)
        proc.stdin.write("\n")
        proc.stdin.flush()
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"exhausted: refused in {refused:.3f} s, {spun:.2f} s CPU in 2 s, served in {served:.3f} s after")
    assert outcome and isinstance(outcome[0], ipcez.ConnectionLost), outcome
    assert refused < 1.0, f"refused after {refused:.2f} s"
    assert spun < 0.2, f"the accept loop used {spun:.2f} s of CPU in 2 s while out of descriptors"
    assert served < 1.0, f"served {served:.2f} s after descriptors were free again"
    assert err.count("out of file descriptors") == 1, err[-3000:]
