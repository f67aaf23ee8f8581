"""The C# row: echo round trips of 64 B through ``Ipcez`` (C#, over a Unix socket) against the
same through .NET's own ``Socket`` over a Unix socket with frames written by hand, measured in
the same Mono process, in alternating rounds (``csharp/bench/Bench.cs``).

    python bench/csharp_echo.py [--quick]

Needs Mono (``mcs``, ``mono``) and the release library (``cargo build --release -p ipcez-ffi``
in rust/, or IPCEZ_LIBRARY). Prints the two rates and their ratio; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "csharp"))

import build_csharp  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer round trips (CI)")
    args = parser.parse_args()
    missing = build_csharp.missing_tools()
    if missing:
        print(f"skipped: {', '.join(missing)} not found (apt-get install {build_csharp.APT_PACKAGES})")
        return 0
    library = Path(os.environ.get("IPCEZ_LIBRARY") or ROOT / "rust" / "target" / "release" / "libipcez_ffi.so")
    if not library.is_file():
        print(f"no {library}: run `cargo build --release -p ipcez-ffi` in rust/ (a debug build would say nothing)")
        return 1
    count, rounds = ("5000", "3") if args.quick else ("20000", "5")
    with tempfile.TemporaryDirectory(prefix="ipcez-cs-bench-") as tmp:
        dll = build_csharp.compile_library(Path(tmp))
        exe = build_csharp.compile_program(dll, [ROOT / "csharp" / "bench" / "Bench.cs"], Path(tmp) / "Bench.exe")
        env = dict(os.environ, IPCEZ_LIBRARY=str(library.resolve()), target="local", os="linux")
        out = subprocess.run(["mono", "-O=all", str(exe), count, rounds], env=env, capture_output=True,
                             text=True, timeout=600, check=True).stdout
    rates = {name: float(value) for name, value in (line.split() for line in out.splitlines() if line.strip())}
    ipcez, plain = rates["ipcez-csharp-unix"], rates["dotnet-socket-unix"]
    print(f"C# echo round trips, 64 B, Unix socket ({count} per round, median of {rounds} rounds, Mono):")
    print(f"  Ipcez (acknowledged sends)         {ipcez:>9,.0f}/s  ({1e6 / ipcez:.1f} us per round trip)")
    print(f"  .NET Socket, frames by hand        {plain:>9,.0f}/s  ({1e6 / plain:.1f} us per round trip)")
    print(f"  ratio Ipcez / .NET Socket          {ipcez / plain:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
