#!/usr/bin/env python3
"""Leak check: connect/close cycles, a long message stream, listener lifetimes.

    python bench/leaks.py                       # full size, both transports
    python bench/leaks.py --cycles 2000 --messages 50000 --listeners 50 --transport unix

1. ``--cycles`` connect/accept/close cycles on one listener: this process's fd count
   (``/proc/self/fd``) and the endpoint's entries in ``/dev/shm`` end where they started.
2. ``--messages`` messages (client -> listener, sent and taken one at a time) after a
   warm-up: RSS may grow by at most ``--max-rss-growth`` bytes (default 1 MB).
3. ``--listeners`` listen/connect/send/close lifetimes (Unix): no named semaphore outlives
   its listener.

Exits 1 when a check fails. Figures are printed as ``key: value`` lines.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import fd_count, print_result, rss_kib, setup_import_path, shm_entries  # noqa: E402


def settled_fd_count(timeout: float = 3.0) -> int:
    """The fd count once it stops changing (a WebSocket close finishes in the background)."""
    deadline = time.monotonic() + timeout
    last = fd_count()
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        n = fd_count()
        if n != last:
            last, stable_since = n, time.monotonic()
        elif time.monotonic() - stable_since >= 0.3:
            break
    return last


def endpoint_for(transport: str, tmp: str) -> str:
    return os.path.join(tmp, "leak.sock") if transport == "unix" else "ws://127.0.0.1:0/leak"


def own_sems(path: str) -> set:
    import ipcez

    return {"sem." + n.lstrip("/") for n in ipcez.ack_names(path)}


def cycles_check(transport: str, cycles: int) -> Dict[str, Any]:
    import ipcez

    with tempfile.TemporaryDirectory(prefix="ipz-leak-", dir="/tmp") as tmp:
        ep = endpoint_for(transport, tmp)
        mine = own_sems(ep) if transport == "unix" else set()
        # warm-up: the library's runtime and its fds exist before we count
        with ipcez.listen(ep) as listener:
            c = ipcez.connect(listener.address)
            p = listener.accept(timeout=5)
            c.send(b"warm")
            p.recv(timeout=5)
            c.close()
            p.close()
        del c, p
        gc.collect()
        shm0 = shm_entries()
        fds0 = settled_fd_count()
        samples: List[int] = []
        t0 = time.monotonic()
        with ipcez.listen(ep) as listener:
            fds_listening = fd_count()
            for i in range(cycles):
                c = ipcez.connect(listener.address)
                p = listener.accept(timeout=10)
                if i % 100 == 0:  # traffic now and then, so the ack names are in use
                    c.send(b"ping")
                    assert p.recv(timeout=10) == b"ping"
                    p.send(b"pong")
                    assert c.recv(timeout=10) == b"pong"
                c.close()
                p.close()
                if i % max(1, cycles // 10) == 0:
                    samples.append(fd_count())
            del c, p
            gc.collect()
            fds_end_listening = settled_fd_count()
            shm_during = shm_entries() & mine
        elapsed = time.monotonic() - t0
        gc.collect()
        fds1 = settled_fd_count()
        shm1 = shm_entries()
    leftovers = sorted((shm1 - shm0) & (mine | {n for n in shm1 if "leak" in n}))
    ok = fds1 == fds0 and fds_end_listening == fds_listening and not (shm1 & mine) and not leftovers
    return {
        "test": "connect/close cycles",
        "transport": transport,
        "ok": ok,
        "cycles": cycles,
        "seconds": round(elapsed, 1),
        "cycles_per_second": round(cycles / elapsed),
        "fds_before": fds0,
        "fds_listening": fds_listening,
        "fds_sampled_during": samples,
        "fds_after_cycles_listening": fds_end_listening,
        "fds_after": fds1,
        "own_semaphores_while_listening": len(shm_during),
        "own_semaphores_after_close": sorted(shm1 & mine),
        "new_shm_entries": leftovers,
    }


def rss_check(transport: str, messages: int, max_growth: int, size: int) -> Dict[str, Any]:
    import ipcez

    with tempfile.TemporaryDirectory(prefix="ipz-leak-", dir="/tmp") as tmp:
        with ipcez.listen(endpoint_for(transport, tmp)) as listener, ipcez.connect(listener.address) as c:
            p = listener.accept(timeout=5)
            payload = b"r" * size

            def run(n: int) -> None:
                for _ in range(n):
                    c.send(payload)
                    if p.recv(timeout=10) != payload:
                        raise AssertionError("corrupt message")

            warm = max(10_000, messages // 20)
            run(warm)
            gc.collect()
            rss0 = rss_kib()
            samples = []
            t0 = time.monotonic()
            step = max(1, messages // 10)
            done = 0
            while done < messages:
                k = min(step, messages - done)
                run(k)
                done += k
                samples.append(rss_kib())
            elapsed = time.monotonic() - t0
            gc.collect()
            rss1 = rss_kib()
            p.close()
    growth = (rss1 - rss0) * 1024
    return {
        "test": "message stream RSS",
        "transport": transport,
        "ok": growth <= max_growth,
        "messages": messages,
        "note": f"{size} B messages, client -> listener, sent and taken one at a time; warm-up {warm}",
        "seconds": round(elapsed, 1),
        "messages_per_second": round(messages / elapsed),
        "rss_before_kib": rss0,
        "rss_after_kib": rss1,
        "rss_growth_bytes": growth,
        "rss_max_growth_bytes": max_growth,
        "rss_sampled_kib": samples,
    }


def listeners_check(count: int) -> Dict[str, Any]:
    import ipcez

    gc.collect()
    fds0 = settled_fd_count()
    outlived = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ipz-leak-", dir="/tmp") as tmp:
        for i in range(count):
            path = os.path.join(tmp, f"l{i % 7}.sock")  # reuse paths too
            mine = own_sems(path)
            with ipcez.listen(path) as listener:
                c = ipcez.connect(path)
                p = listener.accept(timeout=5)
                c.send(b"x")
                p.recv(timeout=5)
                p.send(b"y")
                c.recv(timeout=5)
                if i % 2:  # half the time the client is still open when the listener closes
                    p.close()
                    listener.close()
                    c.close()
                else:
                    c.close()
                    p.close()
            if shm_entries() & mine or os.path.exists(path):
                outlived.append(i)
        del c, p
        gc.collect()
    fds1 = settled_fd_count()
    return {
        "test": "listener lifetimes",
        "transport": "unix",
        "ok": not outlived and fds1 == fds0,
        "listeners": count,
        "seconds": round(time.monotonic() - t0, 1),
        "outlived_semaphores_or_files": outlived[:10],
        "fds_before": fds0,
        "fds_after": fds1,
    }


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=100_000)
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--listeners", type=int, default=1000)
    ap.add_argument("--size", type=int, default=100, help="message size for the RSS check")
    ap.add_argument("--max-rss-growth", type=int, default=1_000_000, help="bytes")
    ap.add_argument("--transport", choices=["unix", "ws", "both"], default="both")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    lib = setup_import_path()
    os.environ.setdefault("target", "local")
    os.environ.setdefault("os", "linux")
    import ipcez

    print(f"ipcez {ipcez.__version__}, library {lib or '(inside the package)'}, {os.cpu_count()} CPUs")
    results = []
    transports = ["unix", "ws"] if args.transport == "both" else [args.transport]
    for tr in transports:
        if args.cycles:
            results.append(cycles_check(tr, args.cycles))
            print_result(results[-1])
        if args.messages:
            results.append(rss_check(tr, args.messages, args.max_rss_growth, args.size))
            print_result(results[-1])
    if args.listeners and "unix" in transports:
        results.append(listeners_check(args.listeners))
        print_result(results[-1])
    if args.json:
        print(json.dumps(results))
    ok = all(r["ok"] for r in results)
    print("RESULT:", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
