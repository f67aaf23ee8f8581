"""The sync rows: every implementation's echo server and client, passes interleaved and
the median taken; the tables relative to the baselines, and their targets."""

from __future__ import annotations

import statistics
import time
from typing import Any, Dict, List, Optional, Tuple

from .common import RUST_BENCH
from .harness import Orchestrator

IMPLS = [
    # key, label, group, server kind, endpoint kind, needs module
    ("ipcez-py-unix", "ipcez Python, unix", "local", "ipcez", "unix", None),
    ("ipcez-rs-unix", "ipcez Rust, unix", "local", "rust", "unix", None),
    ("mp", "multiprocessing.connection", "local", "mp", "unix", None),
    ("raw", "socket AF_UNIX (raw)", "local", "raw", "unix", None),
    ("zmq", "pyzmq REQ/REP ipc", "local", "zmq", "unix", "zmq"),
    ("nng", "pynng Req0/Rep0 ipc", "local", "nng", "unix", "pynng"),
    ("ipcez-py-ws", "ipcez Python, ws", "remote", "ipcez", "ws", None),
    ("ipcez-rs-ws", "ipcez Rust, ws", "remote", "rust", "ws", None),
    ("websockets", "websockets (sync)", "remote", "websockets", "ws", "websockets"),
]



def measure_impl(orch: Orchestrator, key: str, kind: str, ep_kind: str, rep: int) -> Dict[str, Any]:
    endpoint = "ws://127.0.0.1:0/bench" if ep_kind == "ws" else orch.sock_path(f"{key}-{rep}")
    client_timeout = min(30.0 if orch.quick else 300.0, max(orch.left(), 5.0))
    if kind == "rust":
        if not RUST_BENCH.exists():
            raise RuntimeError("rust bench binary missing")
        server_cmd = [str(RUST_BENCH), "serve", endpoint]
    else:
        server_cmd = orch.child_cmd("serve", kind, endpoint)
    server, address = orch.start_server(server_cmd, tag=f"{key}-server")
    try:
        if kind == "rust":
            cmd = [str(RUST_BENCH), "client", address, str(orch.rounds)]
        else:
            cmd = orch.child_cmd("client", kind, address, str(orch.rounds), str(server.pid))
        result = orch.run_json(cmd, client_timeout, tag=f"{key}-client")
        if ep_kind == "ws":
            # WebSocket sends wait for no ack: the Rust example's "send" figures are the
            # time to hand a frame over, not comparable with acked sends; keep them aside.
            for col in ("send_p50_us", "send_p99_us"):
                if col in result:
                    result["unacked_" + col] = result.pop(col)
        if server.poll() is not None:
            orch.anomalies.append(f"{key}: server exited early ({server.returncode})")
        return result
    finally:
        orch.stop(server)

def run(orch: Orchestrator) -> Dict[str, Dict[str, Any]]:
    """Every implementation, ``repeat`` times over, interleaved: a burst of load from
    elsewhere on the machine then hits one pass of each rather than all of one row;
    each figure is the median over the passes."""
    results: Dict[str, Dict[str, Any]] = {}
    runnable = []
    for key, label, group, kind, ep_kind, module in IMPLS:
        entry: Dict[str, Any] = {"label": label, "group": group, "passes": []}
        results[key] = entry
        if kind == "ipcez" and not orch.library.exists():
            entry["skipped"] = "ipcez library missing"
        elif kind == "rust" and not RUST_BENCH.exists():
            entry["skipped"] = "rust bench example missing"
        elif module and not orch.have_module(module):
            entry["skipped"] = f"python module {module!r} not installed"
            orch.notes.append(f"{label}: skipped ({module} is not installed)")
        else:
            runnable.append((key, label, kind, ep_kind))
    for rep in range(orch.repeat):
        for key, label, kind, ep_kind in runnable:
            entry = results[key]
            if orch.left() < 8:
                if not entry["passes"]:
                    entry["skipped"] = "time budget used up"
                orch.notes.append(f"{label}: pass {rep + 1} skipped, time budget used up")
                continue
            print(f"[run {rep + 1}/{orch.repeat}] {label} ...", end="", flush=True)
            t = time.monotonic()
            try:
                entry["passes"].append(measure_impl(orch, key, kind, ep_kind, rep))
                print(f" {time.monotonic() - t:.1f} s", flush=True)
            except Exception as exc:  # one broken row must not sink the run
                orch.notes.append(f"{label}: pass {rep + 1} failed: {exc}")
                print(f" failed: {exc}", flush=True)
    for key, entry in results.items():
        passes = entry["passes"]
        if "skipped" in entry:
            continue
        if not passes:
            entry["skipped"] = "failed (see notes)"
            continue
        for k in passes[0]:
            vals = [p[k] for p in passes if isinstance(p.get(k), (int, float))]
            if vals and len(vals) == len([p for p in passes if k in p]):
                entry[k] = statistics.median(vals)
            else:
                entry[k] = passes[0][k]
    return results


COLUMNS = [
    ("send_p50_us", "send p50", "µs"),
    ("send_p99_us", "send p99", "µs"),
    ("rtt_p50_us", "RTT p50", "µs"),
    ("rtt_p99_us", "RTT p99", "µs"),
    ("echo_1mib_gbps", "1MiB echo", "GB/s"),
    ("msgs_per_s_1kib", "1KiB msg", "/s"),
]
BASELINE = {"local": "mp", "remote": "websockets"}


