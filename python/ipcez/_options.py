"""Native option handles (``ipcez_connect_options`` / ``ipcez_listen_options``) built from
the keyword arguments of :func:`ipcez.connect` and :func:`ipcez.listen`, with their checks."""

from __future__ import annotations

import ctypes
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, List, Optional

from . import _abi, _errors, _ffi
from ._ffi import lib

__all__ = [
    "names",
    "check_max_connections",
    "connect_options",
    "listen_options",
]

def names(value: Optional[Iterable[str]], what: str) -> List[str]:
    """A list of strings from ``value`` (None: empty); a bare ``str`` is refused, since
    it would otherwise be taken letter by letter."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{what} must be a list of strings, not a single {type(value).__name__}: "
                        f"write [{value!r}]")
    out = list(value)
    for item in out:
        if not isinstance(item, str):
            raise TypeError(f"{what} must contain strings, not {type(item).__name__} ({item!r})")
    return out


def check_max_connections(value: Any) -> Optional[int]:
    """``max_connections`` as a positive int, or None for the library's default."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"max_connections must be an int >= 1, not {value!r}")
    return value


def _checked(rc: int, err: Any) -> None:
    if rc != _abi.RESULT_OK:
        raise _errors.fail(rc, err)


def _add_all(add: Any, handle: Any, items: List[str]) -> None:
    for item in items:
        raw = item.encode("utf-8")
        err = _ffi.error_p()
        _checked(add(handle, raw, len(raw), ctypes.byref(err)), err)


@contextmanager
def connect_options(ack_ms: int, subprotocols: List[str]) -> Iterator[Any]:
    """A native ``ipcez_connect_options *`` for the duration of the block."""
    handle = lib.ipcez_connect_options_new()
    if not handle:
        raise MemoryError("ipcez: cannot allocate connect options")
    try:
        lib.ipcez_connect_options_set_ack_timeout_ms(handle, ack_ms)
        _add_all(lib.ipcez_connect_options_add_subprotocol, handle, subprotocols)
        yield handle
    finally:
        lib.ipcez_connect_options_free(handle)


@contextmanager
def listen_options(
    *,
    mode: int,
    cert: Optional[bytes],
    key: Optional[bytes],
    ack_ms: int,
    max_connections: Optional[int],
    origins: List[str],
    subprotocols: List[str],
) -> Iterator[Any]:
    """A native ``ipcez_listen_options *`` for the duration of the block."""
    handle = lib.ipcez_listen_options_new()
    if not handle:
        raise MemoryError("ipcez: cannot allocate listen options")
    try:
        lib.ipcez_listen_options_set_mode(handle, mode)
        lib.ipcez_listen_options_set_ack_timeout_ms(handle, ack_ms)
        if max_connections is not None:
            lib.ipcez_listen_options_set_max_connections(handle, max_connections)
        if cert or key:
            err = _ffi.error_p()
            rc = lib.ipcez_listen_options_set_tls(
                handle, cert or None, len(cert or b""), key or None, len(key or b""), ctypes.byref(err)
            )
            _checked(rc, err)
        _add_all(lib.ipcez_listen_options_add_origin, handle, origins)
        _add_all(lib.ipcez_listen_options_add_subprotocol, handle, subprotocols)
        yield handle
    finally:
        lib.ipcez_listen_options_free(handle)
