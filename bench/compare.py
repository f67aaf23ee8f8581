#!/usr/bin/env python3
"""Compare ipcez with the usual ways of talking between two processes, on this machine.

    python bench/compare.py            # full run, a minute or two
    python bench/compare.py --quick    # a few hundred rounds per workload, about 2 min (CI)

Every figure comes from one run: each implementation gets its own echo server in a
separate process and its own client process, so the numbers are comparable with
one another (not with figures from another machine or another day).

Workloads (messages start with a command byte: b'E' echo, b'A' answer with one
byte, anything else swallowed):

* acked send   64 B, blocks until the peer acknowledges (ipcez local transports).
               Anchors have no acknowledgement: their echo round trip is shown
               instead (marked ``*``) and is what ipcez is compared against.
* echo RTT     64 B out and back, p50/p99.
* 1 MiB echo   GB/s, counting the bytes in both directions.
* 1 KiB msgs/s one-way sends: acked ones for ipcez over a Unix socket; for the
               local anchors a 1-byte application-level answer per message (the
               nearest they have to an ack; REQ/REP needs an answer anyway); over
               WebSockets (no ack in ipcez either) plain one-way sends followed by
               one echo, so that the server has taken them all.

Plus: ``import ipcez`` time, the resident memory an idle process holding one
connection adds to a bare interpreter, and the memory one listener needs for
1,000 connections; then the asyncio echo rows, the one-way stream of 64 B
messages (``send_many``) and 10,000 ``ipcez.aio`` connections on one listener
(``bench/aio_rows.py``).

ipcez runs with the release build of its library (``IPCEZ_LIBRARY`` is set to
``rust/target/release/libipcez_ffi.so`` in the benchmark's own processes only);
it and the Rust ``bench`` example are built with cargo when missing.
Results: ``bench/results/latest.json`` and ``bench/results/latest.png``.
The script never fails because a target is missed, and exits 0 unless it
cannot run at all.
"""

import os
import sys

# The benchmark is the package ``bench`` (one module per section); this file is its entry
# point, run as a script by CI and by its own child processes.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