def value_of(entry: Dict[str, Any], col: str) -> Tuple[Optional[float], bool]:
    """The figure for a column, and whether it is a stand-in (echo RTT for acked send)."""
    if "skipped" in entry:
        return None, False
    if col in entry:
        return float(entry[col]), False
    if col.startswith("send_"):
        alt = col.replace("send_", "rtt_")
        if alt in entry:
            return float(entry[alt]), True
    return None, False


def fmt_value(v: float, unit: str) -> str:
    if unit == "µs":
        return f"{v:.1f}" if v < 1000 else f"{v:.0f}"
    if unit == "GB/s":
        return f"{v:.2f}"
    return f"{v / 1000:.1f}k"


def render_table(results: Dict[str, Dict[str, Any]]) -> str:
    width = 28
    cw = 17
    lines = []
    head = f"{'':<{width}}" + "".join(f"{title + ' (' + unit + ')':>{cw + 1}}" for _, title, unit in COLUMNS)
    for group, title in (("local", "Local — ratio to multiprocessing.connection"),
                         ("remote", "WebSocket — ratio to the websockets package")):
        lines.append(title)
        lines.append(head)
        base = results.get(BASELINE[group], {})
        for key, entry in results.items():
            if entry["group"] != group:
                continue
            if "skipped" in entry:
                lines.append(f"  {entry['label']:<{width - 2}} skipped: {entry['skipped']}")
                continue
            row = f"  {entry['label']:<{width - 2}}"
            for col, _, unit in COLUMNS:
                v, standin = value_of(entry, col)
                if v is None:
                    row += f"{'—':>{cw + 1}}"
                    continue
                b, _ = value_of(base, col)
                ratio = f" {v / b:5.2f}x" if b else "       "
                cell = fmt_value(v, unit) + ("*" if standin else " ") + ratio
                row += f"{cell:>{cw + 1}}"
            lines.append(row)
        lines.append("")
    lines.append(
        "send = acked send of 64 B (returns once the peer has acknowledged); RTT = 64 B echo;\n"
        "1MiB echo counts bytes both ways; 1KiB msg = 1 KiB messages per second.\n"
        "* no acknowledgement in this transport: its echo round trip is shown instead and is\n"
        "  the basis ipcez's acked send is compared with. Ratios are figure / baseline figure\n"
        "  (lower is better for µs, higher for GB/s and msgs/s). 1 KiB msgs/s: ipcez unix = acked\n"
        "  sends; local anchors = send + 1-byte answer; ws rows = one-way sends (Python rows end\n"
        "  with one echo; the Rust example does not)."
    )
    return "\n".join(lines)


def evaluate_targets(results: Dict[str, Dict[str, Any]], fp: Dict[str, Any]) -> List[Dict[str, Any]]:
    def get(key: str, col: str) -> Optional[float]:
        return value_of(results.get(key, {"skipped": "absent"}), col)[0]

    targets: List[Dict[str, Any]] = []

    def ratio_target(name: str, a: Optional[float], b: Optional[float], op: str, limit: float) -> None:
        if a is None or b is None:
            targets.append({"target": name, "status": "SKIP", "value": None, "limit": f"{op} {limit}x"})
            return
        r = a / b
        ok = r <= limit if op == "<=" else r >= limit
        targets.append({"target": name, "status": "PASS" if ok else "MISS",
                        "value": round(r, 3), "limit": f"{op} {limit}x"})

    def abs_target(name: str, v: Optional[float], limit: float, unit: str) -> None:
        if v is None:
            targets.append({"target": name, "status": "SKIP", "value": None, "limit": f"<= {limit} {unit}"})
            return
        targets.append({"target": name, "status": "PASS" if v <= limit else "MISS",
                        "value": round(v, 2), "limit": f"<= {limit} {unit}"})

    py, ws = "ipcez-py-unix", "ipcez-py-ws"
    ratio_target("acked send p50 / mp.connection RTT p50", get(py, "send_p50_us"), get("mp", "rtt_p50_us"), "<=", 1.0)
    ratio_target("echo RTT p50 / mp.connection RTT p50", get(py, "rtt_p50_us"), get("mp", "rtt_p50_us"), "<=", 1.0)
    ratio_target("echo RTT p50 / pyzmq RTT p50", get(py, "rtt_p50_us"), get("zmq", "rtt_p50_us"), "<=", 0.25)
    ratio_target("1 MiB echo / pyzmq", get(py, "echo_1mib_gbps"), get("zmq", "echo_1mib_gbps"), ">=", 1.0)
    ratio_target("ws RTT p50 / websockets RTT p50", get(ws, "rtt_p50_us"), get("websockets", "rtt_p50_us"), "<=", 0.5)
    ratio_target("ws 1 MiB echo / websockets", get(ws, "echo_1mib_gbps"), get("websockets", "echo_1mib_gbps"), ">=", 1.5)
    abs_target("import ipcez (ms)", fp.get("import_ms"), 30, "ms")
    abs_target("idle RSS over bare Python (MB)", fp.get("rss_idle_over_bare_mb"), 15, "MB")
    if "conn_all_ok" in fp:
        targets.append({"target": "1,000 connections without error",
                        "status": "PASS" if fp["conn_all_ok"] else "MISS",
                        "value": f"{fp.get('conn_accepted', 0)}/{fp.get('conn_requested', 1000)} accepted",
                        "limit": "1000/1000"})
    else:
        targets.append({"target": "1,000 connections without error", "status": "SKIP", "value": None, "limit": "1000/1000"})
    return targets

