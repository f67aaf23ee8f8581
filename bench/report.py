"""The end of a run: the targets' lines, the machine it ran on, and the chart."""

from __future__ import annotations

import datetime
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional

from .common import ROOT
from .footprint import render_footprint
from .sync_rows import value_of

def render_targets(targets: List[Dict[str, Any]]) -> str:
    out = ["Targets (ipcez from Python; a MISS is reported, never fatal)"]
    for t in targets:
        v = "—" if t["value"] is None else t["value"]
        if isinstance(v, float) and isinstance(t["limit"], str) and t["limit"].endswith("x"):
            v = f"{v:.2f}x"
        out.append(f"  {t['status']:<5} {t['target']:<42} {str(v):>16}  (want {t['limit']})")
    return "\n".join(out)


def machine_info() -> Dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    commit = None
    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=str(ROOT),
                           capture_output=True, text=True, timeout=5)
        commit = r.stdout.strip() or None
    except Exception:
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "git_commit": commit,
    }


def draw_chart(path: Path, results: Dict[str, Dict[str, Any]], fp: Dict[str, Any],
               targets: List[Dict[str, Any]], machine: Dict[str, Any], mode: str) -> Optional[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as exc:
        return f"no chart: matplotlib unavailable ({exc})"
    panels = [
        ("send_p50_us", "acked send p50 (µs; * = echo RTT, no ack)", False),
        ("rtt_p50_us", "echo RTT p50, 64 B (µs)", False),
        ("rtt_p99_us", "echo RTT p99, 64 B (µs)", False),
        ("echo_1mib_gbps", "1 MiB echo (GB/s, both ways)", True),
        ("msgs_per_s_1kib", "1 KiB messages/s", True),
    ]
    keys = [k for k, e in results.items() if "skipped" not in e]
    fig, axes = plt.subplots(2, 3, figsize=(17, 9))
    for ax, (col, title, higher) in zip(axes.flat, panels):
        labels, vals, colors, hatches = [], [], [], []
        for k in keys:
            e = results[k]
            v, standin = value_of(e, col)
            if v is None:
                continue
            labels.append(e["label"] + ("*" if standin else ""))
            vals.append(v)
            local = e["group"] == "local"
            ipcez_row = k.startswith("ipcez")
            colors.append(("#1f5fa8" if ipcez_row else "#8fb3da") if local else ("#c4561b" if ipcez_row else "#f0b48a"))
            hatches.append("//" if standin else "")
        y = list(range(len(vals)))[::-1]
        bars = ax.barh(y, vals, color=colors)
        for b, h in zip(bars, hatches):
            b.set_hatch(h)
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_title(title + (" — higher is better" if higher else " — lower is better"), fontsize=9)
        for yy, v in zip(y, vals):
            ax.text(v, yy, " " + (f"{v:.2f}" if col == "echo_1mib_gbps" else f"{v:,.0f}" if v >= 100 else f"{v:.1f}"),
                    va="center", fontsize=7)
        ax.margins(x=0.18)
    ax = axes.flat[5]
    ax.axis("off")
    text = [render_footprint(fp), "", render_targets(targets)]
    ax.text(0, 1, "\n".join(text), va="top", ha="left", family="monospace", fontsize=6.2, wrap=True)
    fig.suptitle(
        f"ipcez vs anchors — {machine['date']} — {machine['cpu_model']}, {machine['cores']} cores, "
        f"Python {machine['python']} ({mode}); blue = Unix socket, orange = WebSocket, dark = ipcez",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None

