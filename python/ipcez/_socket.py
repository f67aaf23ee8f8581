"""``Socket`` and ``connect``: one connection, any transport."""

from __future__ import annotations

import array
import ctypes
import errno
import threading
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, TypeVar, Union

from . import _abi, _batch, _errors, _ffi, _fork, _handler, _options
from ._buffer import borrow, borrow_writable
from ._ffi import fast, lib
from ._managed import Managed, check_open
from ._resolve import Endpoint
from ._timeout import SLICE_MS, SLICE_SECONDS, check_timeout, deadline_after, expired, ms, slice_ms

__all__ = ["Socket", "connect", "MAX_MESSAGE_SIZE"]

#: The largest message, in bytes, in either direction (4 MiB).
MAX_MESSAGE_SIZE = 4 * 1024 * 1024

#: The first ack wait, inside the send call itself: the library may already have spent up
#: to 50 ms writing, so both together stay within one 100 ms slice.
_FIRST_ACK_MS = 50
#: The two waits as ctypes values, for the unchecked calls (``_ffi.fast``).
_FIRST_ACK = ctypes.c_uint32(_FIRST_ACK_MS)
_SLICE = ctypes.c_uint32(SLICE_MS)
#: send_many writes at most this many messages per native call ...
BATCH = 256
#: ... and lets at most this many wait for their ack before it waits for some.
WINDOW = 1024
#: An ``array`` type code for ``size_t``.
_SIZE_T_CODE = "Q" if ctypes.sizeof(ctypes.c_size_t) == 8 else "I"

#: What a message handler receives: one ``bytes`` per message, then one :class:`SocketError`.
HandlerArg = Union[bytes, _errors.SocketError]
_F = TypeVar("_F", bound=Callable[[Any], Any])


