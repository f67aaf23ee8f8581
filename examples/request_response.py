"""Request/response with a timeout: a tiny RPC on top of ipcez messages.

Run::

    python examples/request_response.py              # a Unix socket in the temp directory
    python examples/request_response.py ws://127.0.0.1:0/rpc

A server thread answers JSON requests ``{"id": 1, "op": "add", "args": [2, 3]}``
with ``{"id": 1, "result": 5}``.  The client's ``call()`` sends a request and
waits for the response *with the same id* up to a deadline: ``recv(timeout=...)``
raises :class:`TimeoutError` when time runs out, and a late answer to a request
that already timed out is recognised by its id and dropped.  The server runs in
a thread only to keep the example in one file; it could be any other process.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import tempfile
import threading
import time
from typing import Any

import ipcez

# Local endpoints read `target` and `os` from the environment.  A deployment sets
# them once (`export target=local os=linux`); the example defaults them so it runs as is.
os.environ.setdefault("target", "local")
os.environ.setdefault("os", "windows" if sys.platform == "win32" else "linux")


def handle(request: dict) -> Any:
    """The server's operations."""
    op, args = request["op"], request.get("args", [])
    if op == "add":
        return sum(args)
    if op == "upper":
        return str(args[0]).upper()
    if op == "sleep":  # a slow operation, to show the client's timeout
        time.sleep(args[0])
        return f"slept {args[0]} s"
    raise ValueError(f"unknown operation {op!r}")


def server(listener: ipcez.Listener) -> None:
    with listener.accept(timeout=10) as sock:
        for raw in sock:  # until the client disconnects
            request = json.loads(raw)
            try:
                reply = {"id": request["id"], "result": handle(request)}
            except Exception as exc:  # report errors to the caller instead of dying
                reply = {"id": request["id"], "error": str(exc)}
            try:
                sock.send(json.dumps(reply).encode())
            except ipcez.ConnectionLost:
                return


class Client:
    """Sends requests over one ipcez socket and matches responses by id."""

    def __init__(self, sock: ipcez.Socket) -> None:
        self.sock = sock
        self.ids = itertools.count(1)

    def call(self, op: str, *args: Any, timeout: float = 1.0) -> Any:
        request_id = next(self.ids)
        self.sock.send(json.dumps({"id": request_id, "op": op, "args": args}).encode())
        deadline = time.monotonic() + timeout
        while True:
            try:
                raw = self.sock.recv(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:  # recv's own TimeoutError, reworded for the caller
                raise TimeoutError(f"{op}: no response within {timeout:g} s") from None
            reply = json.loads(raw)
            if reply["id"] != request_id:
                print(f"  (dropping the late response to request {reply['id']}: {reply})")
                continue
            if "error" in reply:
                raise RuntimeError(reply["error"])
            return reply["result"]


def main() -> int:
    endpoint = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        tempfile.gettempdir(), f"ipcez-rpc-{os.getpid()}.sock"
    )
    with ipcez.listen(endpoint) as listener:
        thread = threading.Thread(target=server, args=(listener,), daemon=True)
        thread.start()
        with ipcez.connect(listener.address) as sock:
            rpc = Client(sock)
            print("add(2, 3) =", rpc.call("add", 2, 3))
            print("upper('ipcez') =", rpc.call("upper", "ipcez"))
            try:
                rpc.call("sleep", 0.5, timeout=0.2)
            except TimeoutError as exc:
                print("timed out as expected:", exc)
            try:
                rpc.call("divide", 1, 0)
            except RuntimeError as exc:
                print("the server reported an error:", exc)
            # The late "sleep" response arrives meanwhile and is dropped by id.
            print("add(40, 2) =", rpc.call("add", 40, 2, timeout=2.0))
        thread.join(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
