"""The footprint section: ``import ipcez`` time, the memory of an idle process holding one
connection, and one listener with 1,000 connections (the child probes, their orchestration
and the text)."""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any, Dict, List

from .common import proc_threads, raise_nofile, ready, vm_rss_kib
from .harness import LineReader, Orchestrator

IMPORT_PROBE = (
    "import time; t = time.perf_counter(); import ipcez; t = time.perf_counter() - t; "
    "print('{\"import_s\": %r}' % t)"
)
#: The warm-up: as IMPORT_PROBE, but writing the package's bytecode even where
#: PYTHONDONTWRITEBYTECODE is set, so that the samples load it as from an installed wheel
#: (pip compiles it) instead of compiling every module anew (about 14 ms here).
IMPORT_WARM_UP = "import sys; sys.dont_write_bytecode = False; " + IMPORT_PROBE


def probe_rss_bare() -> None:
    print(json.dumps({"rss_kib": vm_rss_kib(), "threads": proc_threads()}), flush=True)


def probe_rss_idle(address: str) -> None:
    import ipcez

    s = ipcez.connect(address)
    s.send(b"E" * 64)
    s.recv(timeout=5)
    time.sleep(0.5)  # idle
    print(json.dumps({"rss_kib": vm_rss_kib(), "threads": proc_threads()}), flush=True)
    s.close()


def many_listen(path: str, n: int, wait_s: float) -> None:
    """Listener for the 1,000-connection test: accept n, take one message from each."""
    import ipcez

    raise_nofile(4 * n + 256)
    socks: List[Any] = []
    errors: List[str] = []
    with ipcez.listen(path) as listener:
        rss0 = vm_rss_kib()
        threads0 = proc_threads()
        ready(listener.address)
        deadline = time.monotonic() + wait_s
        while len(socks) < n and time.monotonic() < deadline:
            try:
                socks.append(listener.accept(timeout=max(deadline - time.monotonic(), 0.01)))
            except TimeoutError:
                break
            except ipcez.SocketError as exc:
                errors.append(f"accept: {exc!r}")
                break
        received = 0
        for s in socks:
            try:
                if s.recv(timeout=max(deadline - time.monotonic(), 0.5)) == b"hello":
                    received += 1
            except (TimeoutError, ipcez.SocketError) as exc:
                errors.append(f"recv: {exc!r}")
                if len(errors) > 5:
                    break
        time.sleep(0.3)
        out = {
            "accepted": len(socks),
            "received": received,
            "rss0_kib": rss0,
            "rss1_kib": vm_rss_kib(),
            "threads0": threads0,
            "threads1": proc_threads(),
            "errors": errors[:5],
        }
        print(json.dumps(out), flush=True)
        sys.stdin.read()  # hold the connections until the orchestrator is done
        for s in socks:
            s.close()


def many_client(path: str, n: int) -> None:
    import ipcez

    limits = raise_nofile(4 * n + 256)
    rss0 = vm_rss_kib()
    socks: List[Any] = []
    errors: List[str] = []
    t = time.perf_counter()
    for _ in range(n):
        try:
            socks.append(ipcez.connect(path))
        except ipcez.SocketError as exc:
            errors.append(f"connect: {exc!r}")
            if len(errors) > 5:
                break
    connect_s = time.perf_counter() - t
    sent = 0
    for s in socks:
        try:
            s.send(b"hello")
            sent += 1
        except ipcez.SocketError as exc:
            errors.append(f"send: {exc!r}")
            if len(errors) > 5:
                break
    out = {
        "connected": len(socks),
        "sent": sent,
        "connect_s": connect_s,
        "rss0_kib": rss0,
        "rss1_kib": vm_rss_kib(),
        "threads": proc_threads(),
        "nofile": list(limits),
        "errors": errors[:5],
    }
    print(json.dumps(out), flush=True)
    sys.stdin.read()
    for s in socks:
        s.close()



