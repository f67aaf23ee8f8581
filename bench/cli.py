"""The command line: the ``_child`` roles, and a run of every section in order."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

from . import aio_rows, footprint, many_clients, sync_rows, usage
from .clients import run_client
from .common import RESULTS, RUST_BENCH, exit_on_sigterm
from .harness import Orchestrator
from .report import draw_chart, machine_info, render_targets
from .servers import SERVERS

def child_main(argv: List[str]) -> None:
    exit_on_sigterm()
    role, args = argv[0], argv[1:]
    if role == "serve":
        SERVERS[args[0]](args[1])
    elif role == "client":
        run_client(args[0], args[1], int(args[2]), args[3] if len(args) > 3 else None)
    elif role == "rss-bare":
        footprint.probe_rss_bare()
    elif role == "rss-idle":
        footprint.probe_rss_idle(args[0])
    elif role == "many-listen":
        footprint.many_listen(args[0], int(args[1]), float(args[2]))
    elif role == "many-client":
        footprint.many_client(args[0], int(args[1]))
    elif role.startswith("aio-"):
        aio_rows.child_main(role, args)
    elif role.startswith("mc-"):
        many_clients.child_main(role, args)
    else:
        raise SystemExit(f"unknown child role {role!r}")


def orchestrate(args: argparse.Namespace) -> int:
    orch = Orchestrator(args)
    mode = "quick" if orch.quick else "full"
    machine = machine_info()
    print(f"ipcez benchmark ({mode}, {orch.rounds} rounds per latency workload, "
          f"median of {orch.repeat} pass(es)) on "
          f"{machine['cpu_model']}, {machine['cores']} cores, Python {machine['python']}", flush=True)
    results: Dict[str, Dict[str, Any]] = {}
    fp: Dict[str, Any] = {}
    aio: Dict[str, Any] = {}
    mc: Dict[str, Any] = {}
    built: Dict[str, Any] = {}
    try:
        built = orch.ensure_built()
        orch.start = time.monotonic()  # a cargo build does not eat the quick budget
        results = sync_rows.run(orch)
        if orch.left() > 5:
            fp = footprint.run(orch)
        else:
            fp = {"skipped": "time budget used up"}
        orch.budget += 45.0 if orch.quick else 300.0  # the asyncio and stream rows' share
        aio = aio_rows.measure(orch)
        orch.budget += 45.0 if orch.quick else 300.0  # the many-clients rows' share
        mc = many_clients.measure(orch)
    except KeyboardInterrupt:
        orch.notes.append("interrupted")
        print("\ninterrupted; cleaning up", flush=True)
    except Exception as exc:
        orch.notes.append(f"benchmark aborted: {exc!r}")
        print(f"benchmark aborted: {exc!r}", flush=True)
    finally:
        orch.cleanup()
    files, sems = orch.leftovers
    # pyzmq leaves its ipc file and the SIGTERM'd Rust example cannot remove its own;
    # an ipcez Python listener closes on SIGTERM and must remove its file.
    ipcez_files = [os.path.basename(f) for f in files if "zmq" not in f and "ipcez-rs" not in f]
    if ipcez_files:
        orch.anomalies.append(f"socket files left by ipcez Python listeners (removed): {ipcez_files}")
    # The Rust example server dies on SIGTERM without closing its listener, so its
    # semaphores are expected leftovers; a Python listener closes on SIGTERM and should not leak.
    python_sems = [s for s in sems if "ipcez-rs-unix" not in s]
    if python_sems:
        orch.anomalies.append(
            f"ack semaphores left after a SIGTERM'd Python ipcez listener (removed): {python_sems}"
        )

    targets = sync_rows.evaluate_targets(results, fp)
    table = sync_rows.render_table(results)
    print()
    print(table)
    print()
    print(footprint.render_footprint(fp))
    print()
    print(render_targets(targets))
    if aio:
        print()
        print(aio_rows.render(aio))
        targets += aio_rows.evaluate(aio)
    if mc:
        print()
        print(many_clients.render(mc))
        mc_targets = many_clients.evaluate(mc)
        print(render_targets(mc_targets).replace("Targets (ipcez from Python;", "Targets (many clients;", 1))
        targets += mc_targets
    print()
    print(usage.render(results, aio.get("rows", {})))
    notes = orch.notes + orch.anomalies
    if notes:
        print("\nNotes")
        for n in notes:
            print(f"  - {n}")

    report = {
        **machine,
        "mode": mode,
        "rounds": orch.rounds,
        "repeat": orch.repeat,
        "library": str(orch.library),
        "rust_bench": str(RUST_BENCH),
        "results": results,
        "footprint": fp,
        "aio": aio,
        "many_clients": mc,
        "targets": targets,
        "notes": notes,
        "built": built,
    }
    out = Path(args.out) if args.out else RESULTS
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
        msg = draw_chart(out / "latest.png", results, fp, targets, machine, mode)
        print(f"\nwrote {out / 'latest.json'}" + (f"; {msg}" if msg else f" and {out / 'latest.png'}"))
    except Exception as exc:
        print(f"could not write results: {exc!r}")
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        child_main(sys.argv[2:])
        return 0
    p = argparse.ArgumentParser(description="Compare ipcez with the usual ways of talking between two processes, on this machine.")
    p.add_argument("--quick", action="store_true", help="a few hundred rounds; finishes in about 2 min")
    p.add_argument("--rounds", type=int, default=0, help="latency rounds per workload (default 5000, quick 300)")
    p.add_argument("--repeat", type=int, default=0, help="passes over all implementations, median taken (default 3, quick 1)")
    p.add_argument("--library", default="", help="the libipcez_ffi to load (default: the release build)")
    p.add_argument("--package", default="", help="the directory holding the ipcez Python package to measure "
                   "(default: python/ of this checkout), e.g. an older version for a before/after pair")
    p.add_argument("--out", default="", help="directory for latest.json / latest.png (default bench/results)")
    args = p.parse_args()

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    return orchestrate(args)


