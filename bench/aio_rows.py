"""The asyncio and streaming rows of ``bench/compare.py``.

* aio echo RTT, 64 B: ``ipcez.aio`` against ``asyncio`` streams over AF_UNIX, and
  over WebSocket against the ``websockets`` asyncio client (each with a server of
  its own kind in another process);
* one-way stream of 64 B messages, msgs/s: ipcez ``send_many`` (every message
  acked) against ``multiprocessing.connection`` ``send_bytes`` (unacked) and pyzmq
  PUSH/PULL; each stream ends when the server has taken the last message;
* receiving aio connections: extra threads for 1,000, and 10,000 connections on one
  ``ipcez.aio.serve`` listener, each echoing one message.

Every figure is reported beside its anchor from the same run, as a ratio. The
children run through compare.py's ``_child`` entry point (roles ``aio-*``).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import usage
from .common import HDR, payload, percentile, proc_threads, raise_nofile, ready

SMALL = 64
MIB = 1024 * 1024


# ---------------------------------------------------------------------------
# child: servers (first stdout line: READY <address>)
# ---------------------------------------------------------------------------


async def _serve_ipcez(endpoint: str) -> None:
    import ipcez.aio

    async def echo(sock: Any) -> None:
        async for m in sock:
            if m[:1] == b"E":
                await sock.send(m)

    raise_nofile(1 << 20)
    # Above the 10,000-connection row (the default cap is 1,024).
    async with ipcez.aio.serve(echo, endpoint, max_connections=20_000) as server:
        ready(server.address)
        await server.serve_forever()


async def _serve_streams(path: str) -> None:
    async def conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (n,) = HDR.unpack(await reader.readexactly(4))
                m = await reader.readexactly(n)
                if m[:1] == b"E":
                    writer.write(HDR.pack(n) + m)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_unix_server(conn, path)
    ready(path)
    async with server:
        await server.serve_forever()


async def _serve_websockets(_: str) -> None:
    from websockets.asyncio.server import serve

    async def echo(ws: Any) -> None:
        async for m in ws:
            if m[:1] in (b"E", "E"):
                await ws.send(m)

    async with serve(echo, "127.0.0.1", 0, max_size=None, compression=None) as server:
        port = list(server.sockets)[0].getsockname()[1]
        ready(f"ws://127.0.0.1:{port}/")
        await server.serve_forever()


def _serve_zmq_pull(path: str) -> None:
    import zmq

    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind(f"ipc://{path}")
    back = ctx.socket(zmq.PUSH)
    back.bind(f"ipc://{path}.back")
    ready(path)
    while True:
        m = pull.recv()
        if m[:1] == b"E":
            back.send(m)


def _run_streams(path: str) -> None:
    try:
        asyncio.run(_serve_streams(path))
    finally:
        os.unlink(path)  # asyncio leaves its socket file behind


SERVERS: Dict[str, Callable[[str], Any]] = {
    "ipcez": lambda ep: asyncio.run(_serve_ipcez(ep)),
    "streams": _run_streams,
    "websockets": lambda ep: asyncio.run(_serve_websockets(ep)),
    "zmq-pull": _serve_zmq_pull,
}


# ---------------------------------------------------------------------------
# child: clients (last stdout line: a JSON object)
# ---------------------------------------------------------------------------


async def _rtts(rounds: int, echo: Callable[[bytes], Any], server_pid: Optional[str]) -> Dict[str, float]:
    m = payload(b"E", SMALL)
    for _ in range(max(rounds // 10, 1)):
        await echo(m)
    clock = time.perf_counter_ns
    us: List[float] = []
    for _ in range(rounds):
        t = clock()
        if len(await echo(m)) != SMALL:
            raise RuntimeError("short echo")
        us.append((clock() - t) / 1000.0)
    us.sort()
    out = {"rtt_p50_us": percentile(us, 0.5), "rtt_p99_us": percentile(us, 0.99)}
    n_cpu = usage.echoes_for(rounds)
    before = usage.snapshot(server_pid)
    for _ in range(n_cpu):
        await echo(m)
    out.update(usage.since(before, n_cpu, server_pid))
    return out


async def _client_ipcez(address: str, rounds: int, server_pid: Optional[str]) -> Dict[str, float]:
    import ipcez.aio

    async with ipcez.aio.connect(address) as s:

        async def echo(m: bytes) -> bytes:
            await s.send(m)
            return await s.recv()

        return await _rtts(rounds, echo, server_pid)


async def _client_streams(path: str, rounds: int, server_pid: Optional[str]) -> Dict[str, float]:
    reader, writer = await asyncio.open_unix_connection(path)

    async def echo(m: bytes) -> bytes:
        writer.write(HDR.pack(len(m)) + m)
        await writer.drain()
        (n,) = HDR.unpack(await reader.readexactly(4))
        return await reader.readexactly(n)

    try:
        return await _rtts(rounds, echo, server_pid)
    finally:
        writer.close()


async def _client_websockets(address: str, rounds: int, server_pid: Optional[str]) -> Dict[str, float]:
    from websockets.asyncio.client import connect

    async with connect(address, max_size=None, compression=None) as ws:

        async def echo(m: bytes) -> bytes:
            await ws.send(m)
            r = await ws.recv()
            return r if isinstance(r, bytes) else r.encode()

        return await _rtts(rounds, echo, server_pid)


def _stream(kind: str, address: str, n: int) -> Dict[str, float]:
    """``n`` one-way 64 B messages, then one echo so the server has taken them all."""
    msgs = [payload(b"S", SMALL) for _ in range(1000)]
    batch = (msgs * (n // len(msgs) + 1))[:n]
    end = payload(b"E", SMALL)
    if kind == "ipcez":
        import ipcez

        s = ipcez.connect(address)
        s.send_many(batch[: n // 10])  # warm-up
        t = time.perf_counter()
        s.send_many(batch)  # returns once every message is acked: taken by the server
        s.send(end)
        s.recv()
        dt = time.perf_counter() - t
        s.close()
    elif kind == "mp":
        from multiprocessing.connection import Client

        c = Client(address, family="AF_UNIX")
        for m in batch[: n // 10]:
            c.send_bytes(m)
        t = time.perf_counter()
        send = c.send_bytes
        for m in batch:
            send(m)
        send(end)
        c.recv_bytes()
        dt = time.perf_counter() - t
        c.close()
    else:
        import zmq

        ctx = zmq.Context()
        push = ctx.socket(zmq.PUSH)
        push.connect(f"ipc://{address}")
        back = ctx.socket(zmq.PULL)
        back.connect(f"ipc://{address}.back")
        for m in batch[: n // 10]:
            push.send(m)
        t = time.perf_counter()
        send = push.send
        for m in batch:
            send(m)
        send(end)
        back.recv()
        dt = time.perf_counter() - t
        ctx.destroy(linger=0)
    return {"msgs_per_s_64b": n / dt}


async def _many(address: str, n: int) -> Dict[str, Any]:
    """``n`` aio connections to one listener, all open at once, each echoing one message."""
    import ipcez.aio

    raise_nofile(n + 1000)
    t = time.perf_counter()
    socks = await asyncio.gather(*(ipcez.aio.connect(address) for _ in range(n)))
    connect_s = time.perf_counter() - t

    async def one(i: int, s: Any) -> bool:
        m = b"E%d" % i
        await s.send(m)
        return bool(await s.recv(timeout=60) == m)

    t = time.perf_counter()
    ok = await asyncio.gather(*(one(i, s) for i, s in enumerate(socks)), return_exceptions=True)
    echo_s = time.perf_counter() - t
    errors = sorted({repr(x)[:120] for x in ok if isinstance(x, BaseException)})
    for s in socks:
        await s.close()
    return {
        "connected": len(socks),
        "echoed": sum(1 for x in ok if x is True),
        "connect_s": connect_s,
        "echo_all_s": echo_s,
        "client_threads": proc_threads(),
        "errors": errors[:3],
    }


def child_main(role: str, args: List[str]) -> None:
    """``aio-serve KIND EP`` / ``aio-client KIND ADDR ROUNDS`` / ``aio-stream KIND ADDR N`` /
    ``aio-many ADDR N``."""
    if role == "aio-serve":
        SERVERS[args[0]](args[1])
        return
    if role == "aio-client":
        clients = {"ipcez": _client_ipcez, "streams": _client_streams, "websockets": _client_websockets}
        pid = args[3] if len(args) > 3 else None
        out: Dict[str, Any] = asyncio.run(clients[args[0]](args[1], int(args[2]), pid))
    elif role == "aio-stream":
        out = _stream(args[0], args[1], int(args[2]))
    elif role == "aio-many":
        out = asyncio.run(_many(args[0], int(args[1])))
    else:
        raise SystemExit(f"unknown child role {role!r}")
    print(json.dumps(out), flush=True)


# ---------------------------------------------------------------------------
# orchestration (run by compare.py's Orchestrator)
# ---------------------------------------------------------------------------

#: key, label, server role args, client role args (ADDRESS is filled in), anchor key.
RTT_ROWS: List[Tuple[str, str, str, str, Optional[str], Optional[str]]] = [
    ("aio-ipcez-unix", "ipcez.aio, unix", "ipcez", "unix", "aio-streams", None),
    ("aio-streams", "asyncio streams AF_UNIX", "streams", "unix", None, None),
    ("aio-ipcez-ws", "ipcez.aio, ws", "ipcez", "ws", "aio-websockets", None),
    ("aio-websockets", "websockets (asyncio)", "websockets", "ws", None, "websockets"),
]
STREAM_ROWS: List[Tuple[str, str, str, Optional[str], Optional[str]]] = [
    ("stream-ipcez", "ipcez send_many (acked)", "ipcez", "stream-mp", None),
    ("stream-mp", "mp.connection send_bytes", "mp", None, None),
    ("stream-zmq", "pyzmq PUSH/PULL", "zmq-pull", "stream-mp", "zmq"),
]
#: Targets: row key, column, anchor key, "<=" or ">=", limit.
TARGETS = [
    ("aio-ipcez-unix", "rtt_p50_us", "aio-streams", "<=", 0.8),
    ("aio-ipcez-ws", "rtt_p50_us", "aio-websockets", "<=", 0.6),
    ("stream-ipcez", "msgs_per_s_64b", "stream-mp", ">=", 1.0),
]


def measure(orch: Any) -> Dict[str, Any]:
    """Every row once (twice for the RTTs in a full run, median), then the many-connection
    rows; a failing row is noted and skipped."""
    rows: Dict[str, Dict[str, Any]] = {}
    rounds = orch.rounds
    for key, label, server_kind, ep_kind, _anchor, module in RTT_ROWS:
        rows[key] = _run_row(
            orch, key, label, module, ("aio-serve", server_kind, ep_kind), ("aio-client", server_kind), str(rounds)
        )
    n = 20_000 if orch.quick else 200_000
    for key, label, kind, _anchor, module in STREAM_ROWS:
        client_kind = "zmq" if kind == "zmq-pull" else kind
        rows[key] = _run_row(orch, key, label, module, ("aio-serve-sync", kind, "unix"), ("aio-stream", client_kind), str(n))
    return {"rows": rows, "many": _many_rows(orch)}


def _run_row(orch: Any, key: str, label: str, module: Optional[str], server: Tuple[str, ...],
             client: Tuple[str, ...], count: str) -> Dict[str, Any]:
    entry: Dict[str, Any] = {"label": label}
    if module and not orch.have_module(module):
        entry["skipped"] = f"python module {module!r} not installed"
        return entry
    if orch.left() < 8:
        entry["skipped"] = "time budget used up"
        return entry
    role, kind, ep_kind = server
    endpoint = "ws://127.0.0.1:0/aio" if ep_kind == "ws" else orch.sock_path(key)
    if role == "aio-serve-sync":  # the existing sync echo servers of compare.py
        server_cmd = orch.child_cmd("serve", kind, endpoint) if kind != "zmq-pull" else orch.child_cmd("aio-serve", kind, endpoint)
    else:
        server_cmd = orch.child_cmd(role, kind, endpoint)
    print(f"[run] {label} ...", end="", flush=True)
    t = time.monotonic()
    try:
        proc, address = orch.start_server(server_cmd, tag=f"{key}-server")
        try:
            timeout = min(60.0, max(orch.left(), 5.0))
            pid = [str(proc.pid)] if client[0] == "aio-client" else []
            cmd = orch.child_cmd(client[0], client[1], address, count, *pid)
            entry.update(orch.run_json(cmd, timeout, f"{key}-client"))
        finally:
            orch.stop(proc)
        print(f" {time.monotonic() - t:.1f} s", flush=True)
    except Exception as exc:  # one broken row must not sink the run
        entry["skipped"] = f"failed: {exc}"
        orch.notes.append(f"{label}: failed: {exc}")
        print(f" failed: {exc}", flush=True)
    return entry


def _many_rows(orch: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    n = 10_000
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < n + 500:
        out["skipped"] = f"the hard RLIMIT_NOFILE is {hard}; {n:,} connections need {n + 500:,}"
        return out
    if orch.left() < 15:
        out["skipped"] = "time budget used up"
        return out
    print(f"[run] {n:,} aio connections on one listener ...", end="", flush=True)
    t = time.monotonic()
    try:
        proc, address = orch.start_server(orch.child_cmd("aio-serve", "ipcez", orch.sock_path("many-aio")), "many-aio-server")
        try:
            threads0 = proc_threads(str(proc.pid))
            out.update(orch.run_json(orch.child_cmd("aio-many", address, str(n)), min(120.0, max(orch.left(), 15.0)), "many-aio"))
            out["server_threads"] = [threads0, proc_threads(str(proc.pid))]
        finally:
            orch.stop(proc)
        out["requested"] = n
        out["all_ok"] = out.get("echoed") == n
        print(f" {time.monotonic() - t:.1f} s", flush=True)
    except Exception as exc:
        out["skipped"] = f"failed: {exc}"
        orch.notes.append(f"{n:,} aio connections: failed: {exc}")
        print(f" failed: {exc}", flush=True)
    return out


def _ratio(rows: Dict[str, Dict[str, Any]], key: str, col: str, anchor: Optional[str]) -> str:
    v, b = rows.get(key, {}).get(col), rows.get(anchor or "", {}).get(col)
    return f"{v / b:.2f}x" if isinstance(v, (int, float)) and isinstance(b, (int, float)) and b else "—"


def render(aio: Dict[str, Any]) -> str:
    """The rows as a text table with ratios, then the many-connection rows and the targets."""
    rows = aio.get("rows", {})
    lines = ["asyncio echo, 64 B — ratio to the anchor in the same run", f"  {'':<28}{'RTT p50 (µs)':>14}{'RTT p99 (µs)':>14}{'ratio p50':>11}"]
    for key, label, _s, _e, anchor, _m in RTT_ROWS:
        e = rows.get(key, {})
        if "skipped" in e:
            lines.append(f"  {label:<28}skipped: {e['skipped']}")
            continue
        lines.append(f"  {label:<28}{e.get('rtt_p50_us', 0):>14.1f}{e.get('rtt_p99_us', 0):>14.1f}{_ratio(rows, key, 'rtt_p50_us', anchor):>11}")
    lines += ["", "One-way stream of 64 B messages — ratio to multiprocessing.connection", f"  {'':<28}{'msgs/s':>14}{'ratio':>11}"]
    for key, label, _k, anchor, _m in STREAM_ROWS:
        e = rows.get(key, {})
        if "skipped" in e:
            lines.append(f"  {label:<28}skipped: {e['skipped']}")
            continue
        lines.append(f"  {label:<28}{e.get('msgs_per_s_64b', 0) / 1000:>13.1f}k{_ratio(rows, key, 'msgs_per_s_64b', anchor):>11}")
    many = aio.get("many", {})
    lines.append("")
    if "skipped" in many:
        lines.append(f"10,000 aio connections on one listener: skipped: {many['skipped']}")
    else:
        lines.append(
            f"10,000 aio connections on one listener: {many.get('echoed')}/{many.get('requested')} echoed, "
            f"connect {many.get('connect_s', 0):.1f} s, all echoes {many.get('echo_all_s', 0):.1f} s, "
            f"server threads {many.get('server_threads')}, client threads {many.get('client_threads')}"
        )
    lines += ["", "Targets (aio and streams)"]
    for target in evaluate(aio):
        lines.append(f"  [{target['status']}] {target['target']}: {target['value']} (want {target['limit']})")
    return "\n".join(lines)


def evaluate(aio: Dict[str, Any]) -> List[Dict[str, Any]]:
    rows = aio.get("rows", {})
    out: List[Dict[str, Any]] = []
    for key, col, anchor, op, limit in TARGETS:
        v, b = rows.get(key, {}).get(col), rows.get(anchor, {}).get(col)
        name = f"{rows.get(key, {}).get('label', key)} {col} vs {rows.get(anchor, {}).get('label', anchor)}"
        if not isinstance(v, (int, float)) or not isinstance(b, (int, float)) or not b:
            out.append({"target": name, "status": "SKIP", "value": None, "limit": f"{op} {limit}x"})
            continue
        r = v / b
        ok = r <= limit if op == "<=" else r >= limit
        out.append({"target": name, "status": "PASS" if ok else "MISS", "value": f"{r:.2f}x", "limit": f"{op} {limit}x"})
    many = aio.get("many", {})
    out.append({
        "target": "10,000 aio connections on one listener work",
        "status": "SKIP" if "skipped" in many else ("PASS" if many.get("all_ok") else "MISS"),
        "value": many.get("skipped") or f"{many.get('echoed')}/{many.get('requested')}",
        "limit": "all",
    })
    return out


if __name__ == "__main__":
    sys.exit("run through bench/compare.py")
