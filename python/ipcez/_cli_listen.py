"""``ipcez listen``: accept connections, print (and optionally echo) every message."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import signal
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import ipcez

from ._cli_common import (
    EXIT_OK,
    EXIT_USAGE,
    TRANSPORT_NAMES,
    CliError,
    describe,
    error_text,
    note,
    out,
    resolve_endpoint,
    timestamp,
)

LISTEN_EPILOG = """\
examples:
  ipcez listen /tmp/app.sock                  print every message that arrives
  ipcez listen /tmp/app.sock --echo           ... and send each one back
  ipcez listen /tmp/app.sock --count 3        exit after three messages
  ipcez listen ws://127.0.0.1:0/app           a WebSocket on a free port (printed)

Several clients may be connected at once.  Text messages are printed as text,
others as a hex preview with their length.  Ctrl-C (or SIGTERM) stops the
listener and removes its socket file.
"""


class _SignalsToInterrupt:
    """While active, SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt (even if SIGINT was ignored)."""

    def __init__(self) -> None:
        self._saved: List[Tuple[int, Any]] = []

    def __enter__(self) -> "_SignalsToInterrupt":
        if threading.current_thread() is not threading.main_thread():
            return self
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            signum = getattr(signal, name, None)
            if signum is None:
                continue
            try:
                self._saved.append((signum, signal.signal(signum, self._raise)))
            except (OSError, ValueError):
                pass
        return self

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def shield(self) -> None:
        """From now on ignore these signals (a second Ctrl-C must not interrupt the cleanup)."""
        for signum, _ in self._saved:
            signal.signal(signum, signal.SIG_IGN)

    def __exit__(self, *exc_info: Any) -> None:
        for signum, handler in self._saved:
            signal.signal(signum, handler)


class _Server:
    """State shared by the connection threads of ``ipcez listen``."""

    def __init__(self, echo: bool, count: Optional[int]) -> None:
        self.echo = echo
        self.count = count
        self.received = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.sockets: Dict[int, "ipcez.Socket"] = {}
        self.threads: List[threading.Thread] = []

    def serve(self, sock: "ipcez.Socket", conn_id: int) -> None:
        tag = f"#{conn_id}"
        try:
            while not self.done.is_set():
                try:
                    message = sock.recv(timeout=0.2)
                except TimeoutError:
                    continue
                with self.lock:
                    if self.count is not None and self.received >= self.count:
                        break
                    self.received += 1
                    last = self.count is not None and self.received >= self.count
                out(f"{timestamp()} {tag} {describe(message)}")
                if self.echo:
                    try:
                        sock.send(message)
                    except ipcez.SocketError as exc:
                        note(f"{tag}: could not echo: {error_text(exc)}")
                if last:
                    self.done.set()
        except ipcez.ConnectionLost:
            if not self.done.is_set():
                out(f"{timestamp()} {tag} disconnected")
        except ipcez.SocketError as exc:
            if not self.done.is_set():
                out(f"{timestamp()} {tag} closed after an error: {error_text(exc)}")
        except BrokenPipeError:  # stdout went away (`ipcez listen ... | head`): stop
            self.done.set()
        finally:
            sock.close()
            with self.lock:
                self.sockets.pop(conn_id, None)


def _log_to_stderr(level: str) -> None:
    """What the library logs (logger ``ipcez``) goes to stderr from ``level`` up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    logger = logging.getLogger("ipcez")
    logger.addHandler(handler)
    logger.setLevel(level.upper())


def cmd_listen(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        raise CliError("--count must be at least 1", EXIT_USAGE)
    resolution = resolve_endpoint(args.endpoint)
    kwargs: Dict[str, Any] = {}
    if args.certfile or args.keyfile:
        kwargs.update(certfile=args.certfile, keyfile=args.keyfile)
    if args.mode is not None:
        kwargs["mode"] = args.mode
    if args.max_connections is not None:
        if args.max_connections < 1:
            raise CliError("--max-connections must be at least 1", EXIT_USAGE)
        kwargs["max_connections"] = args.max_connections
    kwargs.update(origins=args.origins, subprotocols=args.subprotocols)
    _log_to_stderr(args.log_level)
    server = _Server(args.echo, args.count)
    with _SignalsToInterrupt() as signals:
        listener = ipcez.listen(args.endpoint, **kwargs)
        try:
            what = "echoing" if args.echo else "printing"
            until = f"exits after {args.count} message(s) or Ctrl-C" if args.count else "Ctrl-C stops"
            out(
                f"listening on {listener.address} "
                f"({TRANSPORT_NAMES.get(resolution.transport, resolution.transport)}); "
                f"{what} messages; {until}"
            )
            conn_id = 0
            while not server.done.is_set():
                try:
                    sock = listener.accept(timeout=0.2)
                except TimeoutError:
                    continue
                conn_id += 1
                out(f"{timestamp()} #{conn_id} connected ({sock.transport})")
                with server.lock:
                    server.sockets[conn_id] = sock
                thread = threading.Thread(
                    target=server.serve, args=(sock, conn_id), name=f"ipcez-listen-{conn_id}", daemon=True
                )
                thread.start()
                server.threads.append(thread)
            out(f"{timestamp()} received {server.received} message(s); stopping")
        except KeyboardInterrupt:
            out(f"{timestamp()} interrupted; stopping")
        finally:
            signals.shield()
            # The connection threads notice `done` within 0.2 s and close their own
            # sockets; only one stuck in an echo (waiting for an ack) is closed from here.
            server.done.set()
            deadline = time.monotonic() + 1.0
            for thread in server.threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
            with server.lock:
                open_sockets = list(server.sockets.values())
            for sock in open_sockets:
                sock.close()
            listener.close()
    if resolution.transport == "unix":
        out(f"removed {resolution.address}" if not os.path.exists(resolution.address)
             else f"warning: {resolution.address} still exists")
    return EXIT_OK
