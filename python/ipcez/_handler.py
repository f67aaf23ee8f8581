"""``message_handler`` delivery: one Python daemon thread per socket with a handler.

The thread takes messages the way :meth:`Socket.recv` does, in short slices, and calls
the callback with each, then once with the error that ended the connection.  No native
thread ever runs Python code: a native thread entering Python while the interpreter
shuts down is killed mid-call (glibc then aborts the process with "FATAL: exception not
rethrown"), whereas Python's own daemon threads are ended cleanly.  So a callback that
never returns cannot crash the exit, and a close never has to wait for it:

* ``close()`` from another thread waits up to :data:`CLOSE_GRACE_SECONDS` for the final
  call; a call still running then is left behind and the handler is called no more.
  On a handler thread (this socket's or another's) close does not wait at all, so two
  handlers closing each other's sockets cannot deadlock.
* At interpreter exit every handler gets its final call within
  ``EXIT_GRACE_SECONDS`` in total (see ``_managed``), or is left behind.

The thread holds only a weak reference to its socket between slices, so a socket that
is simply dropped is still collected (and its handler gets the final error).  Whatever
the callback raises, ``BaseException`` included, goes to :func:`sys.unraisablehook` and
delivery goes on.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
import types
import weakref
from typing import Any, Callable, Optional, Set

from . import _errors, _fork

#: How long ``close()`` waits for a handler's final call before leaving it behind.
CLOSE_GRACE_SECONDS = 1.0
#: Longest single wait for a message. A close wakes it at once; only a socket that is
#: dropped without close() (collected by the garbage collector) waits for its end.
_SLICE_SECONDS = 1.0

#: A receive of at most the given seconds: a message, None when none came, or the
#: SocketError that ended the connection (raised).
Fetch = Callable[[Any, float], Optional[bytes]]

_active: "Set[Dispatcher]" = set()
_active_lock = threading.Lock()
_thread_state = threading.local()


@_fork.in_child
def _forget_parent_threads() -> None:
    global _active, _active_lock
    _active = set()  # their threads do not exist here
    _active_lock = threading.Lock()  # a parent thread may have held the old one


def on_handler_thread() -> bool:
    """True on a thread that delivers messages to a handler."""
    return getattr(_thread_state, "active", False)


def registered_count() -> int:
    """How many handlers may still be called (for tests and the exit grace)."""
    with _active_lock:
        return len(_active)


class Dispatcher:
    """The thread that feeds one socket's messages to its callback."""

    def __init__(self, source: Any, fetch: Fetch, callback: Callable[[Any], Any]) -> None:
        self._source = weakref.ref(source)
        self._fetch = fetch
        self.callback = callback
        self._abandoned = False
        self._epoch = _fork.epoch
        self._thread = threading.Thread(target=self._run, name="ipcez-handler", daemon=True)
        with _active_lock:
            _active.add(self)
        try:
            self._thread.start()
        except BaseException:
            self._forget()
            raise

    def _next(self) -> Any:
        """The next message, or the error that ends the delivery."""
        while True:
            source = self._source()
            if source is None:
                return _errors.connection_lost()
            try:
                item = self._fetch(source, _SLICE_SECONDS)
            except _errors.SocketError as exc:
                return exc
            finally:
                del source  # the socket stays collectable between slices
            if item is not None:
                return item

    def _run(self) -> None:
        _thread_state.active = True
        try:
            while True:
                item = self._next()
                if self._abandoned:
                    return
                try:
                    self.callback(item)
                except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt/SystemExit included
                    report_unraisable(exc, self.callback, "Exception ignored in ipcez message handler")
                if not isinstance(item, bytes) or self._epoch != _fork.epoch:
                    return  # the end; or the callback forked and this is the child
        finally:
            self._forget()

    def _forget(self) -> None:
        with _active_lock:
            _active.discard(self)

    def finish(self, timeout: float) -> None:
        """After the socket was closed: wait up to ``timeout`` for the final call (not on a
        handler thread); if it does not come, leave the running call behind."""
        if on_handler_thread():
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abandoned = True
            self._forget()


def finish_all(deadline: float) -> None:
    """Wait until ``deadline`` (``time.monotonic()``) for every handler's final call."""
    with _active_lock:
        pending = list(_active)
    for dispatcher in pending:
        dispatcher.finish(max(0.0, deadline - time.monotonic()))


def _find_hook_args_type() -> Optional[type]:
    """The ``UnraisableHookArgs`` struct-sequence type, or None where it cannot be found.

    CPython does not export it, and the default hook only accepts instances of
    it, so one is captured from a deliberately unraisable exception, once, at import.
    """
    captured = []

    def capture(args: Any) -> None:
        captured.append(type(args))

    class _Probe:
        def __del__(self) -> None:
            raise RuntimeError("ipcez: probing sys.unraisablehook")

    previous = sys.unraisablehook
    sys.unraisablehook = capture
    try:
        _Probe()
    finally:
        sys.unraisablehook = previous
    return captured[0] if captured else None


try:
    _HookArgs: Optional[type] = _find_hook_args_type()
except Exception:  # noqa: BLE001 - only a nicer report is at stake
    _HookArgs = None


def report_unraisable(exc: BaseException, obj: Any, err_msg: str) -> None:
    """Report ``exc`` through :func:`sys.unraisablehook` (stderr as a last resort)."""
    fields = (type(exc), exc, exc.__traceback__, err_msg, obj)
    try:
        args: Any
        if _HookArgs is not None:
            args = _HookArgs(fields)
        else:
            args = types.SimpleNamespace(
                exc_type=fields[0],
                exc_value=fields[1],
                exc_traceback=fields[2],
                err_msg=fields[3],
                object=fields[4],
            )
        sys.unraisablehook(args)
    except BaseException:  # noqa: BLE001 - the hook itself failed; fall back to stderr
        try:
            if sys.stderr is not None:
                sys.stderr.write(f"{err_msg}: {obj!r}\n")
                traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        except BaseException:  # noqa: BLE001
            pass


