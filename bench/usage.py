"""CPU and wake-ups per echo: the user+sys CPU time the client and the server processes
spend on 10,000 echoes, and their voluntary context switches (each one a thread going to
sleep and being woken) per echo, read from /proc for every thread of both processes.

Clients take a :func:`snapshot` before a run of echoes and hand it to :func:`since`
after; the server's pid comes from the orchestrator.  Linux only (elsewhere, nothing)."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

#: A snapshot: (CPU seconds, voluntary switches) of the client, then of the server.
Snapshot = Tuple[Tuple[float, int], Optional[Tuple[float, int]]]


def echoes_for(rounds: int) -> int:
    """How many echoes the CPU run takes: enough for a stable figure, 10,000 in a full run."""
    return min(max(rounds * 4, 2000), 10_000)


def cpu_and_switches(pid: str) -> Tuple[float, int]:
    """CPU seconds (user+sys) and voluntary context switches of all of ``pid``'s threads."""
    cpu_ns = 0
    switches = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                cpu_ns += int(f.read().split()[0])  # time on a CPU, in ns
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        switches += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return cpu_ns / 1e9, switches


def snapshot(server_pid: Optional[str]) -> Optional[Snapshot]:
    """Both processes' counters now, or None where /proc cannot tell."""
    try:
        return cpu_and_switches("self"), cpu_and_switches(server_pid) if server_pid else None
    except OSError:
        return None


def since(before: Optional[Snapshot], echoes: int, server_pid: Optional[str]) -> Dict[str, float]:
    """CPU ms per 10,000 echoes and voluntary switches per echo since ``before``."""
    after = snapshot(server_pid)
    if before is None or after is None or not echoes:
        return {}
    out: Dict[str, float] = {}
    for side, b, a in (("client", before[0], after[0]), ("server", before[1], after[1])):
        if a is None or b is None:
            continue
        out[f"cpu_ms_10k_{side}"] = (a[0] - b[0]) * 1000 * 10_000 / echoes
        out[f"vcsw_per_echo_{side}"] = (a[1] - b[1]) / echoes
    return out


def table(rows: List[Tuple[str, Dict[str, Any]]], anchor: str) -> List[str]:
    """Lines for the rows that have CPU figures; ``anchor`` is the label ratios refer to."""
    have = [(label, e) for label, e in rows if "cpu_ms_10k_client" in e and "cpu_ms_10k_server" in e]
    if not have:
        return []
    base = dict(have).get(anchor)

    def total(e: Dict[str, Any]) -> float:
        return float(e["cpu_ms_10k_client"] + e["cpu_ms_10k_server"])

    lines = [f"  {'':<30}{'CPU ms / 10k echoes: client':>28}{'server':>9}{'both':>9}{'ratio':>8}"
             f"{'  wake-ups / echo: client':>26}{'server':>9}"]
    for label, e in have:
        ratio = f"{total(e) / total(base):.2f}x" if base and total(base) else "—"
        lines.append(
            f"  {label:<30}{e['cpu_ms_10k_client']:>28.0f}{e['cpu_ms_10k_server']:>9.0f}{total(e):>9.0f}"
            f"{ratio:>8}{e['vcsw_per_echo_client']:>26.2f}{e['vcsw_per_echo_server']:>9.2f}"
        )
    return lines


def render(sync: Dict[str, Dict[str, Any]], aio_rows: Dict[str, Dict[str, Any]]) -> str:
    """The CPU section: sync rows against multiprocessing.connection and the websockets
    package, the asyncio rows against asyncio streams and websockets' asyncio client."""
    out = ["CPU and wake-ups per 64 B echo (user+sys of all threads; voluntary context switches)"]
    groups = [
        ("Local", [(e["label"], e) for e in sync.values() if e.get("group") == "local"], "multiprocessing.connection"),
        ("WebSocket", [(e["label"], e) for e in sync.values() if e.get("group") == "remote"], "websockets (sync)"),
        ("asyncio, Unix", [(aio_rows[k]["label"], aio_rows[k]) for k in ("aio-ipcez-unix", "aio-streams") if k in aio_rows],
         "asyncio streams AF_UNIX"),
        ("asyncio, WebSocket", [(aio_rows[k]["label"], aio_rows[k]) for k in ("aio-ipcez-ws", "aio-websockets") if k in aio_rows],
         "websockets (asyncio)"),
    ]
    for title, rows, anchor in groups:
        lines = table(rows, anchor)
        if lines:
            out.append(f" {title} (ratio of both processes' CPU to {anchor})")
            out.extend(lines)
    if len(out) == 1:
        out.append("  (no figures: /proc was not readable)")
    return "\n".join(out)
