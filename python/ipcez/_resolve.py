"""``which`` and ``ack_names``: answer questions about an endpoint without connecting."""

from __future__ import annotations

import ctypes
import os
from typing import NamedTuple, Optional, Tuple, Union

from . import _abi, _errors, _ffi
from ._ffi import lib

#: What the endpoint functions accept: a str (a path, a pipe name or a ws:// URL),
#: its UTF-8 bytes, or a path-like object.
Endpoint = Union[str, bytes, "os.PathLike[str]"]

__all__ = ["Resolution", "which", "ack_names"]


class Resolution(NamedTuple):  # (not a dataclass: importing dataclasses took 5 ms)
    """Where an endpoint leads: the transport and the normalized address.

    ``transport`` is ``"unix"``, ``"websocket"`` or ``"named_pipe"``; ``address`` is
    the socket path, the URL, or the full ``\\\\.\\pipe\\name``.
    """

    #: ``"unix"``, ``"websocket"`` or ``"named_pipe"``.
    transport: str
    #: The path, the URL, or ``\\.\pipe\name``.
    address: str


def which(endpoint: Endpoint) -> Resolution:
    """Resolve ``endpoint`` the way :func:`ipcez.connect` would, without connecting.

    Raises the same errors as ``connect`` would for the endpoint itself:
    :class:`DetectionError` (``target``/``os`` missing or invalid, or a remote
    endpoint that is not a ws:// URL), :class:`UnsupportedCombination`, or
    :class:`IoError` (EINVAL) for an empty endpoint or one containing NUL.
    """
    ep = _ffi.encode_str(endpoint, "endpoint")
    transport = ctypes.c_uint32()
    address = _ffi.message_p()
    err = _ffi.error_p()
    rc = lib.ipcez_resolve(
        ep, len(ep), ctypes.byref(transport), ctypes.byref(address), ctypes.byref(err)
    )
    if rc != _abi.RESULT_OK:
        raise _errors.fail(rc, err)
    text = _ffi.take_text(address)
    return Resolution(_abi.TRANSPORTS.get(transport.value, f"unknown({transport.value})"), text)


def ack_names(endpoint: Endpoint) -> Tuple[str, str]:
    """The ``(data_ready, data_acked)`` names of the endpoint's acknowledgement objects.

    On Linux these are POSIX named semaphores (``/ipcez.<tag>.<hash>.data_ready``
    and ``….data_acked``), computed from the canonical path (symlinks and ``..``
    resolved, so every spelling of one socket gives the same names); on Windows
    named events (``Global\\<pipe>.data_ready``).  No ``target``/``os`` is needed.
    A custom peer uses them to take part in the ack protocol (see docs/protocol.md in the repository);
    between two ipcez endpoints acks are private to the connection instead.
    """
    ep = _ffi.encode_str(endpoint, "endpoint")
    ready = _ffi.message_p()
    acked = _ffi.message_p()
    err = _ffi.error_p()
    rc = lib.ipcez_ack_names(
        ep, len(ep), ctypes.byref(ready), ctypes.byref(acked), ctypes.byref(err)
    )
    if rc != _abi.RESULT_OK:
        raise _errors.fail(rc, err)
    return _ffi.take_text(ready), _ffi.take_text(acked)


def env_source(setting: str) -> Optional[Tuple[str, str]]:
    """Internal interface (for ``ipcez which``): the environment variable the library reads
    for ``setting`` (``"target"`` or ``"os"``) and its value, or None when neither it nor its
    ``IPCEZ_`` form is set."""
    raw = _ffi.encode_str(setting, "setting")
    name = _ffi.message_p()
    value = _ffi.message_p()
    err = _ffi.error_p()
    rc = lib.ipcez_env_source(raw, len(raw), ctypes.byref(name), ctypes.byref(value), ctypes.byref(err))
    if rc != _abi.RESULT_OK:
        raise _errors.fail(rc, err)
    if not name:
        return None
    return _ffi.take_text(name), _ffi.take_text(value)
