"""One base class that owns a native handle (after wasmtime-py's ``_managed.py``).

Lifetime rules, in one place:

* The pointer is set once, at construction, and never changes.
* ``close()`` is idempotent and thread-safe.  It calls the native ``*_close``,
  which is safe while another thread is inside a call on the same handle (that
  call then fails with ConnectionLost).  Every method checks ``_closed`` first
  and raises :class:`ConnectionLost`, so a closed handle is never used.
* Native calls on the handle run inside ``with self._use() as ptr:``, which
  counts them (an entry each in a list: ``append`` and ``pop`` are atomic, so the count
  needs no lock on this per-message path).  The native ``*_free`` runs once the handle is closed and no
  call is in flight: right in ``close()`` when the handle is idle (so a closed
  socket gives its file descriptor back at once), else when the last call
  returns, else from the finalizer.  ``*_free`` never waits for a message
  handler (handlers run on Python threads of their own, see ``_handler``), so
  this works from inside a ``message_handler`` callback too.
* At interpreter exit an ``atexit`` hook closes every handle still open and
  gives message handlers their final call, waiting at most
  :data:`EXIT_GRACE_SECONDS` in all.  Finalizers do not run at exit (the
  process is going away; freeing under a daemon thread that is still inside a
  call would be a use-after-free).
* In a child forked after the handle was made, the handle is the parent's:
  every use raises :class:`ForkedError`, and ``close()``, the finalizer and
  the exit hook do nothing to it (see ``_fork``).
"""

from __future__ import annotations

import atexit
import ctypes
import threading
import time
import weakref
from typing import Any, Callable, List

from . import _abi, _errors, _ffi, _fork, _handler

_live: "weakref.WeakSet[Managed]" = weakref.WeakSet()
_live_lock = threading.Lock()


@_fork.in_child
def _forget_parent_handles() -> None:
    global _live, _live_lock
    _live = weakref.WeakSet()  # the parent's: never closed from here
    _live_lock = threading.Lock()


def _free_in_owner(free_fn: Callable[[Any], None], ptr: Any, epoch: int) -> None:
    """The finalizer: frees the handle, unless this is a child forked since."""
    if epoch == _fork.epoch:
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
        #: One entry per native call in flight (see ``_InUse``).
        self._in_flight: List[None] = []
        self._close_lock = threading.Lock()  # makes close() run once
        self._epoch = _fork.epoch
        self._fd = -1  # the readiness descriptor, once asked for
        finalizer = weakref.finalize(self, _free_in_owner, type(self)._free_fn, ptr, self._epoch)
        finalizer.atexit = False
        self._finalizer = finalizer
        with _live_lock:
            _live.add(self)

    def _use(self) -> "_InUse":
        """``with self._use() as ptr:`` around a native call: :class:`ConnectionLost`
        once closed, and the handle is not freed while the call runs."""
        return _InUse(self)

    def _enter(self) -> Any:
        """:meth:`_use` without the context manager, for the per-message calls: ``ptr =
        h._enter()``, then the call in ``try`` and ``h._exit()`` in its ``finally``.

        No lock: a call counts itself in flight first and looks at ``_closed`` second, while
        ``close()`` sets ``_closed`` first and looks at the count second (each step atomic).
        So either the call sees the handle closed and does not use it, or the close sees the
        call and leaves the freeing to whoever ends last."""
        if self._epoch != _fork.epoch:
            raise _fork.detached(self)
        self._in_flight.append(None)
        if self._closed:
            self._exit()
            raise _errors.connection_lost("connection lost: the handle is closed")
        return self._ptr

    def _exit(self) -> None:
        self._in_flight.pop()
        if self._closed and not self._in_flight:
            self._free_if_idle()

    def _fileno_via(self, fileno_fn: Callable[..., int]) -> int:
        """The handle's readiness descriptor (made on the first call), -1 once closed."""
        if self._fd >= 0 and not self._closed and self._epoch == _fork.epoch:
            return self._fd
        out = ctypes.c_int32()
        err = _ffi.error_p()
        try:
            with self._use() as handle:
                rc = fileno_fn(handle, ctypes.byref(out), ctypes.byref(err))
        except _errors.ConnectionLost:
            return -1
        if rc != _abi.RESULT_OK:
            raise _errors.fail(rc, err)
        self._fd = out.value
        return self._fd

    def close(self) -> None:
        """Close the handle.  Idempotent; later calls on it raise :class:`ConnectionLost`."""
        if self._epoch != _fork.epoch:
            return  # inherited through fork: the parent's to close
        with self._close_lock:
            if self._closed:
                return
            self._in_flight.append(None)  # the close call below counts as a call in flight
            self._closed = True
        try:
            type(self)._close_fn(self._ptr)
        finally:
            with _live_lock:
                _live.discard(self)
            self._in_flight.pop()
            self._free_if_idle()

    def _free_if_idle(self) -> None:
        if self._closed and not self._in_flight:
            self._finalizer()  # frees once (a finalizer runs at most once, whoever calls)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def check_open(handle: Managed) -> None:
    """Internal interface for :mod:`ipcez.aio`: raise :class:`ConnectionLost` once
    ``handle`` is closed, :class:`ForkedError` in a child forked since it was made."""
    if handle._epoch != _fork.epoch:
        raise _fork.detached(handle)
    if handle._closed:
        raise _errors.connection_lost("connection lost: the handle is closed")


class _InUse:
    """The context manager behind :meth:`Managed._use` (a class: cheaper than contextlib)."""

    __slots__ = ("_owner",)

    def __init__(self, owner: Managed) -> None:
        self._owner = owner

    def __enter__(self) -> Any:
        return self._owner._enter()

    def __exit__(self, *exc_info: Any) -> None:
        self._owner._exit()


#: How long interpreter exit waits for message handlers to make their final call.
EXIT_GRACE_SECONDS = 2.0


def _close_all_at_exit() -> None:
    deadline = time.monotonic() + EXIT_GRACE_SECONDS
    with _live_lock:
        handles: List[Managed] = sorted(_live, key=lambda h: h._priority)
    for handle in handles:
        try:
            Managed.close(handle)  # the plain close: handlers are waited for below, together
        except BaseException:  # noqa: BLE001 - exit must go on
            pass
    _handler.finish_all(deadline)


atexit.register(_close_all_at_exit)
