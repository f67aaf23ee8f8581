"""The client side of the sync rows: what each implementation can do (``Ops``) and the
workloads run against its echo server (acked send, echo RTT, 1 MiB echo, 1 KiB msgs/s)."""

from __future__ import annotations

import json
import socket
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import usage
from .common import KIB, MIB, SMALL, payload, percentile, raw_recv, raw_send

class Ops:
    """What a client can do: ``send`` (acked, or None), ``echo``, ``kib_burst``."""

    send: Optional[Callable[[bytes], None]] = None
    kib_first = b"S"
    notes: List[str] = []

    def echo(self, m: bytes) -> bytes:
        raise NotImplementedError

    def kib_burst(self, m: bytes, n: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class IpcezOps(Ops):
    def __init__(self, address: str) -> None:
        import ipcez

        self.s = ipcez.connect(address)
        self.ws = self.s.transport == "websocket"
        snd = self.s.send
        rcv = self.s.recv
        if not self.ws:
            self.send = snd

        def echo(m: bytes) -> bytes:
            snd(m)
            return rcv()

        self.echo = echo  # type: ignore[method-assign]
        self.info = {"ipcez_version": ipcez.__version__, "ipcez_file": ipcez.__file__}

    def kib_burst(self, m: bytes, n: int) -> None:
        snd = self.s.send
        for _ in range(n):
            snd(m)
        if self.ws:
            self.echo(b"E")  # the server has taken everything before this

    def close(self) -> None:
        self.s.close()


class MpOps(Ops):
    kib_first = b"A"

    def __init__(self, address: str) -> None:
        from multiprocessing.connection import Client

        self.c = Client(address, family="AF_UNIX")
        sb, rb = self.c.send_bytes, self.c.recv_bytes

        def echo(m: bytes) -> bytes:
            sb(m)
            return rb()

        self.echo = echo  # type: ignore[method-assign]

    def kib_burst(self, m: bytes, n: int) -> None:
        for _ in range(n):
            self.echo(m)

    def close(self) -> None:
        self.c.close()


class RawOps(Ops):
    kib_first = b"A"

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(address)

    def echo(self, m: bytes) -> bytes:
        raw_send(self.sock, m)
        return raw_recv(self.sock)

    def kib_burst(self, m: bytes, n: int) -> None:
        for _ in range(n):
            self.echo(m)

    def close(self) -> None:
        self.sock.close()


class ZmqOps(Ops):
    kib_first = b"A"

    def __init__(self, address: str) -> None:
        import zmq

        self.ctx = zmq.Context()
        self.s = self.ctx.socket(zmq.REQ)
        self.s.setsockopt(zmq.LINGER, 0)
        self.s.connect(address)
        snd, rcv = self.s.send, self.s.recv

        def echo(m: bytes) -> bytes:
            snd(m)
            return rcv()

        self.echo = echo  # type: ignore[method-assign]
        self.info = {"pyzmq": zmq.__version__, "libzmq": zmq.zmq_version()}

    def kib_burst(self, m: bytes, n: int) -> None:
        for _ in range(n):
            self.echo(m)

    def close(self) -> None:
        self.s.close(0)
        self.ctx.term()


class NngOps(Ops):
    kib_first = b"A"

    def __init__(self, address: str) -> None:
        import pynng

        self.s = pynng.Req0(dial=address, recv_max_size=0)
        snd, rcv = self.s.send, self.s.recv

        def echo(m: bytes) -> bytes:
            snd(m)
            return rcv()

        self.echo = echo  # type: ignore[method-assign]
        self.info = {"pynng": getattr(pynng, "__version__", "?")}

    def kib_burst(self, m: bytes, n: int) -> None:
        for _ in range(n):
            self.echo(m)

    def close(self) -> None:
        self.s.close()


class WebsocketsOps(Ops):
    def __init__(self, address: str) -> None:
        import websockets
        from websockets.sync.client import connect

        self.ws = connect(address, max_size=None, compression=None)
        snd, rcv = self.ws.send, self.ws.recv

        def echo(m: bytes) -> bytes:
            snd(m)
            r = rcv()
            return r if isinstance(r, bytes) else r.encode()

        self.echo = echo  # type: ignore[method-assign]
        self.info = {"websockets": websockets.__version__}

    def kib_burst(self, m: bytes, n: int) -> None:
        snd = self.ws.send
        for _ in range(n):
            snd(m)
        self.echo(b"E")

    def close(self) -> None:
        self.ws.close()


CLIENTS: Dict[str, Callable[[str], Ops]] = {
    "ipcez": IpcezOps,
    "mp": MpOps,
    "raw": RawOps,
    "zmq": ZmqOps,
    "nng": NngOps,
    "websockets": WebsocketsOps,
}


def latencies(rounds: int, f: Callable[[], Any]) -> Tuple[float, float]:
    for _ in range(max(rounds // 10, 1)):
        f()
    clock = time.perf_counter_ns
    us: List[float] = []
    append = us.append
    for _ in range(rounds):
        t = clock()
        f()
        append((clock() - t) / 1000.0)
    us.sort()
    return percentile(us, 0.5), percentile(us, 0.99)


def run_client(kind: str, address: str, rounds: int, server_pid: Optional[str] = None) -> None:
    ops = CLIENTS[kind](address)
    out: Dict[str, Any] = dict(getattr(ops, "info", {}))
    try:
        if ops.send is not None:
            small = payload(b"S", SMALL)
            send = ops.send
            out["send_p50_us"], out["send_p99_us"] = latencies(rounds, lambda: send(small))
        small_e = payload(b"E", SMALL)
        echo = ops.echo

        def one_rtt() -> None:
            if len(echo(small_e)) != SMALL:
                raise RuntimeError("short echo")

        out["rtt_p50_us"], out["rtt_p99_us"] = latencies(rounds, one_rtt)

        n_cpu = usage.echoes_for(rounds)
        before = usage.snapshot(server_pid)
        for _ in range(n_cpu):
            echo(small_e)
        out.update(usage.since(before, n_cpu, server_pid))

        big = payload(b"E", MIB)
        big_rounds = max(rounds // 20, 20)
        for _ in range(3):
            echo(big)
        t = time.perf_counter()
        for _ in range(big_rounds):
            if len(echo(big)) != MIB:
                raise RuntimeError("short 1 MiB echo")
        out["echo_1mib_gbps"] = 2 * MIB * big_rounds / (time.perf_counter() - t) / 1e9

        kib = payload(ops.kib_first, KIB)
        n = rounds * 2
        ops.kib_burst(kib, max(n // 10, 1))  # warm-up
        t = time.perf_counter()
        ops.kib_burst(kib, n)
        out["msgs_per_s_1kib"] = n / (time.perf_counter() - t)
    finally:
        ops.close()
    print(json.dumps(out), flush=True)

