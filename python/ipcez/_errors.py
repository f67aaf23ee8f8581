"""The exception hierarchy of ipcez and the one table that maps C error kinds to it.

Every class is also an instance of the builtin exception its name suggests, so
code that knows nothing about ipcez still catches it sensibly::

    SocketError(Exception)
    ├── IoError(SocketError, OSError)                  .errno, .strerror
    │   ├── ConnectionLost(IoError, ConnectionResetError)  .code, .reason
    │   └── MessageTooLarge(IoError, ValueError)
    ├── WsError(SocketError)
    ├── UnsupportedCombination(SocketError)            .target, .os
    ├── DetectionError(SocketError, ValueError)        .variable
    ├── RecipientAckTimeout(SocketError, TimeoutError)
    └── ForkedError(SocketError)
"""

from __future__ import annotations

import errno as _errno
from typing import Any, Dict, Optional, Type

from . import _abi

__all__ = [
    "SocketError",
    "IoError",
    "ConnectionLost",
    "MessageTooLarge",
    "WsError",
    "UnsupportedCombination",
    "DetectionError",
    "RecipientAckTimeout",
    "ForkedError",
]


class SocketError(Exception):
    """Base class of every error ipcez raises (Rust ``SocketError``)."""


class IoError(SocketError, OSError):
    """An I/O failure (Rust ``SocketError::Io``); ``errno`` is set where known.

    Construct it like :class:`OSError`: ``IoError(errno.ENOENT, "no such socket")``
    sets ``.errno`` and ``.strerror``; ``IoError("message")`` leaves ``.errno`` None.
    Like ``OSError`` itself, an ``IoError`` whose errno has a builtin subclass is
    also an instance of it: with ENOENT it is a :class:`FileNotFoundError`, with
    ECONNREFUSED a :class:`ConnectionRefusedError`, with EACCES a
    :class:`PermissionError`, and so on.
    """

    def __new__(cls, *args: Any) -> "IoError":
        if cls is IoError and len(args) >= 2 and isinstance(args[0], int):
            cls = _ERRNO_VARIANTS.get(args[0], cls)
        return super().__new__(cls, *args)

    def __reduce__(self) -> Any:
        cls = IoError if type(self).__dict__.get("_errno_variant") else type(self)
        state = self.__dict__ or None
        return (cls, self.args, state) if state else (cls, self.args)


class ConnectionLost(IoError, ConnectionResetError):
    """The connection is gone: the peer closed or crashed, or this side closed it.

    When a WebSocket peer ended it with a close frame, ``code`` and ``reason``
    hold that frame's close code (e.g. 1001 "going away") and reason text (the
    message says them too); otherwise both are None.
    """

    #: The WebSocket close code the peer sent, or None.
    code: Optional[int] = None
    #: The WebSocket close reason the peer sent (possibly ""), or None.
    reason: Optional[str] = None


class MessageTooLarge(IoError, ValueError):
    """A message exceeds 4 MiB (4,194,304 bytes); nothing was sent, the socket stays usable."""


class WsError(SocketError):
    """A WebSocket handshake or protocol failure (Rust ``SocketError::Ws``)."""


class UnsupportedCombination(SocketError):
    """The (target, os) pair cannot be served by this build (e.g. local + windows on Linux).

    Attributes ``target`` and ``os`` hold the two values, lower-case.
    """

    def __init__(self, message: str, target: str = "", os: str = "") -> None:
        super().__init__(message)
        #: The ``target`` value that was detected (``local`` or ``remote``).
        self.target: str = target
        #: The ``os`` value that was detected (``linux`` or ``windows``).
        self.os: str = os


class DetectionError(SocketError, ValueError):
    """``target``/``os`` are missing or invalid, or a remote endpoint is not a ws:// URL.

    ``variable`` names the environment variable at fault (e.g. ``"target"``),
    or is empty when the endpoint itself is the problem.
    """

    def __init__(self, message: str, variable: str = "") -> None:
        super().__init__(message)
        #: The environment variable at fault (``"target"``, ``"os"`` or ``""``).
        self.variable: str = variable


class RecipientAckTimeout(SocketError, TimeoutError):
    """A local send was not acknowledged (``data_acked``) within the ack timeout."""


class ForkedError(SocketError):
    """The object was created by the parent of this process, before ``fork()``.

    Its connection belongs to the parent: in the child it cannot be used, and
    closing or collecting it does nothing to the parent.  Connect (or listen)
    again in the child.
    """


def _errno_variants() -> Dict[int, Type[IoError]]:
    """IoError subclasses that are also the builtin OSError subclass for an errno."""
    builtin_for_errno = {
        _errno.EAGAIN: BlockingIOError,
        _errno.EALREADY: BlockingIOError,
        _errno.EINPROGRESS: BlockingIOError,
        _errno.EWOULDBLOCK: BlockingIOError,
        _errno.EPIPE: BrokenPipeError,
        _errno.ECONNABORTED: ConnectionAbortedError,
        _errno.ECONNREFUSED: ConnectionRefusedError,
        _errno.ECONNRESET: ConnectionResetError,
        _errno.EEXIST: FileExistsError,
        _errno.ENOENT: FileNotFoundError,
        _errno.EISDIR: IsADirectoryError,
        _errno.ENOTDIR: NotADirectoryError,
        _errno.EINTR: InterruptedError,
        _errno.EACCES: PermissionError,
        _errno.EPERM: PermissionError,
        _errno.ETIMEDOUT: TimeoutError,
    }
    if hasattr(_errno, "ESHUTDOWN"):
        builtin_for_errno[_errno.ESHUTDOWN] = BrokenPipeError
    made: Dict[type, Type[IoError]] = {}
    variants: Dict[int, Type[IoError]] = {}
    for number, builtin in builtin_for_errno.items():
        if builtin not in made:
            # Shown (and pickled) as plain IoError; isinstance() sees the builtin too.
            made[builtin] = type(
                "IoError",
                (IoError, builtin),
                {"__doc__": IoError.__doc__, "__module__": "ipcez", "_errno_variant": True},
            )
        variants[number] = made[builtin]
    return variants


