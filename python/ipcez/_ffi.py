"""Loading of the ``ipcez-ffi`` cdylib and the one table of C prototypes.

Everything that touches the raw C ABI (``rust/ipcez-ffi/include/ipcez.h``) is
declared here, once: every ``ipcez_*`` function gets ``argtypes`` and
``restype`` from :data:`FUNCTIONS`, and ``tests/test_ffi_table.py`` checks that
table against the header.

The library is loaded with :class:`ctypes.CDLL`, which releases the GIL around
every foreign call (never ``PyDLL``: blocking calls must not stop other
threads).  It is looked up next to this file under a private name
(``_ipcez_ffi.so`` / ``.dylib`` / ``.dll``) so that no same-named system
library is ever picked up; the environment variable ``IPCEZ_LIBRARY`` names
another file instead (for development against a ``cargo build`` output).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    c_bool,
    c_char_p,
    c_int32,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ._version import __version__

# --------------------------------------------------------------------------
# Opaque handle types.  Distinct ctypes types so that passing a listener where
# a socket is expected is an ``ArgumentError``, not memory corruption.


class ipcez_socket(ctypes.Structure):
    """Opaque ``ipcez_socket``: a connection owned by Rust."""


class ipcez_listener(ctypes.Structure):
    """Opaque ``ipcez_listener``."""


class ipcez_error(ctypes.Structure):
    """Opaque ``ipcez_error``: an owned error, freed with ``ipcez_error_free``."""


class ipcez_connect_options(ctypes.Structure):
    """Opaque ``ipcez_connect_options``: settings for ``ipcez_connect_with``."""


class ipcez_listen_options(ctypes.Structure):
    """Opaque ``ipcez_listen_options``: settings for ``ipcez_listen_with``."""


class ipcez_message(ctypes.Structure):
    """Opaque ``ipcez_message``: an owned byte buffer, freed with ``ipcez_message_free``."""


class ipcez_poller(ctypes.Structure):
    """Opaque ``ipcez_poller``: tells an event loop which sources have something waiting."""


socket_p = POINTER(ipcez_socket)
listener_p = POINTER(ipcez_listener)
error_p = POINTER(ipcez_error)
message_p = POINTER(ipcez_message)
connect_options_p = POINTER(ipcez_connect_options)
listen_options_p = POINTER(ipcez_listen_options)
poller_p = POINTER(ipcez_poller)

#: ``const uint8_t *`` inputs.  ``c_void_p`` accepts ``bytes`` (pointing at the
#: object's own buffer, no copy), ctypes arrays, integer addresses and None.
bytes_in = c_void_p
ipcez_result = c_uint32

#: ``void (*ipcez_handler_fn)(void *userdata, const uint8_t *data, size_t len, const ipcez_error *err)``
HANDLER_FN = CFUNCTYPE(None, c_void_p, c_void_p, c_size_t, error_p)

#: ``void (*ipcez_log_fn)(void *userdata, uint32_t level, const uint8_t *target, size_t target_len, const uint8_t *message, size_t message_len)``
LOG_FN = CFUNCTYPE(None, c_void_p, c_uint32, c_void_p, c_size_t, c_void_p, c_size_t)

#: The one table: name -> (argtypes, restype).  Keep in sync with ipcez.h
#: (``tests/test_ffi_table.py`` fails when they drift).
FUNCTIONS: Dict[str, Tuple[List[Any], Any]] = {
    "ipcez_version": ([], c_char_p),
    "ipcez_detection_guidance_to_stderr": ([c_bool], None),
    "ipcez_set_log_callback": ([LOG_FN, c_void_p, c_uint32], c_bool),
    # errors
    "ipcez_error_code": ([error_p], c_uint32),
    "ipcez_error_errno": ([error_p], c_int32),
    "ipcez_error_message": ([error_p, POINTER(c_void_p)], c_size_t),
    "ipcez_error_detail": ([error_p, c_uint32, POINTER(c_void_p)], c_size_t),
    "ipcez_error_free": ([error_p], None),
    # messages
    "ipcez_message_data": ([message_p], c_void_p),
    "ipcez_message_len": ([message_p], c_size_t),
    "ipcez_message_free": ([message_p], None),
    # resolution
    "ipcez_resolve": (
        [bytes_in, c_size_t, POINTER(c_uint32), POINTER(message_p), POINTER(error_p)],
        ipcez_result,
    ),
    "ipcez_ack_names": (
        [bytes_in, c_size_t, POINTER(message_p), POINTER(message_p), POINTER(error_p)],
        ipcez_result,
    ),
    "ipcez_env_source": (
        [bytes_in, c_size_t, POINTER(message_p), POINTER(message_p), POINTER(error_p)],
        ipcez_result,
    ),
    # sockets
    "ipcez_connect": (
        [bytes_in, c_size_t, c_uint32, POINTER(socket_p), POINTER(error_p)],
        ipcez_result,
    ),
    "ipcez_socket_transport": ([socket_p], c_uint32),
    "ipcez_socket_subprotocol": ([socket_p], message_p),
    "ipcez_socket_endpoint": ([socket_p], message_p),
    "ipcez_socket_send": (
        [socket_p, bytes_in, c_size_t, c_uint32, POINTER(error_p)],
        ipcez_result,
    ),
    "ipcez_socket_wait_ack": ([socket_p, c_uint32, POINTER(error_p)], ipcez_result),
    "ipcez_socket_ack_timeout_ms": ([socket_p], c_uint32),
    "ipcez_socket_recv": (
        [socket_p, c_uint32, POINTER(message_p), POINTER(c_void_p), POINTER(c_size_t), POINTER(error_p)],
        ipcez_result,
    ),
    "ipcez_socket_set_handler": (
        [socket_p, HANDLER_FN, c_void_p, POINTER(error_p)],
        ipcez_result,
    ),
    "ipcez_socket_fileno": ([socket_p, POINTER(c_int32), POINTER(error_p)], ipcez_result),
    "ipcez_socket_recv_into": (
        [socket_p, c_void_p, c_size_t, c_uint32, POINTER(c_size_t), POINTER(error_p)],
        ipcez_result,
    ),
    # buf and lens as plain addresses: ctypes converts an int faster than it checks an array
    "ipcez_socket_recv_batch": (
        [socket_p, c_void_p, c_size_t, c_void_p, c_size_t, c_uint32, POINTER(c_size_t),
         POINTER(message_p), POINTER(c_void_p), POINTER(c_size_t), POINTER(error_p)],
        ipcez_result,
    ),
    "ipcez_socket_set_held": ([socket_p, c_bool, POINTER(error_p)], ipcez_result),
    "ipcez_socket_start_send": ([socket_p, bytes_in, c_size_t, POINTER(error_p)], ipcez_result),
    "ipcez_socket_send_many": (
        [socket_p, bytes_in, c_size_t, c_void_p, c_size_t, POINTER(error_p)],
        ipcez_result,
    ),
    "ipcez_socket_start_send_many": (
        [socket_p, bytes_in, c_size_t, c_void_p, c_size_t, POINTER(error_p)],
        ipcez_result,
    ),
    "ipcez_socket_wait_acks": ([socket_p, c_size_t, c_uint32, POINTER(error_p)], ipcez_result),
    "ipcez_socket_close": ([socket_p], None),
    "ipcez_socket_is_closed": ([socket_p], c_bool),
    "ipcez_socket_free": ([socket_p], None),
    # listeners
    "ipcez_listen": (
        [
            bytes_in,
            c_size_t,
            c_uint32,
            bytes_in,
            c_size_t,
            bytes_in,
            c_size_t,
            c_uint32,
            POINTER(listener_p),
            POINTER(error_p),
        ],
        ipcez_result,
    ),
    "ipcez_listener_address": ([listener_p], message_p),
    # option handles
    "ipcez_connect_options_new": ([], connect_options_p),
    "ipcez_connect_options_set_ack_timeout_ms": ([connect_options_p, c_uint32], None),
    "ipcez_connect_options_add_subprotocol": (
        [connect_options_p, bytes_in, c_size_t, POINTER(error_p)],
        ipcez_result,
    ),
    "ipcez_connect_options_free": ([connect_options_p], None),
    "ipcez_connect_with": (
        [bytes_in, c_size_t, connect_options_p, POINTER(socket_p), POINTER(error_p)],
        ipcez_result,
    ),
    "ipcez_listen_options_new": ([], listen_options_p),
    "ipcez_listen_options_set_mode": ([listen_options_p, c_uint32], None),
    "ipcez_listen_options_set_ack_timeout_ms": ([listen_options_p, c_uint32], None),
    "ipcez_listen_options_set_max_connections": ([listen_options_p, c_size_t], None),
    "ipcez_listen_options_set_tls": (
        [listen_options_p, bytes_in, c_size_t, bytes_in, c_size_t, POINTER(error_p)],
        ipcez_result,
    ),
    "ipcez_listen_options_add_origin": (
        [listen_options_p, bytes_in, c_size_t, POINTER(error_p)],
        ipcez_result,
    ),
    "ipcez_listen_options_add_subprotocol": (
        [listen_options_p, bytes_in, c_size_t, POINTER(error_p)],
        ipcez_result,
    ),
    "ipcez_listen_options_free": ([listen_options_p], None),
    "ipcez_listen_with": (
        [bytes_in, c_size_t, listen_options_p, POINTER(listener_p), POINTER(error_p)],
        ipcez_result,
    ),
    "ipcez_listener_accept": (
        [listener_p, c_uint32, POINTER(socket_p), POINTER(error_p)],
        ipcez_result,
    ),
    "ipcez_listener_fileno": ([listener_p, POINTER(c_int32), POINTER(error_p)], ipcez_result),
    "ipcez_listener_close": ([listener_p], None),
    "ipcez_listener_free": ([listener_p], None),
    # pollers (event loops)
    "ipcez_poller_new": ([POINTER(poller_p), POINTER(error_p)], ipcez_result),
    "ipcez_poller_fileno": ([poller_p], c_int32),
    "ipcez_poller_take": ([poller_p, c_void_p, c_size_t], c_size_t),
    "ipcez_poller_free": ([poller_p], None),
    "ipcez_socket_watch": ([socket_p, poller_p, c_uint64, POINTER(error_p)], ipcez_result),
    "ipcez_listener_watch": ([listener_p, poller_p, c_uint64, POINTER(error_p)], ipcez_result),
    "ipcez_socket_expect_acks": ([socket_p, c_size_t, POINTER(error_p)], ipcez_result),
    "ipcez_socket_hold_read": ([socket_p, c_int32, POINTER(c_int32), POINTER(error_p)], ipcez_result),
    "ipcez_socket_read_held": ([socket_p, POINTER(c_int32), POINTER(error_p)], ipcez_result),
    "ipcez_socket_start_send_acked": ([socket_p, bytes_in, c_size_t, POINTER(error_p)], ipcez_result),
    "ipcez_socket_read_held_acks": (
        [socket_p, POINTER(c_int32), POINTER(c_size_t), POINTER(c_size_t), POINTER(error_p)],
        ipcez_result,
    ),
    "ipcez_socket_take_batch": (
        [socket_p, c_void_p, c_size_t, c_void_p, c_size_t, POINTER(c_int32), POINTER(c_size_t),
         POINTER(message_p), POINTER(c_void_p), POINTER(c_size_t), POINTER(error_p)],
        ipcez_result,
    ),
    "ipcez_socket_read_held_batch": (
        [socket_p, c_void_p, c_size_t, c_void_p, c_size_t, POINTER(c_int32), POINTER(c_size_t),
         POINTER(c_size_t), POINTER(c_size_t), POINTER(message_p), POINTER(c_void_p), POINTER(c_size_t),
         POINTER(error_p)],
        ipcez_result,
    ),
    "ipcez_socket_ring_deferred_doorbell": ([socket_p], None),
    "ipcez_loop_turn_ends": ([], c_size_t),
    "ipcez_socket_take_acks": (
        [socket_p, POINTER(c_size_t), POINTER(c_size_t), POINTER(error_p)],
        ipcez_result,
    ),
}


def library_filename(platform: Optional[str] = None) -> str:
    """The private file name of the cdylib inside the package for ``platform``."""
    platform = sys.platform if platform is None else platform
    if platform == "win32":
        return "_ipcez_ffi.dll"
    if platform == "darwin":
        return "_ipcez_ffi.dylib"
    return "_ipcez_ffi.so"


def library_candidates() -> List[Path]:
    """The paths the loader tries, in order."""
    override = os.environ.get("IPCEZ_LIBRARY")
    if override:
        return [Path(override)]
    return [Path(__file__).resolve().parent / library_filename()]


def _load() -> Tuple[ctypes.CDLL, Path]:
    tried: List[str] = []
    for path in library_candidates():
        if not path.is_file():
            tried.append(f"{path} (not found)")
            continue
        try:
            return ctypes.CDLL(str(path)), path
        except OSError as exc:
            tried.append(f"{path} ({exc})")
    hint = (
        "set IPCEZ_LIBRARY to a built libipcez_ffi, or run `python build.py` in a checkout"
        if "IPCEZ_LIBRARY" not in os.environ
        else "IPCEZ_LIBRARY is set; unset it to use the library inside the package"
    )
    raise ImportError(
        "ipcez: cannot load its native library; tried: " + "; ".join(tried) + f". Hint: {hint}."
    )


def _declare(cdll: ctypes.CDLL, path: Path) -> None:
    for name, (argtypes, restype) in FUNCTIONS.items():
        try:
            fn = getattr(cdll, name)
        except AttributeError:
            raise ImportError(
                f"ipcez: {path} lacks the symbol {name}; it is stale or not ipcez-ffi "
                f"(ipcez {__version__})"
            ) from None
        fn.argtypes = argtypes
        fn.restype = restype


def _check_version(cdll: ctypes.CDLL, path: Path) -> None:
    raw = cdll.ipcez_version()
    native = raw.decode("utf-8", "replace") if raw else "<none>"
    if native != __version__:
        raise ImportError(
            f"ipcez: {path} is ipcez-ffi version {native}, but the Python package is "
            f"version {__version__}; rebuild it (python build.py) or reinstall ipcez"
        )


#: The calls made for each message, loaded a second time without ``argtypes`` (see
#: :data:`fast`).
HOT = (
    "ipcez_socket_send",
    "ipcez_socket_wait_ack",
    "ipcez_socket_recv_batch",
    "ipcez_socket_read_held_batch",
    "ipcez_socket_take_batch",
    "ipcez_socket_start_send",
    "ipcez_socket_start_send_acked",
    "ipcez_socket_read_held_acks",
    "ipcez_loop_turn_ends",
    "ipcez_socket_take_acks",
    "ipcez_socket_hold_read",
)


def _unchecked(cdll: ctypes.CDLL) -> Any:
    """The :data:`HOT` functions with ``restype`` only.  ctypes then converts no argument:
    conversion through ``argtypes`` calls ``from_param`` per argument, which costs more
    than the native call itself (13 arguments: 2.2 µs against 0.6 µs).  Every argument
    must therefore be a ctypes value of exactly the declared type (``c_size_t(n)``, never
    a bare ``int``, which ctypes would pass as a C ``int``), ``byref()`` of one, a handle,
    ``bytes`` or None.  With ``IPCEZ_FFI_STRICT=1`` in the environment (the test suite
    sets it) each call checks that first."""
    strict = os.environ.get("IPCEZ_FFI_STRICT") == "1"
    funcs = {}
    for name in HOT:
        fn = cdll[name]  # a function object of its own: ``lib.<name>`` keeps its argtypes
        argtypes, fn.restype = FUNCTIONS[name]
        funcs[name] = _strict(name, fn, argtypes) if strict else fn
    return type("Unchecked", (), {"__slots__": (), **{k: staticmethod(v) for k, v in funcs.items()}})()


def _strict(name: str, fn: Any, argtypes: Sequence[Any]) -> Any:
    """``fn`` refusing any argument that is not exactly what :func:`_unchecked` allows."""

    def allowed(arg: Any, declared: Any) -> bool:
        if declared is c_void_p:
            return arg is None or type(arg) in (bytes, c_void_p)
        if hasattr(declared, "contents"):  # a pointer type: a handle, byref() or NULL
            if arg is None or type(arg) is declared:
                return True
            return type(arg).__name__ == "CArgObject" and isinstance(arg._obj, declared._type_)
        return type(arg) is declared

    def checked(*args: Any) -> Any:
        if len(args) != len(argtypes):
            raise TypeError(f"{name}: {len(args)} arguments, declared {len(argtypes)}")
        for i, (arg, declared) in enumerate(zip(args, argtypes)):
            if not allowed(arg, declared):
                raise TypeError(f"{name}: argument {i} is {arg!r}, not a {declared.__name__} (unchecked call)")
        return fn(*args)

    return checked


lib, library_path = _load()
_declare(lib, library_path)
_check_version(lib, library_path)
#: :data:`HOT` called without conversion: see :func:`_unchecked` for what to pass.
fast = _unchecked(lib)


def native_version() -> str:
    """The version string the loaded library reports."""
    raw = lib.ipcez_version()
    return raw.decode("utf-8") if raw else ""


def take_message(msg: Any) -> bytes:
    """Copy an owned ``ipcez_message`` into ``bytes`` and free it."""
    try:
        n = lib.ipcez_message_len(msg)
        if n == 0:
            return b""
        data = lib.ipcez_message_data(msg)
        return ctypes.string_at(data, n)
    finally:
        lib.ipcez_message_free(msg)


class Received:
    """Out-parameters of ``ipcez_socket_recv``; one per thread (see :func:`received`)."""

    __slots__ = ("msg", "data", "len", "err", "args")

    def __init__(self) -> None:
        self.msg = message_p()
        self.data = c_void_p()
        self.len = c_size_t()
        self.err = error_p()
        self.args = (
            ctypes.byref(self.msg),
            ctypes.byref(self.data),
            ctypes.byref(self.len),
            ctypes.byref(self.err),
        )

    def take(self) -> bytes:
        """Copy the received message into ``bytes`` and free it."""
        try:
            n = self.len.value
            address = self.data.value
            return ctypes.string_at(address, n) if n and address else b""
        finally:
            lib.ipcez_message_free(self.msg)


_per_thread = threading.local()


def received() -> Received:
    """This thread's :class:`Received` (a recv is never re-entered on one thread, and
    building the ctypes out-parameters costs more than the call itself)."""
    out: Optional[Received] = getattr(_per_thread, "received", None)
    if out is None:
        out = _per_thread.received = Received()
    return out


def take_text(msg: Any) -> str:
    """Like :func:`take_message`, decoded as UTF-8."""
    return take_message(msg).decode("utf-8", "replace")


def borrowed_bytes(ptr: Optional[int], n: int) -> bytes:
    """Copy ``n`` bytes at ``ptr`` (memory borrowed for the current call only)."""
    if not n or not ptr:
        return b""
    return ctypes.string_at(ptr, n)


def encode_str(value: Any, what: str) -> bytes:
    """Encode an endpoint-like argument (str, bytes or path-like) as UTF-8 bytes."""
    value = os.fspath(value) if isinstance(value, os.PathLike) else value
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str, bytes or os.PathLike, not {type(value).__name__}")
    return value.encode("utf-8", "surrogateescape")


def call_argtypes(name: str) -> Sequence[Any]:
    """The declared argtypes of ``name`` (used by tests)."""
    return FUNCTIONS[name][0]
