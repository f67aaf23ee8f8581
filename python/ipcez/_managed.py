"""One base class that owns a native handle (after wasmtime-py's ``_managed.py``).

Lifetime rules, in one place:

* The pointer is set once, at construction, and never changes.
* ``close()`` is idempotent and thread-safe.  It calls the native ``*_close``,
  which is safe while another thread is inside a call on the same handle (that
  call then fails with ConnectionLost).  Every method checks ``_closed`` first
  and raises :class:`ConnectionLost`, so a closed handle is never used.
* The native ``*_free`` runs only from the finalizer, i.e. once no Python
  reference (and so no thread inside a method) is left.  If the last reference
  dies on a thread that is running a ``message_handler`` callback, the free is
  handed to a short-lived thread, because ``*_free`` waits for that handler.
* At interpreter exit an ``atexit`` hook closes every handle still open, so
  handler threads stop calling into Python before it is torn down.  Finalizers
  do not run at exit (the process is going away; freeing under a daemon thread
  that is still inside a call would be a use-after-free).
"""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import Any, Callable, List

from . import _errors

# True on a thread while it runs a message_handler callback (set by _handler).
in_callback = threading.local()

_live: "weakref.WeakSet[Managed]" = weakref.WeakSet()
_live_lock = threading.Lock()


def _free(free_fn: Callable[[Any], None], ptr: Any) -> None:
    if getattr(in_callback, "active", False):
        threading.Thread(target=free_fn, args=(ptr,), name="ipcez-free", daemon=True).start()
    else:
        free_fn(ptr)


class Managed:
    """Owner of one native handle; subclasses set ``_close_fn`` and ``_free_fn``."""

    _close_fn: Callable[[Any], None]
    _free_fn: Callable[[Any], None]
    _priority = 0  # atexit closes lower numbers first (sockets before listeners)

    def __init__(self, ptr: Any) -> None:
        if not ptr:
            raise _errors.SocketError("internal error: the native call returned a NULL handle")
        self._ptr = ptr
        self._closed = False
        self._close_lock = threading.Lock()
        finalizer = weakref.finalize(self, _free, type(self)._free_fn, ptr)
        finalizer.atexit = False
        self._finalizer = finalizer
        with _live_lock:
            _live.add(self)

    def _handle(self) -> Any:
        """The native pointer, or :class:`ConnectionLost` once closed."""
        if self._closed:
            raise _errors.connection_lost("connection lost: the handle is closed")
        return self._ptr

    def close(self) -> None:
        """Close the handle.  Idempotent; later calls on it raise :class:`ConnectionLost`."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            type(self)._close_fn(self._ptr)
        finally:
            with _live_lock:
                _live.discard(self)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _close_all_at_exit() -> None:
    with _live_lock:
        handles: List[Managed] = sorted(_live, key=lambda h: h._priority)
    for handle in handles:
        try:
            handle.close()
        except BaseException:  # noqa: BLE001 - exit must go on
            pass


atexit.register(_close_all_at_exit)
