"""``ipcez demo``: both transports at work in one process, with no setup."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Callable, List, Sequence, Tuple

import ipcez

from ._cli_common import EXIT_OK, EXIT_USAGE, TRANSPORT_NAMES, CliError, ms_text, out

DEMO_EPILOG = """\
The demo needs no environment: it sets target/os for its own process only.
It starts a listener on a temporary Unix socket and one on ws://127.0.0.1:0/demo,
connects to each, exchanges a few messages (one of 1 MiB), measures round trips
and removes everything it created.
"""


def _percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, int(round(fraction * (len(ordered) - 1)))))
    return ordered[index]


class _DemoResult:
    def __init__(self, transport: str) -> None:
        self.transport = transport
        self.big_seconds = 0.0
        self.rtts: List[float] = []
        self.acks: List[float] = []


def _demo_unix_endpoint() -> Tuple[str, Callable[[], None]]:
    if sys.platform == "win32":
        return f"ipcez-demo-{os.getpid()}", lambda: None
    base = tempfile.gettempdir()
    if len(base) > 60:  # AF_UNIX paths are limited to ~107 bytes
        base = "/tmp"
    directory = tempfile.mkdtemp(prefix="ipcez-demo-", dir=base)
    return os.path.join(directory, "demo.sock"), lambda: shutil.rmtree(directory, ignore_errors=True)


def _demo_transport(title: str, endpoint: str, rounds: int) -> _DemoResult:
    """Run the demo against one endpoint; prints as it goes."""
    timeout = 10.0
    resolution = ipcez.which(endpoint)
    result = _DemoResult(resolution.transport)
    local = resolution.transport != "websocket"
    out(f"{title}")
    out(f"  which({endpoint!r})")
    out(f"    -> transport {resolution.transport} ({TRANSPORT_NAMES.get(resolution.transport)}), "
         f"address {resolution.address}")
    with ipcez.listen(endpoint) as listener:
        real = " (port 0 asked, the listener reports the real port)" if listener.address != endpoint else ""
        out(f"  listening on {listener.address}{real}")
        with ipcez.connect(listener.address) as client, listener.accept(timeout=timeout) as server:
            out(f"  connected: client.transport = {client.transport!r}")
            # hello, both ways
            for sender, receiver, text, arrow in (
                (client, server, b"hello from the client", "client -> server"),
                (server, client, b"hello back from the server", "server -> client"),
            ):
                started = time.perf_counter()
                sender.send(text)
                acked = time.perf_counter() - started
                got = receiver.recv(timeout=timeout)
                arrived = time.perf_counter() - started
                if got != text:
                    raise CliError(f"demo: {arrow} delivered {got!r} instead of {text!r}")
                how = f"acked after {ms_text(acked)}, " if local else ""
                tail = "" if local or sender is server else " (WebSocket sends wait for no ack)"
                out(f"  {arrow}: {text.decode()!r}: {how}received after {ms_text(arrived)}{tail}")
            # a 1 MiB message
            big = bytes(range(256)) * 4096
            started = time.perf_counter()
            client.send(big)
            got = server.recv(timeout=timeout)
            took = time.perf_counter() - started
            if got != big:
                raise CliError(f"demo: the 1 MiB message arrived damaged ({len(got)} bytes)")
            result.big_seconds = took
            ack_note = ", send returned once the server had acked it" if local else ""
            out(f"  1 MiB message: delivered intact in {ms_text(took)} "
                 f"({len(big) / took / 2**20:.0f} MiB/s{ack_note})")
            # the size limit
            try:
                client.send(bytes(ipcez.MAX_MESSAGE_SIZE + 1))
            except ipcez.MessageTooLarge:
                client.send(b"still usable")
                server.recv(timeout=timeout)
                out("  4 MiB + 1 byte: refused before sending (MessageTooLarge); connection still usable")
            else:
                raise CliError("demo: a message over 4 MiB was not refused")
            # latency
            payload = b"ping"
            for _ in range(rounds):
                started = time.perf_counter()
                client.send(payload)
                sent = time.perf_counter()
                server.send(server.recv(timeout=timeout))
                client.recv(timeout=timeout)
                done = time.perf_counter()
                result.acks.append(sent - started)
                result.rtts.append(done - started)
            ack_part = f"; send+ack p50 {ms_text(statistics.median(result.acks))}" if local else ""
            out(f"  {rounds} round trips of {len(payload)} B: p50 {ms_text(statistics.median(result.rtts))}, "
                 f"p99 {ms_text(_percentile(result.rtts, 0.99))}{ack_part}")
    if resolution.transport == "unix":
        gone = not os.path.exists(resolution.address)
        out(f"  closed; socket file {'removed' if gone else 'STILL PRESENT'}")
        if not gone:
            raise CliError(f"demo: the listener left {resolution.address} behind")
    else:
        out("  closed")
    return result


def cmd_demo(args: argparse.Namespace) -> int:
    if args.rounds < 1:
        raise CliError("--rounds must be at least 1", EXIT_USAGE)
    local_os = "windows" if sys.platform == "win32" else "linux"
    saved = {name: os.environ.get(name) for name in ("IPCEZ_TARGET", "IPCEZ_OS")}
    endpoint, cleanup = _demo_unix_endpoint()
    results: List[_DemoResult] = []
    out(f"ipcez {ipcez.__version__} demo: this process talks to itself over both transports.")
    out(f"(For local endpoints ipcez reads target/os from the environment; the demo sets "
         f"target=local os={local_os} for itself only.)")
    out()
    try:
        os.environ["IPCEZ_TARGET"] = "local"
        os.environ["IPCEZ_OS"] = local_os
        local_title = "Windows named pipe" if local_os == "windows" else "Unix domain socket"
        results.append(_demo_transport(f"[1/2] {local_title}", endpoint, args.rounds))
        out()
        results.append(_demo_transport("[2/2] WebSocket", "ws://127.0.0.1:0/demo", args.rounds))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        cleanup()
    out()
    out(f"{'transport':<11} {'1 MiB':>9} {'rtt p50':>9} {'rtt p99':>9}   (rtt: a 4 B message there and back)")
    for r in results:
        out(f"{r.transport:<11} {ms_text(r.big_seconds):>9} {ms_text(statistics.median(r.rtts)):>9} "
             f"{ms_text(_percentile(r.rtts, 0.99)):>9}")
    out()
    out("Everything the demo created is gone. Next: `ipcez listen /tmp/app.sock --echo` in one")
    out("terminal, `ipcez send /tmp/app.sock hello` in another (after `export target=local os=linux`).")
    return EXIT_OK
