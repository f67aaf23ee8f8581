"""Echo client: sends a few messages and prints what comes back, with round-trip times.

Run::

    python examples/echo_client.py                       # /tmp/ipcez-echo.sock
    python examples/echo_client.py ws://127.0.0.1:8765/echo

If no echo server answers at the endpoint, the client starts
``examples/echo_server.py`` for itself, so this one command is a complete demo.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
import time
from typing import Optional, Tuple

import ipcez

# Local endpoints read `target` and `os` from the environment.  A deployment sets
# them once (`export target=local os=linux`); the example defaults them so it runs as is.
os.environ.setdefault("target", "local")
os.environ.setdefault("os", "windows" if sys.platform == "win32" else "linux")

DEFAULT_ENDPOINT = os.path.join(tempfile.gettempdir(), "ipcez-echo.sock")
SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "echo_server.py")


def start_server(endpoint: str) -> Tuple["subprocess.Popen[str]", str]:
    """Start echo_server.py for one client; return it and the address it listens on."""
    server = subprocess.Popen(
        [sys.executable, SERVER, endpoint, "--clients", "1", "--idle", "10"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline()  # "listening on ADDRESS"
    if not line.startswith("listening on "):
        server.kill()
        raise SystemExit(f"the echo server did not start (it said {line!r})")
    return server, line.split(" ", 2)[2].strip()


def main() -> int:
    endpoint = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_ENDPOINT
    server: Optional["subprocess.Popen[str]"] = None
    try:
        sock = ipcez.connect(endpoint)
    except ipcez.IoError as exc:
        if exc.errno not in (errno.ENOENT, errno.ECONNREFUSED):
            raise
        print(f"no echo server at {endpoint}; starting examples/echo_server.py", flush=True)
        server, address = start_server(endpoint)
        sock = ipcez.connect(address)

    with sock:
        print(f"connected to {sock.endpoint} over {sock.transport}", flush=True)
        for message in (b"hello", "gr\u00fc\u00dfe".encode(), bytes(100_000)):
            started = time.perf_counter()
            sock.send(message)
            echo = sock.recv(timeout=5.0)
            took = (time.perf_counter() - started) * 1000
            assert echo == message, "the echo differs from what was sent"
            shown = message.decode() if len(message) < 50 else f"<{len(message)} bytes>"
            print(f"sent {shown!s:>16}  echoed back in {took:.2f} ms", flush=True)

    if server is not None:
        assert server.stdout is not None
        for line in server.stdout:
            print(f"  (server) {line.rstrip()}", flush=True)
        return server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
