"""The echo servers, one per implementation, each run in a child process of its own.
A message's first byte says what to do: b'E' echo, b'A' answer one byte, else swallow."""

from __future__ import annotations

import os
import socket
import threading
from typing import Any, Callable, Dict

from .common import raw_recv, raw_send, reply_for, ready

def serve_ipcez(endpoint: str) -> None:
    import ipcez

    def conn(s: Any) -> None:
        with s:
            try:
                for m in s:
                    if m[:1] == b"E":
                        s.send(m)
            except ipcez.SocketError:
                pass

    with ipcez.listen(endpoint) as listener:
        ready(listener.address)
        while True:
            s = listener.accept()
            threading.Thread(target=conn, args=(s,), daemon=True).start()


def serve_mp(path: str) -> None:
    from multiprocessing.connection import Listener

    def conn(c: Any) -> None:
        with c:
            try:
                while True:
                    r = reply_for(c.recv_bytes())
                    if r is not None:
                        c.send_bytes(r)
            except (EOFError, OSError):
                pass

    with Listener(path, family="AF_UNIX") as listener:
        ready(path)
        while True:
            threading.Thread(target=conn, args=(listener.accept(),), daemon=True).start()


def serve_raw(path: str) -> None:
    def conn(c: socket.socket) -> None:
        with c:
            try:
                while True:
                    r = reply_for(raw_recv(c))
                    if r is not None:
                        raw_send(c, r)
            except (EOFError, OSError):
                pass

    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        srv.bind(path)
        srv.listen(16)
        ready(path)
        while True:
            c, _ = srv.accept()
            threading.Thread(target=conn, args=(c,), daemon=True).start()
    finally:
        srv.close()
        try:
            os.unlink(path)
        except OSError:
            pass


def serve_zmq(path: str) -> None:
    import zmq

    ctx = zmq.Context()
    rep = ctx.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    try:
        rep.bind("ipc://" + path)
        ready("ipc://" + path)
        while True:
            if not rep.poll(100):
                continue
            m = rep.recv()
            r = reply_for(m)
            rep.send(b"" if r is None else r)
    finally:
        rep.close(0)
        ctx.term()


def serve_nng(path: str) -> None:
    import pynng

    with pynng.Rep0(listen="ipc://" + path, recv_timeout=100, recv_max_size=0) as rep:
        ready("ipc://" + path)
        while True:
            try:
                m = rep.recv()
            except pynng.Timeout:
                continue
            r = reply_for(m)
            rep.send(b"" if r is None else r)


def serve_websockets(_: str) -> None:
    from websockets.sync.server import serve

    def handler(ws: Any) -> None:
        try:
            for m in ws:
                r = reply_for(m if isinstance(m, bytes) else m.encode())
                if r is not None:
                    ws.send(r)
        except Exception:
            pass

    # compression off on both ends: ipcez does not compress, and deflating the
    # payloads would measure zlib rather than the transport.
    with serve(handler, "127.0.0.1", 0, max_size=None, compression=None) as server:
        port = server.socket.getsockname()[1]
        ready(f"ws://127.0.0.1:{port}/")
        server.serve_forever()


SERVERS: Dict[str, Callable[[str], None]] = {
    "ipcez": serve_ipcez,
    "mp": serve_mp,
    "raw": serve_raw,
    "zmq": serve_zmq,
    "nng": serve_nng,
    "websockets": serve_websockets,
}
