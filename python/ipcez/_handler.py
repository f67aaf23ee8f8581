"""The ``message_handler`` trampoline: one C-callable function for every socket.

Rust keeps only a function pointer and a ``void *userdata``.  The function
pointer is :data:`TRAMPOLINE`, created once at import and referenced from this
module for the life of the process, so it can never be collected while Rust
holds it.  ``userdata`` is a slot number (+1, so it is never NULL) in
:data:`_registry`, which holds the user's callable.  Rust calls the trampoline
once per message and then exactly once with an error; that last call removes
the slot, after which Rust never uses the number again.

No exception ever leaves the trampoline (ctypes cannot carry one through C
frames): whatever the callback raises, ``BaseException`` included, goes to
:func:`sys.unraisablehook` and the reader carries on.
"""

from __future__ import annotations

import itertools
import sys
import threading
import traceback
import types
from typing import Any, Callable, Dict, Optional

from . import _errors, _ffi

_registry: Dict[int, Callable[[Any], Any]] = {}
_registry_lock = threading.Lock()
_next_slot = itertools.count(1)


def register(callback: Callable[[Any], Any]) -> int:
    """Store ``callback`` and return its userdata value (never 0)."""
    with _registry_lock:
        slot = next(_next_slot)
        _registry[slot] = callback
    return slot


def unregister(slot: int) -> None:
    """Forget ``slot`` (after Rust's final call, or when registration failed)."""
    with _registry_lock:
        _registry.pop(slot, None)


def registered_count() -> int:
    """How many handlers Rust may still call (for tests)."""
    with _registry_lock:
        return len(_registry)


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


def _dispatch(userdata: Optional[int], data: Optional[int], length: int, err: Any) -> None:
    slot = userdata or 0
    final = bool(err)
    try:
        with _registry_lock:
            callback = _registry.get(slot)
        if callback is None:
            return
        arg: Any
        if final:
            arg = _errors.from_native(err)
        else:
            arg = _ffi.borrowed_bytes(data, length)  # copied: data is borrowed for this call
        try:
            callback(arg)
        except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt/SystemExit included
            report_unraisable(exc, callback, "Exception ignored in ipcez message handler")
    finally:
        if final:
            unregister(slot)


@_ffi.HANDLER_FN  # type: ignore[untyped-decorator]
def _trampoline(userdata: Optional[int], data: Optional[int], length: int, err: Any) -> None:
    try:
        _dispatch(userdata, data, length, err)
    except BaseException as exc:  # noqa: BLE001 - never let anything reach C
        try:
            report_unraisable(exc, None, "Exception ignored in the ipcez handler trampoline")
        except BaseException:  # noqa: BLE001
            pass


#: The C function pointer handed to ``ipcez_socket_set_handler``; alive for the whole process.
TRAMPOLINE = _trampoline
