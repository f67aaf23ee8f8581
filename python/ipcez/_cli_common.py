"""What every ``ipcez`` command shares: exit statuses, the one-line error, output helpers
and how a message is shown."""

from __future__ import annotations

import errno
import sys
import threading
import time
from typing import Optional

import ipcez

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

TRANSPORT_NAMES = {
    "unix": "Unix domain socket",
    "websocket": "WebSocket",
    "named_pipe": "Windows named pipe",
}

PROG = "ipcez"


class CliError(Exception):
    """A failure to report as ``ipcez: error: <message>`` with exit status ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


_print_lock = threading.Lock()


def out(line: str = "") -> None:
    """Print one line to stdout (thread-safe, flushed at once)."""
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def note(line: str) -> None:
    """Print one ``ipcez: ...`` progress line to stderr."""
    with _print_lock:
        sys.stderr.write(f"{PROG}: {line}\n")
        sys.stderr.flush()


def timestamp() -> str:
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"


def size(n: int) -> str:
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MiB"
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} B"


def ms_text(seconds: float) -> str:
    ms = seconds * 1000
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms"


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}

#: Characters of text shown before a long message is cut; bytes of a hex preview.
TEXT_PREVIEW = 200
HEX_PREVIEW = 32


def as_text(data: bytes) -> Optional[str]:
    """The message as text when it is UTF-8 without control characters (tab, CR, LF allowed)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(not (c.isprintable() or c in "\n\r\t") for c in text):
        return None
    return text


def hex_preview(data: bytes) -> str:
    shown = data[:HEX_PREVIEW].hex(" ")
    return shown + (" ..." if len(data) > HEX_PREVIEW else "")


def describe(data: bytes) -> str:
    """One line for a message: ``text (5 B): hello`` or ``binary (3 B): 00 ff 10``."""
    text = as_text(data)
    if not data:
        return "empty message (0 B)"
    if text is None:
        return f"binary ({size(len(data))}): {hex_preview(data)}"
    shown = "".join(_ESCAPES.get(c, c) for c in text[:TEXT_PREVIEW])
    if len(text) > TEXT_PREVIEW:
        shown += " ..."
    return f"text ({size(len(data))}): {shown}"


def error_text(exc: BaseException) -> str:
    """A readable one-line description of an exception."""
    if isinstance(exc, OSError) and exc.strerror:
        text = str(exc.strerror)
        if exc.filename is not None:
            text += f": {exc.filename}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def resolve_endpoint(endpoint: str) -> "ipcez.Resolution":
    """``ipcez.which(endpoint)``; a problem with the endpoint or environment is exit 2."""
    try:
        return ipcez.which(endpoint)
    except (ipcez.DetectionError, ipcez.UnsupportedCombination, ipcez.WsError) as exc:
        raise CliError(error_text(exc), EXIT_USAGE) from exc
    except ipcez.IoError as exc:
        if exc.errno == errno.EINVAL:  # empty endpoint, NUL byte, malformed URL
            raise CliError(error_text(exc), EXIT_USAGE) from exc
        raise
