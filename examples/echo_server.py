"""Echo server: every message a client sends comes straight back to it.

Run it (a Unix socket by default; any endpoint works, e.g. a ws:// URL)::

    python examples/echo_server.py                       # /tmp/ipcez-echo.sock
    python examples/echo_server.py ws://127.0.0.1:8765/echo --clients 3

then, in another terminal, ``python examples/echo_client.py`` with the same
endpoint.  The server serves ``--clients`` clients (default 1, several at once,
each on its own thread), then exits; it also gives up after ``--idle`` seconds
(default 30) without any client.  Ctrl-C stops it too; the socket file is
removed either way.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading

import ipcez

# Local endpoints read `target` and `os` from the environment.  A deployment sets
# them once (`export target=local os=linux`); the example defaults them so it runs as is.
os.environ.setdefault("target", "local")
os.environ.setdefault("os", "windows" if sys.platform == "win32" else "linux")

DEFAULT_ENDPOINT = os.path.join(tempfile.gettempdir(), "ipcez-echo.sock")


def serve(sock: ipcez.Socket, number: int) -> None:
    """Echo every message on one connection until the client goes away."""
    with sock:
        for message in sock:  # ends when the client disconnects
            sock.send(message)  # local transports: returns once the client acked it
            print(f"client {number}: echoed {len(message)} bytes", flush=True)
    print(f"client {number}: disconnected", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description="ipcez echo server")
    parser.add_argument("endpoint", nargs="?", default=DEFAULT_ENDPOINT)
    parser.add_argument("--clients", type=int, default=1, help="exit after serving this many clients")
    parser.add_argument("--idle", type=float, default=30.0, help="exit after this many seconds without a client")
    args = parser.parse_args()

    with ipcez.listen(args.endpoint) as listener:
        # The address is the real one (with the port, when ws://...:0 was asked).
        print(f"listening on {listener.address}", flush=True)
        threads = []
        try:
            for number in range(1, args.clients + 1):
                try:
                    sock = listener.accept(timeout=args.idle)
                except TimeoutError:
                    print(f"no client for {args.idle:g} s; exiting", flush=True)
                    break
                thread = threading.Thread(target=serve, args=(sock, number))
                thread.start()
                threads.append(thread)
            for thread in threads:
                thread.join()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