_ERRNO_VARIANTS = _errno_variants()

#: ipcez_error_code -> class.  PANIC and NULL_PARAMETER are bugs, reported as SocketError.
_CLASSES: Dict[int, Type[SocketError]] = {
    _abi.ERROR_KIND_IO: IoError,
    _abi.ERROR_KIND_CONNECTION_LOST: ConnectionLost,
    _abi.ERROR_KIND_MESSAGE_TOO_LARGE: MessageTooLarge,
    _abi.ERROR_KIND_WS: WsError,
    _abi.ERROR_KIND_UNSUPPORTED_COMBINATION: UnsupportedCombination,
    _abi.ERROR_KIND_DETECTION: DetectionError,
    _abi.ERROR_KIND_RECIPIENT_ACK_TIMEOUT: RecipientAckTimeout,
    _abi.ERROR_KIND_PANIC: SocketError,
    _abi.ERROR_KIND_NULL_PARAMETER: SocketError,
    _abi.ERROR_KIND_FORKED: ForkedError,
}

#: The errno an I/O error kind gets when the library reports none.
_DEFAULT_ERRNO = {
    _abi.ERROR_KIND_CONNECTION_LOST: _errno.ECONNRESET,
    _abi.ERROR_KIND_MESSAGE_TOO_LARGE: _errno.EINVAL,
}

#: ipcez_error_detail selector -> the attribute it fills.
_DETAIL_FIELDS = (
    ("target", _abi.ERROR_FIELD_TARGET),
    ("os", _abi.ERROR_FIELD_OS),
    ("variable", _abi.ERROR_FIELD_VARIABLE),
    ("guidance", _abi.ERROR_FIELD_GUIDANCE),
)


def make_error(
    code: int,
    errno: int,
    message: str,
    details: Optional[Dict[str, str]] = None,
) -> SocketError:
    """Build the exception for a native error (``code`` from ``ipcez_error_code``)."""
    details = details or {}
    cls = _CLASSES.get(code, SocketError)
    if code == _abi.ERROR_KIND_PANIC:
        message = f"internal error in ipcez (a Rust panic, please report it): {message}"
    elif code == _abi.ERROR_KIND_NULL_PARAMETER:
        message = f"internal error in the ipcez binding (NULL parameter): {message}"
    elif code not in _CLASSES:
        message = f"unknown ipcez error code {code}: {message}"
    if issubclass(cls, IoError):
        errno = errno or _DEFAULT_ERRNO.get(code, 0)
        error = cls(errno, message) if errno else cls(message)
        if isinstance(error, ConnectionLost) and details.get("close_code", "").isdigit():
            error.code = int(details["close_code"])
            error.reason = details.get("close_reason", "")
        return error
    if cls is UnsupportedCombination:
        return UnsupportedCombination(message, details.get("target", ""), details.get("os", ""))
    if cls is DetectionError:
        return DetectionError(message, details.get("variable", ""))
    return cls(message)


def connection_lost(message: str = "connection lost") -> ConnectionLost:
    """A fresh :class:`ConnectionLost` (errno ECONNRESET)."""
    return ConnectionLost(_errno.ECONNRESET, message)


def from_native(err: Any) -> SocketError:
    """Convert a borrowed ``ipcez_error *`` (not freed here) into an exception."""
    import ctypes

    from . import _ffi  # the loader is only needed once there is a native error

    lib = _ffi.lib
    code = int(lib.ipcez_error_code(err))
    err_no = int(lib.ipcez_error_errno(err))
    out = ctypes.c_void_p()
    n = lib.ipcez_error_message(err, ctypes.byref(out))
    message = _ffi.borrowed_bytes(out.value, n).decode("utf-8", "replace")
    details: Dict[str, str] = {}

    def detail(key: str, which: int) -> None:
        out = ctypes.c_void_p()
        n = lib.ipcez_error_detail(err, which, ctypes.byref(out))
        if n:
            details[key] = _ffi.borrowed_bytes(out.value, n).decode("utf-8", "replace")

    if code in (_abi.ERROR_KIND_UNSUPPORTED_COMBINATION, _abi.ERROR_KIND_DETECTION):
        for key, which in _DETAIL_FIELDS:
            detail(key, which)
    if code == _abi.ERROR_KIND_CONNECTION_LOST:
        detail("close_code", _abi.ERROR_FIELD_CLOSE_CODE)
        if "close_code" in details:
            details["close_reason"] = ""
            detail("close_reason", _abi.ERROR_FIELD_CLOSE_REASON)
    if "guidance" in details:
        from . import _log

        _log.show_guidance(details["guidance"])
    return make_error(code, err_no, message or "ipcez error", details)


def fail(rc: int, err: Any) -> SocketError:
    """The exception for a call that returned ``rc`` != OK with ``*out_err`` = ``err`` (freed)."""
    if not err:
        return SocketError(f"internal error: an ipcez call returned {rc} without an error")
    return take(err)


def take(err: Any) -> SocketError:
    """Convert an owned ``ipcez_error *`` into an exception and free it."""
    from . import _ffi

    try:
        return from_native(err)
    finally:
        _ffi.lib.ipcez_error_free(err)
