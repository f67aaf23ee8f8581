"""Many clients at once: 1, 8 and 64 concurrent clients, spread over up to 4 client
processes, against one request/response server (64 B requests, each answered by an echo).
Each row is one style end to end: the ipcez sync server (a thread per connection) with
sync clients on threads; ``ipcez.aio.serve`` with ``ipcez.aio`` clients; pyzmq ROUTER with
DEALER clients (``zmq.asyncio``); asyncio streams; the ``websockets`` asyncio server.

A client process connects all its clients, says READY, waits for GO on stdin, then every
client sends a request, waits for the answer and sends the next, for a fixed time.  The
figures: answered requests per second over all processes, and the p99 latency of all."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

from .common import HDR, SMALL, payload, percentile, raise_nofile, ready
from .harness import LineReader, Orchestrator

COUNTS = (1, 8, 64)
PROCESSES = 4

#: key, label, transport, server role args (endpoint kind last), client kind, needed module.
ROWS: List[Tuple[str, str, str, Tuple[str, str, str], str, Optional[str]]] = [
    ("mc-ipcez-sync-unix", "ipcez sync server, threads", "local", ("serve", "ipcez", "unix"), "ipcez-sync", None),
    ("mc-ipcez-aio-unix", "ipcez.aio.serve", "local", ("aio-serve", "ipcez", "unix"), "ipcez-aio", None),
    ("mc-zmq", "pyzmq ROUTER/DEALER", "local", ("mc-serve", "zmq-router", "unix"), "zmq", "zmq"),
    ("mc-streams", "asyncio streams", "local", ("aio-serve", "streams", "unix"), "streams", None),
    ("mc-ipcez-sync-ws", "ipcez sync server, threads", "remote", ("serve", "ipcez", "ws"), "ipcez-sync", None),
    ("mc-ipcez-aio-ws", "ipcez.aio.serve", "remote", ("aio-serve", "ipcez", "ws"), "ipcez-aio", None),
    ("mc-websockets", "websockets asyncio server", "remote", ("aio-serve", "websockets", "ws"), "websockets", "websockets"),
]


# ---------------------------------------------------------------------------
# child: the ROUTER server and the client processes
# ---------------------------------------------------------------------------


def serve_router(path: str) -> None:
    import zmq

    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(f"ipc://{path}")
    ready(f"ipc://{path}")
    while True:
        frames = router.recv_multipart()
        if frames[-1][:1] == b"E":
            router.send_multipart(frames)


Echo = Callable[[bytes], Awaitable[bytes]]


async def _open(kind: str, address: str) -> Tuple[Echo, Callable[[], Awaitable[None]]]:
    """One asyncio client of ``kind``: its echo and its close."""
    if kind == "ipcez-aio":
        import ipcez.aio

        s = await ipcez.aio.connect(address)

        async def echo(m: bytes) -> bytes:
            await s.send(m)
            return await s.recv()

        return echo, s.close
    if kind == "streams":
        reader, writer = await asyncio.open_unix_connection(address)

        async def echo(m: bytes) -> bytes:
            writer.write(HDR.pack(len(m)) + m)
            await writer.drain()
            (n,) = HDR.unpack(await reader.readexactly(4))
            return await reader.readexactly(n)

        async def close() -> None:
            writer.close()

        return echo, close
    if kind == "websockets":
        from websockets.asyncio.client import connect

        ws = await connect(address, max_size=None, compression=None)

        async def echo(m: bytes) -> bytes:
            await ws.send(m)
            r = await ws.recv()
            return r if isinstance(r, bytes) else r.encode()

        return echo, ws.close
    import zmq
    import zmq.asyncio

    ctx = zmq.asyncio.Context.instance()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(address)

    async def echo(m: bytes) -> bytes:
        await dealer.send(m)
        return bytes(await dealer.recv())

    async def close() -> None:
        dealer.close(0)

    return echo, close


async def _run_async(kind: str, address: str, n: int, seconds: float) -> Dict[str, Any]:
    conns = [await _open(kind, address) for _ in range(n)]
    for echo, _ in conns:  # warm-up, and proof that each connection works
        await echo(payload(b"E", SMALL))
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    latencies: List[float] = []
    deadline = time.perf_counter_ns() + int(seconds * 1e9)

    async def one(echo: Echo) -> None:
        m = payload(b"E", SMALL)
        clock = time.perf_counter_ns
        while True:
            t = clock()
            if len(await echo(m)) != SMALL:
                raise RuntimeError("short answer")
            done = clock()
            if done > deadline:
                return
            latencies.append((done - t) / 1000.0)

    await asyncio.gather(*(one(echo) for echo, _ in conns))
    for _, close in conns:
        await close()
    return {"count": len(latencies), "latencies_us": [round(x, 1) for x in latencies]}


def _run_threads(address: str, n: int, seconds: float) -> Dict[str, Any]:
    import ipcez

    socks = [ipcez.connect(address) for _ in range(n)]
    for s in socks:
        s.send(payload(b"E", SMALL))
        s.recv(timeout=10)
    print("READY", flush=True)
    sys.stdin.readline()
    per_thread: List[List[float]] = [[] for _ in socks]
    deadline = time.perf_counter_ns() + int(seconds * 1e9)

    def one(s: Any, out: List[float]) -> None:
        m = payload(b"E", SMALL)
        clock = time.perf_counter_ns
        while True:
            t = clock()
            s.send(m)
            s.recv(timeout=30)
            done = clock()
            if done > deadline:
                return
            out.append((done - t) / 1000.0)

    threads = [threading.Thread(target=one, args=(s, out)) for s, out in zip(socks, per_thread)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in socks:
        s.close()
    latencies = [x for out in per_thread for x in out]
    return {"count": len(latencies), "latencies_us": [round(x, 1) for x in latencies]}


def child_main(role: str, args: List[str]) -> None:
    """``mc-serve zmq-router PATH`` / ``mc-client KIND ADDR N SECONDS``."""
    if role == "mc-serve":
        serve_router(args[1])
        return
    kind, address, n, seconds = args[0], args[1], int(args[2]), float(args[3])
    raise_nofile(4 * n + 256)
    if kind == "ipcez-sync":
        out = _run_threads(address, n, seconds)
    else:
        out = asyncio.run(_run_async(kind, address, n, seconds))
    print(json.dumps(out), flush=True)


# ---------------------------------------------------------------------------
# orchestration
# ---------------------------------------------------------------------------


def _one(orch: Orchestrator, address: str, client: str, clients: int, seconds: float) -> Dict[str, Any]:
    """``clients`` concurrent clients in up to 4 processes for ``seconds``: msgs/s and p99."""
    nproc = min(PROCESSES, clients)
    shares = [clients // nproc + (1 if i < clients % nproc else 0) for i in range(nproc)]
    procs = [orch.popen(orch.child_cmd("mc-client", client, address, str(k), str(seconds)), True, "mc-client")
             for k in shares]
    try:
        readers = [LineReader(p) for p in procs]
        for p, r in zip(procs, readers):
            if r.readline(30) != "READY":
                raise RuntimeError(f"a client process did not connect: {orch.stderr_tail(p) or 'no output'}")
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(b"GO\n")
            p.stdin.flush()
        results = []
        for p, r in zip(procs, readers):
            line = r.readline(seconds + 60)
            if line is None:
                raise RuntimeError(f"a client process gave no result: {orch.stderr_tail(p) or 'no output'}")
            results.append(json.loads(line))
            r.close()
    finally:
        for p in procs:
            orch.stop(p)
    latencies = sorted(x for r in results for x in r["latencies_us"])
    if not latencies:
        raise RuntimeError("no request was answered")
    return {"msgs_per_s": sum(r["count"] for r in results) / seconds, "p99_us": percentile(latencies, 0.99)}


def measure(orch: Orchestrator) -> Dict[str, Any]:
    seconds = 1.0 if orch.quick else 3.0
    rows: Dict[str, Dict[str, Any]] = {}
    for key, label, transport, (role, kind, ep_kind), client, module in ROWS:
        entry: Dict[str, Any] = {"label": label, "transport": transport}
        rows[key] = entry
        if module and not orch.have_module(module):
            entry["skipped"] = f"python module {module!r} not installed"
            continue
        for clients in COUNTS:
            if orch.left() < seconds + 8:
                entry.setdefault("skipped", "time budget used up")
                orch.notes.append(f"many clients, {label}: {clients} clients skipped, time budget used up")
                break
            endpoint = "ws://127.0.0.1:0/mc" if ep_kind == "ws" else orch.sock_path(f"{key}-{clients}")
            print(f"[run] many clients: {label} ({transport}), {clients} ...", end="", flush=True)
            t = time.monotonic()
            try:
                server, address = orch.start_server(orch.child_cmd(role, kind, endpoint), tag=f"{key}-server")
                try:
                    entry[str(clients)] = _one(orch, address, client, clients, seconds)
                finally:
                    orch.stop(server)
                print(f" {time.monotonic() - t:.1f} s", flush=True)
            except Exception as exc:  # one broken row must not sink the run
                orch.notes.append(f"many clients, {label}, {clients}: failed: {exc}")
                print(f" failed: {exc}", flush=True)
    return {"seconds": seconds, "rows": rows}


def _best(rows: Dict[str, Dict[str, Any]], transport: str, ipcez_rows: bool) -> Optional[Tuple[str, float]]:
    found = [(e["label"], e["64"]["msgs_per_s"]) for k, e in rows.items()
             if e["transport"] == transport and "64" in e and k.startswith("mc-ipcez") == ipcez_rows]
    return max(found, key=lambda x: x[1]) if found else None


def render(mc: Dict[str, Any]) -> str:
    rows = mc.get("rows", {})
    out = [f"Many clients: request/response, 64 B, {mc.get('seconds', 0):g} s per point, clients over up to "
           f"{PROCESSES} processes (msgs/s, p99 µs)"]
    for transport, title in (("local", "Unix socket / ipc"), ("remote", "WebSocket")):
        out.append(f" {title}")
        out.append(f"  {'':<30}" + "".join(f"{str(n) + ' client' + ('s' if n > 1 else ''):>22}" for n in COUNTS))
        for e in rows.values():
            if e["transport"] != transport:
                continue
            cells = "".join(
                f"{e[str(n)]['msgs_per_s'] / 1000:>11.1f}k {e[str(n)]['p99_us']:>8.0f}µs" if str(n) in e else f"{'—':>22}"
                for n in COUNTS
            )
            out.append(f"  {e['label']:<30}{cells}" + (f"  ({e['skipped']})" if "skipped" in e else ""))
    return "\n".join(out)


def evaluate(mc: Dict[str, Any]) -> List[Dict[str, Any]]:
    rows = mc.get("rows", {})
    targets = []
    for transport, title in (("local", "Unix"), ("remote", "ws")):
        mine, anchor = _best(rows, transport, True), _best(rows, transport, False)
        name = f"many clients, {title}: ipcez's best / best anchor at 64 clients"
        if mine is None or anchor is None:
            targets.append({"target": name, "status": "SKIP", "value": None, "limit": ">= 1.0x"})
            continue
        r = mine[1] / anchor[1]
        targets.append({"target": name, "status": "PASS" if r >= 1.0 else "MISS",
                        "value": f"{r:.2f}x ({mine[0]} vs {anchor[0]})", "limit": ">= 1.0x"})
    return targets