class Socket(Managed):
    """A connection to a peer over a Unix socket, a named pipe or a WebSocket.

    Obtained from :func:`ipcez.connect` or :meth:`Listener.accept`; not
    constructed directly.  Messages are read in the background from the moment
    the connection exists: take them with :meth:`recv`, by iterating, or hand
    them to a callback with :meth:`message_handler`.  Use it as a context
    manager, or call :meth:`close`; a socket that is simply dropped is closed
    by the garbage collector.  All methods are thread-safe.

    :func:`take_now` below is the internal interface :mod:`ipcez.aio` builds on.
    """

    _close_fn = lib.ipcez_socket_close
    _free_fn = lib.ipcez_socket_free
    _dispatcher: Optional[_handler.Dispatcher]
    _handler_lock: threading.Lock
    _transport: str
    _endpoint: str
    _subprotocol: Optional[str]
    _ack_timeout: float
    _pending: _batch.Pending

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("Socket objects come from ipcez.connect() or Listener.accept()")

    @classmethod
    def _adopt(cls, ptr: Any) -> "Socket":
        """Take ownership of a new native ``ipcez_socket *``."""
        self = cls.__new__(cls)
        Managed.__init__(self, ptr)
        self._dispatcher = None
        self._handler_lock = threading.Lock()
        self._pending = _batch.Pending()
        self._transport = _abi.TRANSPORTS.get(lib.ipcez_socket_transport(ptr), "unknown")
        endpoint = lib.ipcez_socket_endpoint(ptr)
        self._endpoint = _ffi.take_text(endpoint) if endpoint else ""
        self._ack_timeout = lib.ipcez_socket_ack_timeout_ms(ptr) / 1000.0
        protocol = lib.ipcez_socket_subprotocol(ptr)
        self._subprotocol = _ffi.take_text(protocol) if protocol else None
        return self

    # -- properties -------------------------------------------------------

    @property
    def subprotocol(self) -> Optional[str]:
        """The WebSocket subprotocol agreed on in the handshake, or None (always None on
        local transports)."""
        return self._subprotocol

    @property
    def endpoint(self) -> str:
        """The endpoint as given to ``connect`` (for accepted sockets: the peer's description)."""
        return self._endpoint

    @property
    def transport(self) -> str:
        """``"unix"``, ``"websocket"`` or ``"named_pipe"``."""
        return self._transport

    @property
    def ack_timeout(self) -> float:
        """Seconds a local :meth:`send` waits for the recipient's acknowledgement."""
        return self._ack_timeout

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called or the library closed the connection
        (and in a child forked since the socket was made: it is the parent's)."""
        try:
            with self._use() as handle:
                return bool(lib.ipcez_socket_is_closed(handle))
        except (_errors.ConnectionLost, _errors.ForkedError):
            return True

    # -- sending ----------------------------------------------------------

    def send(self, data: Any) -> None:
        """Send ``data`` (any C-contiguous bytes-like object, 0 B to 4 MiB) as one message.

        The buffer is not copied.  On local transports this blocks until the
        recipient acknowledges the message (``data_acked``) and raises
        :class:`RecipientAckTimeout` when that takes longer than the ack timeout.
        Raises :class:`MessageTooLarge` (nothing sent, socket still usable) above
        4 MiB and :class:`ConnectionLost` once the connection is gone or closed.
        Safe to call from several threads: frames never interleave.
        """
        err = _ffi.error_p()
        with self._use() as handle:
            # One call writes and waits for the ack's first slice: the common case.
            if type(data) is bytes:  # fast path: no buffer dance, no argument conversion
                rc = fast.ipcez_socket_send(
                    handle, data or None, ctypes.c_size_t(len(data)), _FIRST_ACK, ctypes.byref(err)
                )
            else:
                with borrow(data) as (ptr, n):
                    rc = lib.ipcez_socket_send(handle, ptr, n, _FIRST_ACK_MS, ctypes.byref(err))
            # The library keeps the ack deadline and reports RecipientAckTimeout itself;
            # waiting here in slices only keeps Ctrl-C working.
            while rc == _abi.RESULT_TIMEOUT:
                rc = fast.ipcez_socket_wait_ack(handle, _SLICE, ctypes.byref(err))
            if rc != _abi.RESULT_OK:
                raise _errors.fail(rc, err)

    #: Alias of :meth:`send` (the name the Rust API uses).
    send_message = send

    def send_many(self, messages: Iterable[Any]) -> None:
        """Send several messages, written back to back; return when every one is acknowledged.

        ``messages`` is an iterable of bytes-like objects (each 0 B to 4 MiB).
        Much faster than one :meth:`send` per message for small messages: the
        frames go out in a few system calls and the acknowledgements are
        awaited together, while each message is still acknowledged exactly
        once (a custom peer sees ordinary frames and posts ``data_acked`` per
        message as usual).  No other sender's message comes between these
        (within batches of a few hundred).  The ack timeout applies to each
        stretch without an acknowledgement.  Raises like :meth:`send`; when a
        message is too large or not bytes-like, nothing is written.
        """
        items, lens = prepare_many(self, messages)
        with self._use() as handle:
            for start in range(0, len(items), BATCH):
                end = start + BATCH
                write_many(handle, items[start:end], lens[start:end], wait=True)
                # At most WINDOW messages await their ack before the next batch goes out.
                self._wait_acks(handle, WINDOW)
            self._wait_acks(handle, 0)

    def _wait_acks(self, handle: Any, keep: int) -> None:
        """Wait until at most ``keep`` of this thread's send_many messages await their ack
        (the library keeps the ack deadline; slices only keep Ctrl-C working)."""
        err = _ffi.error_p()
        while True:
            rc = lib.ipcez_socket_wait_acks(handle, keep, SLICE_MS, ctypes.byref(err))
            if rc == _abi.RESULT_OK:
                return
            if rc != _abi.RESULT_TIMEOUT:
                raise _errors.fail(rc, err)

    # -- receiving --------------------------------------------------------

    def recv(self, timeout: Optional[float] = None) -> bytes:
        """Return the next message, waiting up to ``timeout`` seconds (None: no limit).

        Raises :class:`TimeoutError` (the builtin) when the time runs out,
        :class:`ConnectionLost` when the connection has ended or was closed.
        Ctrl-C interrupts the wait within 100 ms.  Not available while a
        :meth:`message_handler` is set.
        """
        timeout = check_timeout(timeout)
        deadline = deadline_after(timeout)
        _check_no_handler(self)
        take = _batch.take
        pending = self._pending
        while True:
            message = take(self, pending, SLICE_MS if deadline is None else slice_ms(deadline))
            if message is not None:
                return message
            if expired(deadline):
                raise TimeoutError(errno.ETIMEDOUT, f"no message within {timeout:g} s")

    def recv_into(self, buffer: Any, timeout: Optional[float] = None) -> int:
        """Receive the next message into ``buffer`` and return its length in bytes.

        ``buffer`` is any writable C-contiguous bytes-like object (a
        ``bytearray``, a ``memoryview`` of one, an ``mmap``, a numpy array...);
        the message lands in ``buffer[:n]``.  A message of more than 64 KiB is
        copied straight from the library's buffer, with no intermediate
        ``bytes``; shorter ones come through the small batch buffer that
        :meth:`recv` uses too (one more copy of at most 64 KiB).  When the message is longer than ``buffer``, :class:`ValueError` says
        how long it is and the message is kept: the next ``recv`` or
        ``recv_into`` gets it.  Waits, times out and fails like :meth:`recv`.
        """
        timeout = check_timeout(timeout)
        deadline = deadline_after(timeout)
        _check_no_handler(self)
        with borrow_writable(buffer) as (ptr, cap):
            while True:
                got = _batch.take_into(self, self._pending, ptr, cap, SLICE_MS if deadline is None else slice_ms(deadline))
                if got is not None:
                    if got > cap:
                        raise ValueError(
                            f"the next message is {got} bytes but the buffer holds only {cap}; "
                            "the message is kept: receive it with a larger buffer or recv()"
                        )
                    return got
                if expired(deadline):
                    raise TimeoutError(errno.ETIMEDOUT, f"no message within {timeout:g} s")

    def fileno(self) -> int:
        """A file descriptor that is readable while a message is waiting to be taken.

        For :mod:`selectors`, :func:`select.select`,
        :func:`multiprocessing.connection.wait` and event loops: when it is
        readable, ``recv(timeout=0)`` returns a message at once (or raises the
        error that ended the connection, which also makes it readable).  It
        belongs to the socket: never read from or close it.  Returns -1 once
        the socket is closed (like :meth:`socket.socket.fileno`).  Unix only.
        """
        return self._fileno_via(lib.ipcez_socket_fileno)

    def __iter__(self) -> Iterator[bytes]:
        """Yield messages until the connection ends (or the socket is closed), then stop."""
        while True:
            try:
                message = self.recv()
            except _errors.ConnectionLost:
                return
            yield message

    def message_handler(self, callback: _F) -> _F:
        """Call ``callback`` on a background thread for every incoming message.

        ``callback`` gets ``bytes`` per message and finally, once, the
        :class:`SocketError` that ended the connection (normally
        :class:`ConnectionLost`); it is not called after that.  Messages that
        arrived before registration are delivered first, in order.  An
        exception raised by ``callback`` is reported through
        :func:`sys.unraisablehook` and does not stop the reader.  At most one
        handler per socket; while it is set :meth:`recv` is unavailable.
        Returns ``callback``, so it also works as a decorator.
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        with self._use(), self._handler_lock:
            if self._dispatcher is not None:
                raise _errors.IoError("a message handler is already registered on this socket")
            self._dispatcher = _handler.Dispatcher(self, _take, callback)
        return callback

    # -- closing ----------------------------------------------------------

    def close(self) -> None:
        """Close the connection.  Idempotent.

        Afterwards :meth:`send`, :meth:`recv` and :meth:`message_handler` raise
        :class:`ConnectionLost` and iteration ends.  A handler gets its final
        ConnectionLost before this returns, unless called from a handler (which
        never waits) or the handler is stuck: after 1 s a callback that has not
        returned is left behind, and the handler is not called again.  In a child
        forked after the socket was made this does nothing: it is the parent's.
        """
        super().close()
        if self._epoch == _fork.epoch:
            _batch.discard(self._pending)  # never to be taken: free them now
        dispatcher = self._dispatcher
        if dispatcher is not None and self._epoch == _fork.epoch:
            dispatcher.finish(_handler.CLOSE_GRACE_SECONDS)

    def disconnect(self) -> None:
        """Same as :meth:`close` (the name the Rust API uses)."""
        self.close()

    def __enter__(self) -> "Socket":
        return self

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<ipcez.Socket {self._transport} {self._endpoint!r} {state}>"


def _bytes_like(m: Any) -> bool:
    try:
        memoryview(m)
    except TypeError:
        return False
    return True


def prepare_many(sock: Socket, messages: Iterable[Any]) -> Tuple[List[Any], List[int]]:
    """Internal interface (also for :mod:`ipcez.aio`): the messages and their sizes.
    Raises before anything is written when one is not bytes-like or too large."""
    items: List[Any] = list(messages)
    try:
        lens = [len(m) if type(m) is bytes else memoryview(m).nbytes for m in items]
    except TypeError:
        i, bad = next((i, m) for i, m in enumerate(items) if not _bytes_like(m))
        raise TypeError(
            f"send_many needs bytes-like messages; message {i} is a {type(bad).__name__}"
            + (" (encode a str first, e.g. s.encode())" if isinstance(bad, str) else "")
        ) from None
    if lens and max(lens) > MAX_MESSAGE_SIZE:
        with sock._use() as handle:  # refused before writing (the library words it)
            write_many(handle, [items[lens.index(max(lens))]], [max(lens)], wait=True)
    return items, lens


def write_many(handle: Any, batch: List[Any], lens: List[int], wait: bool) -> bool:
    """Internal interface (also for :mod:`ipcez.aio`): write ``batch`` back to back.
    Without ``wait`` it never waits: on a Unix socket what cannot be written now is
    finished in the background, in order; False, with nothing sent, where that would mean
    waiting (frames already waiting for the socket hold their bound, WebSocket, named
    pipe)."""
    data = b"".join(batch)
    sizes = array.array(_SIZE_T_CODE, lens)
    err = _ffi.error_p()
    fn = lib.ipcez_socket_send_many if wait else lib.ipcez_socket_start_send_many
    rc = fn(handle, data or None, len(data), sizes.buffer_info()[0], len(sizes), ctypes.byref(err))
    if rc == _abi.RESULT_ERROR:
        raise _errors.fail(rc, err)
    return bool(rc == _abi.RESULT_OK)


def take_now(sock: Socket) -> Optional[bytes]:
    """Internal interface for :mod:`ipcez.aio`: the message that came, or None, without
    waiting, for an event loop that holds ``sock`` (see :func:`_batch.take_now`).  Raises
    like :meth:`Socket.recv`."""
    if sock._dispatcher is not None:
        _check_no_handler(sock)
    return _batch.take_now(sock, sock._pending)


def _take(sock: Socket, seconds: float) -> Optional[bytes]:
    """One receive of at most ``seconds``, handler or not (the handler's own receive)."""
    return _batch.take(sock, sock._pending, ms(seconds))


def _check_no_handler(sock: Socket) -> None:
    if sock._dispatcher is not None:
        check_open(sock)  # closed or inherited: that error comes first
        raise _errors.IoError("a message handler is registered on this socket; messages go to it, not to recv")


def _connect_native(ep: bytes, ack_ms: int, subprotocols: List[str]) -> Socket:
    out = _ffi.socket_p()
    err = _ffi.error_p()
    with _options.connect_options(ack_ms, subprotocols) as opts:
        rc = lib.ipcez_connect_with(ep, len(ep), opts, ctypes.byref(out), ctypes.byref(err))
    if rc != _abi.RESULT_OK:
        raise _errors.fail(rc, err)
    return Socket._adopt(out)


def _connect_interruptibly(ep: bytes, ack_ms: int, subprotocols: List[str]) -> Socket:
    """Run a possibly long connect (a WebSocket handshake) on a helper thread.

    The caller waits in slices, so Ctrl-C gets through; a connection that
    completes after the caller gave up is closed instead of leaking.
    """
    lock = threading.Lock()
    done = threading.Event()
    outcome: Dict[str, Any] = {}

    def run() -> None:
        try:
            sock: Optional[Socket] = _connect_native(ep, ack_ms, subprotocols)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            with lock:
                outcome["error"] = exc
            done.set()
            return
        with lock:
            if outcome.get("abandoned") and sock is not None:
                sock.close()
            else:
                outcome["socket"] = sock
        done.set()

    threading.Thread(target=run, name="ipcez-connect", daemon=True).start()
    try:
        while not done.wait(SLICE_SECONDS):
            pass
    except BaseException:
        with lock:
            outcome["abandoned"] = True
            late = outcome.pop("socket", None)
        if late is not None:
            late.close()
        raise
    if "error" in outcome:
        error: BaseException = outcome.pop("error")
        raise error
    sock_ok: Socket = outcome["socket"]
    return sock_ok


def connect(
    endpoint: Endpoint,
    *,
    ack_timeout: float = 5.0,
    subprotocols: Optional[Iterable[str]] = None,
) -> Socket:
    """Connect to ``endpoint`` and return a :class:`Socket`.

    ``ws://``/``wss://`` URLs (any case) connect over WebSocket.  Anything else
    is local: the environment variables ``target`` and ``os`` (or
    ``IPCEZ_TARGET``/``IPCEZ_OS``, which win) pick a Unix domain socket
    (``local`` + ``linux``) or a named pipe (``local`` + ``windows``).
    ``ack_timeout`` is how long a local :meth:`Socket.send` waits for the
    recipient's acknowledgement.  A WebSocket handshake (bounded at 30 s by the
    library) runs on a helper thread, so Ctrl-C interrupts it too.
    ``subprotocols`` (WebSocket) are offered in order of preference; the one the
    listener picks is :attr:`Socket.subprotocol`.

    Raises :class:`DetectionError`, :class:`UnsupportedCombination`,
    :class:`IoError` (e.g. errno ENOENT -- also a :class:`FileNotFoundError` --
    or ECONNREFUSED) or :class:`WsError`.
    """
    ack = check_ack_timeout(ack_timeout)
    protocols = _options.names(subprotocols, "subprotocols")
    ep = _ffi.encode_str(endpoint, "endpoint")
    if ep[:5].lower() == b"ws://" or ep[:6].lower() == b"wss://":
        return _connect_interruptibly(ep, ack, protocols)
    return _connect_native(ep, ack, protocols)


def check_ack_timeout(ack_timeout: Any) -> int:
    """``ack_timeout`` (seconds, > 0) as the milliseconds the library takes."""
    ack = check_timeout(ack_timeout, "ack_timeout")
    if not ack:
        raise ValueError(f"ack_timeout must be a number > 0, not {ack_timeout!r}")
    return ms(ack)
