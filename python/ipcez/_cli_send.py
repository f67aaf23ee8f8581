"""``ipcez send``: send messages (arguments or stdin lines) and print the replies."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Iterable, Iterator, List, Sequence

import ipcez

from ._cli_common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    as_text,
    describe,
    error_text,
    ms_text,
    note,
    out,
    resolve_endpoint,
    size,
)

SEND_EPILOG = """\
examples:
  ipcez send /tmp/app.sock hello              one message
  ipcez send /tmp/app.sock a b c --wait 2     three messages; print replies for 2 s
  ipcez send --hex /tmp/app.sock 00ff10       a binary message
  seq 3 | ipcez send /tmp/app.sock            stdin lines (without their newline)

On local transports each send waits until the recipient has acknowledged it.
Replies are printed to stdout as they arrive; progress goes to stderr.
"""


def _stdin_messages() -> Iterator[bytes]:
    stream = sys.stdin.buffer
    while True:
        line = stream.readline()
        if not line:
            return
        if line.endswith(b"\n"):
            line = line[:-1]
            if line.endswith(b"\r"):
                line = line[:-1]
        yield line


def _arg_messages(messages: Sequence[str], as_hex: bool) -> Iterator[bytes]:
    for text in messages:
        if as_hex:
            try:
                yield bytes.fromhex(text)
            except ValueError as exc:
                raise CliError(f"not a hex string: {text!r} ({exc})", EXIT_USAGE) from exc
        else:
            yield os.fsencode(text)  # the exact bytes of the argument


def _print_reply(data: bytes) -> None:
    text = as_text(data)
    if text is not None and data:
        out(text)
    else:
        out(describe(data))


def cmd_send(args: argparse.Namespace) -> int:
    if args.wait < 0:
        raise CliError("--wait must be >= 0", EXIT_USAGE)
    if args.ack_timeout <= 0:
        raise CliError("--ack-timeout must be > 0", EXIT_USAGE)
    resolution = resolve_endpoint(args.endpoint)
    if args.messages:
        messages: Iterable[bytes] = list(_arg_messages(args.messages, args.hex))  # validate first
    else:
        if args.hex:
            messages = (_parse_hex_line(line) for line in _stdin_messages())
        else:
            messages = _stdin_messages()
        if sys.stdin.isatty() and not args.quiet:
            note("reading messages from stdin, one per line (Ctrl-D ends)")
    try:
        sock = ipcez.connect(args.endpoint, ack_timeout=args.ack_timeout, subprotocols=args.subprotocols)
    except ipcez.IoError as exc:
        raise CliError(error_text(exc)) from exc
    replies = [0]
    reader_error: List[BaseException] = []
    stop_reading = threading.Event()

    def read_replies() -> None:
        # Short waits and a stop flag, so that the socket is never closed while this
        # thread is inside recv (the main thread joins it first).
        try:
            while not stop_reading.is_set():
                try:
                    reply = sock.recv(timeout=0.05)
                except TimeoutError:
                    continue
                replies[0] += 1
                _print_reply(reply)
        except ipcez.ConnectionLost:
            pass
        except ipcez.SocketError as exc:
            reader_error.append(exc)

    reader = threading.Thread(target=read_replies, name="ipcez-send-replies", daemon=True)
    reader.start()
    local = resolution.transport != "websocket"
    sent = 0
    try:
        for data in messages:
            started = time.perf_counter()
            sock.send(data)
            took = time.perf_counter() - started
            sent += 1
            if not args.quiet:
                how = f"acked in {ms_text(took)}" if local else "sent (WebSocket sends are not acked)"
                note(f"message {sent}: {size(len(data))} {how}")
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline and not sock.closed:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    except ipcez.RecipientAckTimeout as exc:
        raise CliError(f"message {sent + 1}: {error_text(exc)}") from exc
    except ipcez.ConnectionLost as exc:
        raise CliError(f"message {sent + 1}: the connection was lost ({error_text(exc)})") from exc
    finally:
        stop_reading.set()
        reader.join(timeout=2.0)
        sock.close()
    if reader_error:
        raise CliError(f"while reading replies: {error_text(reader_error[0])}")
    if not args.quiet:
        note(f"sent {sent} message(s), received {replies[0]} repl{'y' if replies[0] == 1 else 'ies'}")
    return EXIT_OK


def _parse_hex_line(line: bytes) -> bytes:
    try:
        return bytes.fromhex(line.decode("ascii"))
    except ValueError as exc:
        raise CliError(f"not a hex string: {line!r}", EXIT_USAGE) from exc
