#!/usr/bin/env python3
"""Load test: many clients flooding one ipcez listener, and many idle connections.

    python bench/load.py                                   # full size, both transports
    python bench/load.py --clients 64 --messages 10000 --transport unix
    python bench/load.py --clients 8 --messages 300 --idle 50 --transport ws

Flood: ``--clients`` connections (threads spread over ``--procs`` worker processes) each
send ``--messages`` numbered messages to one listener in this process.  The listener checks
that every message arrives exactly once, in per-connection order, intact; each client then
gets a summary back.  Any loss, duplicate, reorder, corruption, ack timeout or stall makes
the script exit 1.

Idle: ``--idle`` connections (one worker process) are opened to one listener and left idle
(RLIMIT_NOFILE is raised as needed); the script reports the fds, threads, RSS and CPU the
idle connections cost, then checks that every one of them still carries a message both ways.

Figures are printed as ``key: value`` lines; ``--json`` adds one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
PYTHON_DIR = ROOT / "python"

# -- helpers shared with bench/leaks.py ------------------------------------------------


def setup_import_path() -> Optional[str]:
    """Make ``import ipcez`` use this checkout; returns the native library it will load.

    An explicit IPCEZ_LIBRARY wins; then the in-place build (``python build.py``); then the
    newest of rust/target/{release,debug}/libipcez_ffi.so.
    """
    if str(PYTHON_DIR) not in sys.path:
        sys.path.insert(0, str(PYTHON_DIR))
    if os.environ.get("IPCEZ_LIBRARY"):
        return os.environ["IPCEZ_LIBRARY"]
    for name in ("_ipcez_ffi.so", "_ipcez_ffi.dylib", "_ipcez_ffi.dll"):
        p = PYTHON_DIR / "ipcez" / name
        if p.exists():
            return str(p)
    existing = [
        c
        for c in (ROOT / "rust" / "target" / prof / "libipcez_ffi.so" for prof in ("release", "debug"))
        if c.exists()
    ]
    if existing:
        newest = max(existing, key=lambda c: c.stat().st_mtime)
        os.environ["IPCEZ_LIBRARY"] = str(newest)
        return str(newest)
    return None


def child_env() -> Dict[str, str]:
    """Environment for a worker process that imports the same ipcez."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PYTHON_DIR)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("target", "local")
    env.setdefault("os", "linux")
    return env