def run(orch: Orchestrator) -> Dict[str, Any]:
    fp: Dict[str, Any] = {}
    if not orch.library.exists():
        fp["skipped"] = "ipcez library missing"
        return fp
    # import time: one warm-up, then the median of several fresh interpreters
    print("[run] import time, idle RSS, 1,000 connections ...", flush=True)
    try:
        n = 3 if orch.quick else 9
        # a pristine interpreter (the _child entry point would have imported half the
        # stdlib already): only `time` is loaded before the clock starts
        orch.run_json([sys.executable, "-c", IMPORT_WARM_UP], 30, "import")  # page cache, bytecode
        cmd = [sys.executable, "-c", IMPORT_PROBE]
        samples = [orch.run_json(cmd, 30, "import")["import_s"] for _ in range(n)]
        fp["import_ms"] = statistics.median(samples) * 1000
        fp["import_ms_samples"] = [round(s * 1000, 2) for s in samples]
    except Exception as exc:
        fp["import_error"] = str(exc)
        orch.notes.append(f"import time: failed: {exc}")

    # idle RSS of a process holding one connection, over a bare interpreter
    try:
        server, address = orch.start_server(
            orch.child_cmd("serve", "ipcez", orch.sock_path("idle")), "idle-server"
        )
        try:
            n = 2 if orch.quick else 5
            bare = [orch.run_json(orch.child_cmd("rss-bare"), 30, "bare") for _ in range(n)]
            idle = [
                orch.run_json(orch.child_cmd("rss-idle", address), 30, "idle") for _ in range(n)
            ]
        finally:
            orch.stop(server)
        b = statistics.median(x["rss_kib"] for x in bare)
        i = statistics.median(x["rss_kib"] for x in idle)
        fp["rss_bare_mb"] = b * 1024 / 1e6
        fp["rss_idle_mb"] = i * 1024 / 1e6
        fp["rss_idle_over_bare_mb"] = (i - b) * 1024 / 1e6
        fp["idle_threads"] = idle[0]["threads"]
    except Exception as exc:
        fp["rss_error"] = str(exc)
        orch.notes.append(f"idle RSS: failed: {exc}")

    # one listener, 1,000 connections from one client process
    n_conn = 1000
    wait_s = 20.0 if orch.quick else 60.0
    path = orch.sock_path("many")
    listener = client = None
    try:
        listener = orch.popen(orch.child_cmd("many-listen", path, str(n_conn), str(wait_s)), True, "many-listen")
        lr = LineReader(listener)
        if lr.readline(20) is None:
            raise RuntimeError(f"listener did not start: {orch.stderr_tail(listener)}")
        client = orch.popen(orch.child_cmd("many-client", path, str(n_conn)), True, "many-client")
        cr = LineReader(client)
        t = time.monotonic()
        cline = cr.readline(wait_s + 10)
        lline = lr.readline(wait_s + 10)
        fp["conn_total_s"] = time.monotonic() - t
        if cline is None:
            raise RuntimeError(f"client gave no result: {orch.stderr_tail(client)}")
        if lline is None:
            raise RuntimeError(f"listener gave no result: {orch.stderr_tail(listener)}")
        c, li = json.loads(cline), json.loads(lline)
        fp["conn_requested"] = n_conn
        fp["conn_connected"] = c["connected"]
        fp["conn_sent"] = c["sent"]
        fp["conn_accepted"] = li["accepted"]
        fp["conn_received"] = li["received"]
        fp["conn_connect_s"] = c["connect_s"]
        fp["conn_listener_rss_growth_mb"] = (li["rss1_kib"] - li["rss0_kib"]) * 1024 / 1e6
        fp["conn_listener_threads"] = [li["threads0"], li["threads1"]]
        fp["conn_client_rss_growth_mb"] = (c["rss1_kib"] - c["rss0_kib"]) * 1024 / 1e6
        fp["conn_client_threads"] = c["threads"]
        fp["conn_errors"] = c["errors"] + li["errors"]
        fp["conn_all_ok"] = (
            c["connected"] == c["sent"] == li["accepted"] == li["received"] == n_conn
            and not fp["conn_errors"]
        )
        lr.close()
        cr.close()
    except Exception as exc:
        fp["conn_error"] = str(exc)
        fp["conn_all_ok"] = False
        orch.notes.append(f"1,000 connections: failed: {exc}")
    finally:
        for p in (client, listener):
            if p is not None:
                orch.stop(p)
    return fp

# -- cleanup ----------------------------------------------------------------


def render_footprint(fp: Dict[str, Any]) -> str:
    out = ["Footprint (ipcez, release library)"]
    if "import_ms" in fp:
        out.append(f"  import ipcez                      {fp['import_ms']:.1f} ms (median of {len(fp['import_ms_samples'])} fresh interpreters)")
    if "rss_idle_over_bare_mb" in fp:
        out.append(
            f"  idle process, one connection      +{fp['rss_idle_over_bare_mb']:.1f} MB RSS over bare Python "
            f"({fp['rss_idle_mb']:.1f} vs {fp['rss_bare_mb']:.1f} MB; {fp['idle_threads']} threads)"
        )
    if "conn_accepted" in fp:
        per = fp["conn_listener_rss_growth_mb"] * 1e6 / max(fp["conn_accepted"], 1) / 1024
        out.append(
            f"  listener with 1,000 connections   +{fp['conn_listener_rss_growth_mb']:.1f} MB RSS "
            f"(~{per:.1f} KiB each); {fp['conn_connected']} connected, {fp['conn_accepted']} accepted, "
            f"{fp['conn_received']} messages received; threads {fp['conn_listener_threads'][0]}"
            f"->{fp['conn_listener_threads'][1]}; connect loop {fp['conn_connect_s']:.2f} s"
        )
        out.append(f"  client holding 1,000 connections  +{fp['conn_client_rss_growth_mb']:.1f} MB RSS, {fp['conn_client_threads']} threads")
        if fp.get("conn_errors"):
            out.append(f"  errors: {fp['conn_errors']}")
    for k in ("import_error", "rss_error", "conn_error", "skipped"):
        if k in fp:
            out.append(f"  {k}: {fp[k]}")
    return "\n".join(out)

