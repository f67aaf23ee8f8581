"""``Listener`` and ``listen``: the server side, for every transport."""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Any, Iterable, Iterator, Optional, Union

from . import _abi, _errors, _ffi, _fork, _options
from ._ffi import lib
from ._managed import Managed
from ._resolve import Endpoint
from ._socket import Socket, check_ack_timeout
from ._timeout import SLICE_MS, check_timeout, deadline_after, expired, ms, slice_ms

__all__ = ["Listener", "listen"]

_PathArg = Union[str, bytes, "os.PathLike[str]", None]


class Listener(Managed):
    """Accepts connections on one endpoint; every connection is a :class:`Socket`.

    Obtained from :func:`ipcez.listen`.  Closing it (or leaving a ``with``
    block) stops accepting, removes the Unix socket file and unlinks the
    endpoint's acknowledgement semaphores, and closes the connections nobody
    accepted yet (a WebSocket peer is sent close code 1001, going away);
    sockets already accepted stay open.

    :func:`accept_slice` below is the internal interface :mod:`ipcez.aio` builds on.
    """

    _close_fn = lib.ipcez_listener_close
    _free_fn = lib.ipcez_listener_free
    _priority = 1  # at exit, close sockets first
    _address: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("Listener objects come from ipcez.listen()")

    @classmethod
    def _adopt(cls, ptr: Any) -> "Listener":
        """Take ownership of a new native ``ipcez_listener *``."""
        self = cls.__new__(cls)
        Managed.__init__(self, ptr)
        address = lib.ipcez_listener_address(ptr)
        self._address = _ffi.take_text(address) if address else ""
        return self

    @property
    def address(self) -> str:
        """The socket path, or the ws URL with the real port when port 0 was asked."""
        return self._address

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (and in a child forked since the listener
        was made: it is the parent's)."""
        return self._closed or self._epoch != _fork.epoch

    def accept(self, timeout: Optional[float] = None) -> Socket:
        """Wait up to ``timeout`` seconds (None: no limit) for the next connection.

        Raises :class:`TimeoutError` when the time runs out and
        :class:`ConnectionLost` once the listener is closed.  Ctrl-C
        interrupts the wait within 100 ms.  A connection that ended before it
        was accepted, with nothing sent, is skipped.
        """
        timeout = check_timeout(timeout)
        deadline = deadline_after(timeout)
        while True:
            sock = _accept_within(self, SLICE_MS if deadline is None else slice_ms(deadline))
            if sock is not None:
                return sock
            if expired(deadline):
                raise TimeoutError(errno.ETIMEDOUT, f"no connection within {timeout:g} s")

    def fileno(self) -> int:
        """A file descriptor that is readable while a connection is waiting to be accepted.

        For :mod:`selectors`, :func:`select.select`,
        :func:`multiprocessing.connection.wait` and event loops: when it is
        readable, ``accept(timeout=0)`` returns at once.  It also becomes
        readable when the listener closes.  It belongs to the listener: never
        read from or close it.  Returns -1 once closed.  Unix only.
        """
        return self._fileno_via(lib.ipcez_listener_fileno)

    def __iter__(self) -> Iterator[Socket]:
        """Yield accepted sockets until the listener is closed."""
        while True:
            try:
                sock = self.accept()
            except _errors.ConnectionLost:
                return
            yield sock

    def close(self) -> None:
        """Stop listening, remove the socket file and close the connections not yet
        accepted (WebSocket: close code 1001).  Idempotent."""
        super().close()

    def __enter__(self) -> "Listener":
        return self

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<ipcez.Listener {self._address!r} {state}>"


def accept_slice(listener: Listener, seconds: float) -> Optional[Socket]:
    """Internal interface for :mod:`ipcez.aio`: one wait on ``listener`` of at most
    ``seconds`` (<= 0.1): a new socket, or None when none came.  Raises like
    :meth:`Listener.accept`."""
    return _accept_within(listener, ms(seconds))


def _accept_within(listener: Listener, wait_ms: int) -> Optional[Socket]:
    out = _ffi.socket_p()
    err = _ffi.error_p()
    with listener._use() as handle:
        rc = lib.ipcez_listener_accept(handle, wait_ms, ctypes.byref(out), ctypes.byref(err))
    if rc == _abi.RESULT_OK:
        return Socket._adopt(out)
    if rc == _abi.RESULT_TIMEOUT:
        return None
    raise _errors.fail(rc, err)


def _opt_bytes(value: _PathArg, what: str) -> Optional[bytes]:
    if value is None:
        return None
    return _ffi.encode_str(value, what)


def listen(
    endpoint: Endpoint,
    *,
    mode: int = 0o600,
    certfile: _PathArg = None,
    keyfile: _PathArg = None,
    ack_timeout: float = 5.0,
    max_connections: Optional[int] = None,
    origins: Optional[Iterable[str]] = None,
    subprotocols: Optional[Iterable[str]] = None,
) -> Listener:
    """Listen on ``endpoint`` (resolved like :func:`ipcez.connect`) and return a :class:`Listener`.

    * Unix socket path: bound with permission bits ``mode``; a stale socket
      file is replaced, a live one raises :class:`IoError` (EADDRINUSE).
    * ``ws://host:port/path``: port 0 picks a free port (see
      :attr:`Listener.address`); only ``path`` is upgraded.
    * ``wss://``: needs ``certfile`` and ``keyfile`` (PEM).

    ``ack_timeout`` (keyword-only, seconds) is the ack timeout of the accepted
    sockets.  ``max_connections`` caps the open connections, accepted plus
    waiting for :meth:`Listener.accept` (default 1024, or fewer to fit under
    the process's file descriptor limit, as logged); beyond it a new
    connection is closed at once, and that is logged.

    WebSocket only: ``origins`` lists the ``Origin`` values (as browsers send
    them, e.g. ``"https://app.example.com"``; ``"*"`` for any) allowed besides
    the listener's own origin; a request without ``Origin`` is always allowed,
    any other gets 403.  ``subprotocols`` lists the subprotocols this listener
    speaks: the first one a client offers that is listed is chosen (see
    :attr:`Socket.subprotocol`); a client that offers only others is refused
    with 400.
    """
    if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777:
        raise ValueError(f"mode must be an int between 0 and 0o7777, not {mode!r}")
    ack_ms = check_ack_timeout(ack_timeout)
    cap = _options.check_max_connections(max_connections)
    allowed = _options.names(origins, "origins")
    protocols = _options.names(subprotocols, "subprotocols")
    ep = _ffi.encode_str(endpoint, "endpoint")
    cert = _opt_bytes(certfile, "certfile")
    key = _opt_bytes(keyfile, "keyfile")
    out = _ffi.listener_p()
    err = _ffi.error_p()
    with _options.listen_options(
        mode=mode,
        cert=cert,
        key=key,
        ack_ms=ack_ms,
        max_connections=cap,
        origins=allowed,
        subprotocols=protocols,
    ) as opts:
        rc = lib.ipcez_listen_with(ep, len(ep), opts, ctypes.byref(out), ctypes.byref(err))
    if rc != _abi.RESULT_OK:
        raise _errors.fail(rc, err)
    return Listener._adopt(out)