def raise_nofile(want: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit towards ``want`` (capped by the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib(pid: Optional[int] = None) -> int:
    """Resident set size (VmRSS) in KiB."""
    with open(f"/proc/{pid or 'self'}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def fd_count(pid: Optional[int] = None) -> int:
    return len(os.listdir(f"/proc/{pid or 'self'}/fd"))


def thread_count(pid: Optional[int] = None) -> int:
    return len(os.listdir(f"/proc/{pid or 'self'}/task"))


def cpu_seconds(pid: Optional[int] = None) -> float:
    """User + system CPU seconds used so far."""
    with open(f"/proc/{pid or 'self'}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def shm_entries() -> set:
    """ipcez's named semaphores currently in /dev/shm."""
    try:
        return {n for n in os.listdir("/dev/shm") if n.startswith("sem.ipcez.")}
    except FileNotFoundError:
        return set()


# -- the message format ----------------------------------------------------------------

HELLO = struct.Struct(">cI")  # b"H", client id
DATA = struct.Struct(">cIQ")  # b"M", client id, sequence number; then padding
END = struct.Struct(">cQ")  # b"E", messages sent
SUMMARY = struct.Struct(">cQQQQQ")  # b"D", count, duplicates, reorders, corrupt, missing


def payload(cid: int, seq: int, size: int) -> bytes:
    pad = max(0, size - DATA.size)
    return DATA.pack(b"M", cid, seq) + bytes(((cid * 7 + seq) & 0xFF,)) * pad


# -- worker processes --------------------------------------------------------------------


def worker_flood(endpoint: str, ids: List[int], messages: int, size: int, ack_timeout: float) -> int:
    import ipcez

    out_lock = threading.Lock()
    failures = []

    def client(cid: int) -> None:
        report: Dict[str, Any] = {"cid": cid, "sent": 0}
        t0 = time.monotonic()
        try:
            with ipcez.connect(endpoint, ack_timeout=ack_timeout) as s:
                s.send(HELLO.pack(b"H", cid))
                for seq in range(messages):
                    s.send(payload(cid, seq, size))
                    report["sent"] = seq + 1
                s.send(END.pack(b"E", messages))
                reply = s.recv(timeout=120)
                tag, count, dups, reorders, corrupt, missing = SUMMARY.unpack(reply)
                report.update(count=count, dups=dups, reorders=reorders, corrupt=corrupt, missing=missing)
                if (count, dups, reorders, corrupt, missing) != (messages, 0, 0, 0, 0):
                    report["error"] = "server saw a bad stream"
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            report["error"] = f"{type(exc).__name__}: {exc}"
        report["seconds"] = round(time.monotonic() - t0, 3)
        with out_lock:
            if "error" in report:
                failures.append(cid)
            print(json.dumps(report), flush=True)

    threads = [threading.Thread(target=client, args=(cid,)) for cid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 1 if failures else 0


def worker_idle(endpoint: str, n: int) -> int:
    import ipcez

    raise_nofile(n + 200)
    socks = [ipcez.connect(endpoint) for _ in range(n)]
    print(f"OPEN {n} fds={fd_count()} threads={thread_count()} rss_kib={rss_kib()}", flush=True)
    line = sys.stdin.readline()
    if line.strip() != "GO":
        return 2
    bad = 0
    for i, s in enumerate(socks):
        s.send(b"idle %d" % i)
    for i, s in enumerate(socks):
        if s.recv(timeout=60) != b"echo idle %d" % i:
            bad += 1
    for s in socks:
        s.close()
    print(f"DONE bad={bad}", flush=True)
    return 1 if bad else 0


def spawn_worker(args: List[str], **kw: Any) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--worker", *args],
        env=child_env(),
        text=True,
        **kw,
    )


# -- the listener side -------------------------------------------------------------------


def listen_endpoint(transport: str, tmp: str) -> str:
    return os.path.join(tmp, "load.sock") if transport == "unix" else "ws://127.0.0.1:0/load"


class ConnStats:
    def __init__(self) -> None:
        self.cid = -1
        self.count = 0
        self.dups = 0
        self.reorders = 0
        self.corrupt = 0
        self.missing = 0
        self.first: Optional[float] = None
        self.last: Optional[float] = None
        self.error: Optional[str] = None
        self.announced = -1
        self.summary_send_lost = False


def serve_flood(sock: Any, messages: int, size: int, stats: ConnStats) -> None:
    import ipcez

    try:
        tag, cid = HELLO.unpack(sock.recv(timeout=120))
        stats.cid = cid
        seen = bytearray(messages)
        last = -1
        while True:
            msg = sock.recv(timeout=60)
            if msg[:1] == b"E":
                stats.last = time.monotonic()
                stats.announced = END.unpack(msg)[1]
                break
            if stats.first is None:
                stats.first = time.monotonic()
            tag, c2, seq = DATA.unpack_from(msg)
            if c2 != cid or len(msg) != max(size, DATA.size) or msg != payload(cid, seq, size):
                stats.corrupt += 1
            if seq >= messages:
                stats.corrupt += 1
            elif seen[seq]:
                stats.dups += 1
            else:
                seen[seq] = 1
            if seq != last + 1:
                stats.reorders += 1
            last = seq
            stats.count += 1
        stats.missing = messages - sum(seen)
        try:
            sock.send(SUMMARY.pack(b"D", stats.count, stats.dups, stats.reorders, stats.corrupt, stats.missing))
        except ipcez.ConnectionLost:
            # The ack names are shared by every connection to the endpoint (README,
            # limitations): the client may read the summary and close before an ack token
            # reaches this send, which then reports the close.  Not a loss as long as the
            # client says it got the summary (checked by the caller).
            stats.summary_send_lost = True
            return
        try:  # the client closes after reading the summary
            sock.recv(timeout=60)
            stats.error = "unexpected message after the end marker"
        except ipcez.ConnectionLost:
            pass
    except BaseException as exc:  # noqa: BLE001
        stats.error = f"{type(exc).__name__}: {exc}"
    finally:
        sock.close()


def run_flood(transport: str, clients: int, messages: int, procs: int, size: int, ack_timeout: float) -> Dict[str, Any]:
    import ipcez

    procs = max(1, min(procs, clients))
    raise_nofile(clients * 4 + 200)
    with tempfile.TemporaryDirectory(prefix="ipz-load-", dir="/tmp") as tmp:
        listener = ipcez.listen(listen_endpoint(transport, tmp))
        rss0 = rss_kib()
        t_start = time.monotonic()
        workers = []
        for k in range(procs):
            ids = list(range(k, clients, procs))
            workers.append(
                spawn_worker(
                    ["flood", listener.address, ",".join(map(str, ids)), str(messages), str(size), str(ack_timeout)],
                    stdout=subprocess.PIPE,
                )
            )
        stats: List[ConnStats] = []
        threads = []
        accept_error = None
        try:
            for _ in range(clients):
                sock = listener.accept(timeout=120)
                st = ConnStats()
                stats.append(st)
                t = threading.Thread(target=serve_flood, args=(sock, messages, size, st), daemon=True)
                t.start()
                threads.append(t)
        except BaseException as exc:  # noqa: BLE001
            accept_error = f"{type(exc).__name__}: {exc}"
        peak_threads = thread_count()
        reports = []
        worker_rcs = []
        for w in workers:
            out, _ = w.communicate(timeout=3600)
            worker_rcs.append(w.returncode)
            reports += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        for t in threads:
            t.join(120)
        wall = time.monotonic() - t_start
        rss1 = rss_kib()
        listener.close()
    total = sum(s.count for s in stats)
    firsts = [s.first for s in stats if s.first is not None]
    lasts = [s.last for s in stats if s.last is not None]
    window = (max(lasts) - min(firsts)) if firsts and lasts else float("nan")
    client_errors = [r for r in reports if "error" in r]
    got_summary = {r["cid"] for r in reports if "count" in r}
    summary_lost = [s.cid for s in stats if s.summary_send_lost]
    undelivered_summaries = [c for c in summary_lost if c not in got_summary]
    server_errors = [(s.cid, s.error) for s in stats if s.error]
    bad_streams = [
        s.cid for s in stats
        if (s.count, s.dups, s.reorders, s.corrupt, s.missing, s.announced) != (messages, 0, 0, 0, 0, messages)
    ]
    ok = (
        accept_error is None
        and not client_errors
        and not server_errors
        and not bad_streams
        and not undelivered_summaries
        and len(reports) == clients
        and all(rc == 0 for rc in worker_rcs)
        and total == clients * messages
    )
    return {
        "test": "flood",
        "transport": transport,
        "clients": clients,
        "messages_per_client": messages,
        "message_bytes": max(size, DATA.size),
        "worker_processes": procs,
        "ok": ok,
        "received": total,
        "expected": clients * messages,
        "duplicates": sum(s.dups for s in stats),
        "reorders": sum(s.reorders for s in stats),
        "corrupt": sum(s.corrupt for s in stats),
        "missing": sum(s.missing for s in stats),
        "ack_timeouts": sum(1 for r in client_errors if "RecipientAckTimeout" in r.get("error", "")),
        "client_errors": client_errors[:5],
        "server_errors": server_errors[:5],
        "accept_error": accept_error,
        "summary_sends_ended_by_peer_close": len(summary_lost),
        "undelivered_summaries": undelivered_summaries,
        "wall_seconds": round(wall, 2),
        "send_window_seconds": round(window, 2),
        "messages_per_second": round(total / window) if window and window == window and window > 0 else None,
        "listener_rss_growth_kib": rss1 - rss0,
        "listener_peak_threads": peak_threads,
    }


def run_idle(transport: str, n: int, idle_seconds: float = 2.0) -> Dict[str, Any]:
    import ipcez

    limit = raise_nofile(n * 2 + 200)
    with tempfile.TemporaryDirectory(prefix="ipz-idle-", dir="/tmp") as tmp:
        listener = ipcez.listen(listen_endpoint(transport, tmp))
        base = {"fds": fd_count(), "threads": thread_count(), "rss_kib": rss_kib()}
        t0 = time.monotonic()
        worker = spawn_worker(["idle", listener.address, str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        socks = []
        error = None
        try:
            for _ in range(n):
                socks.append(listener.accept(timeout=60))
        except BaseException as exc:  # noqa: BLE001
            error = f"accepted {len(socks)} of {n}: {type(exc).__name__}: {exc}"
        assert worker.stdout is not None and worker.stdin is not None
        opened = worker.stdout.readline().strip()
        t_open = time.monotonic() - t0
        # What n idle connections cost while idle, on both sides.
        cpu_l, cpu_w = cpu_seconds(), cpu_seconds(worker.pid) if worker.poll() is None else float("nan")
        time.sleep(idle_seconds)
        idle_cpu_l = cpu_seconds() - cpu_l
        idle_cpu_w = (cpu_seconds(worker.pid) - cpu_w) if worker.poll() is None else float("nan")
        held = {"fds": fd_count(), "threads": thread_count(), "rss_kib": rss_kib()}
        bad = 0
        if error is None:
            worker.stdin.write("GO\n")
            worker.stdin.flush()
            try:
                for s in socks:
                    m = s.recv(timeout=60)
                    s.send(b"echo " + m)
            except BaseException as exc:  # noqa: BLE001
                error = f"echo: {type(exc).__name__}: {exc}"
        else:
            worker.stdin.close()
        try:
            out, _ = worker.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            worker.kill()
            out, _ = worker.communicate()
            error = error or "worker hung"
        done = [line for line in out.splitlines() if line.startswith("DONE")]
        if not done or done[0] != "DONE bad=0":
            bad = 1
        for s in socks:
            s.close()
        listener.close()
    ok = error is None and bad == 0 and worker.returncode == 0 and len(socks) == n
    return {
        "test": "idle",
        "transport": transport,
        "connections": n,
        "ok": ok,
        "error": error,
        "nofile_limit": limit,
        "open_seconds": round(t_open, 2),
        "worker": opened,
        "listener_fds_per_conn": round((held["fds"] - base["fds"]) / n, 2),
        "listener_threads_added": held["threads"] - base["threads"],
        "listener_rss_per_conn_kib": round((held["rss_kib"] - base["rss_kib"]) / n, 1),
        "idle_cpu_percent_listener": round(100 * idle_cpu_l / idle_seconds, 1),
        "idle_cpu_percent_clients": round(100 * idle_cpu_w / idle_seconds, 1),
    }


def print_result(r: Dict[str, Any]) -> None:
    print(f"== {r['test']} over {r['transport']}: {'OK' if r['ok'] else 'FAILED'}")
    for k, v in r.items():
        if k in ("test", "transport", "ok") or v in (None, [], ""):
            continue
        print(f"  {k}: {v}")
    sys.stdout.flush()


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        setup_import_path()
        kind, rest = argv[1], argv[2:]
        if kind == "flood":
            ep, ids, messages, size, ack = rest
            return worker_flood(ep, [int(i) for i in ids.split(",") if i], int(messages), int(size), float(ack))
        if kind == "idle":
            return worker_idle(rest[0], int(rest[1]))
        return 2

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--messages", type=int, default=10_000, help="per client")
    ap.add_argument("--transport", choices=["unix", "ws", "both"], default="both")
    ap.add_argument("--procs", type=int, default=8, help="client worker processes (clients are threads in them)")
    ap.add_argument("--size", type=int, default=64, help="message size in bytes (at least 13)")
    ap.add_argument("--ack-timeout", type=float, default=5.0)
    ap.add_argument("--idle", type=int, default=1000, help="idle connections to hold (0: skip)")
    ap.add_argument("--idle-seconds", type=float, default=2.0, help="how long the idle connections sit idle")
    ap.add_argument("--json", action="store_true", help="also print one JSON line with all results")
    args = ap.parse_args(argv)

    lib = setup_import_path()
    os.environ.setdefault("target", "local")
    os.environ.setdefault("os", "linux")
    import ipcez

    print(f"ipcez {ipcez.__version__}, library {lib or '(inside the package)'}, {os.cpu_count()} CPUs")
    transports = ["unix", "ws"] if args.transport == "both" else [args.transport]
    results = []
    for tr in transports:
        if args.clients > 0 and args.messages > 0:
            r = run_flood(tr, args.clients, args.messages, args.procs, args.size, args.ack_timeout)
            print_result(r)
            results.append(r)
        if args.idle > 0:
            r = run_idle(tr, args.idle, args.idle_seconds)
            print_result(r)
            results.append(r)
    if args.json:
        print(json.dumps(results))
    ok = all(r["ok"] for r in results)
    print("RESULT:", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
