"""Rust's log records in Python's :mod:`logging`, and the detection guidance on ``sys.stderr``.

The native library hands each record to :func:`_forward` on a thread of its own
(never on the thread that made it, so a busy interpreter slows down no
connection).  A record from the Rust module ``ipcez::listener`` goes to the
logger ``ipcez.listener``, one from a dependency such as ``rustls::conn`` to
``ipcez.rustls.conn``: everything is under ``logging.getLogger("ipcez")``,
which, as for any library, has only a ``NullHandler`` until the application
configures logging.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import sys
import threading
from typing import Dict, Optional, Set

from . import _ffi

__all__ = ["LOGGER", "install", "uninstall", "logger_name", "show_guidance"]

#: The package's logger; every record ipcez makes is under it.
LOGGER = logging.getLogger("ipcez")
LOGGER.addHandler(logging.NullHandler())

#: Rust's levels (1 error ... 5 trace) as Python's.
_LEVELS: Dict[int, int] = {
    1: logging.ERROR,
    2: logging.WARNING,
    3: logging.INFO,
    4: logging.DEBUG,
    5: 5,
}

#: The most verbose Rust level passed on: debug (ipcez's own; dependencies from warn up).
_NATIVE_MAX_LEVEL = 4

_installed = False
_install_lock = threading.Lock()
_guidance_shown = False
_guidance_lock = threading.Lock()


def logger_name(target: str) -> str:
    """The logger for a Rust record's target: ``ipcez::ws`` -> ``ipcez.ws``."""
    parts = [p for p in target.split("::") if p]
    if parts and parts[0] == "ipcez":
        parts = parts[1:]
    return ".".join(["ipcez", *parts])


#: The native threads whose Python thread state is kept, see below (a child has none).
_kept: Set[int] = set()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_kept.clear)


def _keep_thread_state() -> None:
    """Keep the calling native thread's Python thread state for the life of the thread.

    ctypes makes a thread state for each call from a thread Python did not start, and
    deletes it afterwards, each time under the interpreter's thread-list lock, which it
    takes before the GIL. On Python 3.11 a ``fork()`` while that lock is held hangs the
    child inside ``os.fork()`` itself (the child deletes the other threads' states before
    it renews that lock). One extra ``PyGILState_Ensure``, never released, makes ctypes
    reuse the state instead: the lock is then taken once per thread, not once per record.
    The ``ipcez-log`` thread lives as long as the process, so nothing piles up.
    """
    key = threading.get_ident()
    if key not in _kept:
        _kept.add(key)
        ensure = getattr(getattr(ctypes, "pythonapi", None), "PyGILState_Ensure", None)
        if ensure is not None:  # not on PyPy, which has no such states
            ensure()


def _forward(
    _userdata: Optional[int],
    level: int,
    target: Optional[int],
    target_len: int,
    message: Optional[int],
    message_len: int,
) -> None:
    # An exception must not escape into the native thread: ctypes would print it to fd 2.
    try:
        _keep_thread_state()
        py_level = _LEVELS.get(level, logging.INFO)
        name = logger_name(_ffi.borrowed_bytes(target, target_len).decode("utf-8", "replace"))
        logger = logging.getLogger(name)
        if logger.isEnabledFor(py_level):
            text = _ffi.borrowed_bytes(message, message_len).decode("utf-8", "replace")
            logger.log(py_level, "%s", text)
    except BaseException:  # noqa: BLE001 - logging must never break the native side
        pass


# Kept alive for as long as the library may call it.
_CALLBACK = _ffi.LOG_FN(_forward)


def install() -> None:
    """Route the native library's records to :data:`LOGGER` (idempotent), and take over
    the detection guidance from its stderr printing (see :func:`show_guidance`)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        _ffi.lib.ipcez_detection_guidance_to_stderr(False)
        # False: a Rust host already owns the process's `log` facade; records go there.
        _ffi.lib.ipcez_set_log_callback(_CALLBACK, None, _NATIVE_MAX_LEVEL)
        _installed = True
        atexit.register(uninstall)


def uninstall() -> None:
    """Stop forwarding (at interpreter exit: no native thread may call into Python then).

    Returns once no forwarding call is in progress.
    """
    global _installed
    with _install_lock:
        if _installed:
            _ffi.lib.ipcez_set_log_callback(_ffi.LOG_FN(), None, 0)  # NULL: no callback
            _installed = False


def show_guidance(text: str) -> None:
    """Write the detection guidance to ``sys.stderr``, once per process."""
    global _guidance_shown
    with _guidance_lock:
        if _guidance_shown or not text:
            return
        _guidance_shown = True
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):  # no usable stderr (pythonw, closed)
        pass
