"""The same script, local or remote: only the environment changes.

The client code below never mentions a transport.  ``ipcez.connect()`` reads the
endpoint from ``IPCEZ_ENDPOINT`` (default: a Unix socket path) and picks a Unix
domain socket for a path (with ``target=local os=linux``) or a WebSocket for a
``ws://`` URL.  To be runnable on its own, the script first starts its own
server (``same_script.py --serve``, a second process) on that endpoint.

Run it twice, changing only the environment::

    $ export target=local os=linux
    $ python examples/same_script.py
    server: listening on /tmp/ipcez-same-script.sock
    client: connected to /tmp/ipcez-same-script.sock over unix
    client: 'ping' -> 'PING'
    client: 'same code, any transport' -> 'SAME CODE, ANY TRANSPORT'
    server: done

    $ IPCEZ_ENDPOINT=ws://127.0.0.1:8765/same python examples/same_script.py
    server: listening on ws://127.0.0.1:8765/same
    client: connected to ws://127.0.0.1:8765/same over websocket
    client: 'ping' -> 'PING'
    client: 'same code, any transport' -> 'SAME CODE, ANY TRANSPORT'
    server: done

(``ws://127.0.0.1:0/same`` picks a free port.)  In a real deployment the server
runs elsewhere and only the client part remains: the same two lines connect to
a process on this machine or across the network.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import ipcez

# Local endpoints read `target` and `os` from the environment; default them so the
# example runs as is (a deployment exports them once instead).
os.environ.setdefault("target", "local")
os.environ.setdefault("os", "windows" if sys.platform == "win32" else "linux")

ENDPOINT = os.environ.get("IPCEZ_ENDPOINT") or os.path.join(tempfile.gettempdir(), "ipcez-same-script.sock")


def serve() -> int:
    """The server: upper-cases every message of one client."""
    with ipcez.listen(ENDPOINT) as listener:
        print(f"server: listening on {listener.address}", flush=True)
        with listener.accept(timeout=10) as sock:
            for message in sock:
                sock.send(message.upper())
    print("server: done", flush=True)
    return 0


def client(endpoint: str) -> None:
    """The part that is the same everywhere."""
    with ipcez.connect(endpoint) as sock:
        print(f"client: connected to {sock.endpoint} over {sock.transport}", flush=True)
        for text in ("ping", "same code, any transport"):
            sock.send(text.encode())
            print(f"client: {text!r} -> {sock.recv(timeout=5).decode()!r}", flush=True)


def main() -> int:
    if sys.argv[1:] == ["--serve"]:
        return serve()
    server = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve"], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    try:
        line = server.stdout.readline()  # "server: listening on ADDRESS"
        print(line, end="", flush=True)
        if not line.startswith("server: listening on "):
            return 1
        # The reported address is the endpoint itself, with the real port if ws://...:0 was asked.
        client(line.split("listening on ", 1)[1].strip())
        print(server.stdout.read(), end="", flush=True)
        return server.wait(timeout=10)
    finally:
        if server.poll() is None:
            server.kill()


if __name__ == "__main__":
    sys.exit(main())
