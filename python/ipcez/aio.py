"""asyncio front end: the same sockets and listeners, awaited instead of blocked on.

::

    import asyncio, ipcez.aio

    async def main() -> None:
        async with ipcez.aio.listen("/tmp/demo.sock") as server:
            async with ipcez.aio.connect("/tmp/demo.sock") as client:
                peer = await server.accept()
                await client.send(b"hello")
                print(await peer.recv())

    asyncio.run(main())

The event loop never blocks: blocking native calls run on a few daemon worker
threads.  Receiving (and accepting) is done by one background thread per
object, started on first use, that hands whole messages to the loop through
``call_soon_threadsafe``.  A message is taken from that hand-off queue only
synchronously, inside :meth:`AsyncSocket.recv`, so cancelling or timing out a
``recv`` never loses a message: the next ``recv`` gets it.  At most
:data:`READ_AHEAD` messages wait in the hand-off queue; beyond that the
thread stops reading and the library's own bounded queue applies backpressure.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import errno
import queue
import threading
import time
import weakref
from typing import (
    Any,
    Awaitable,
    Callable,
    Deque,
    Generator,
    Generic,
    Iterable,
    Optional,
    Set,
    TypeVar,
)

from . import _errors, _fork
from ._listener import Listener, accept_slice
from ._listener import listen as _listen
from ._managed import check_open
from ._options import DEFAULT_MAX_CONNECTIONS
from ._resolve import Endpoint
from ._socket import Socket, check_ack_timeout, recv_slice
from ._socket import connect as _connect
from ._timeout import SLICE_SECONDS, check_timeout

__all__ = ["connect", "listen", "AsyncSocket", "AsyncListener", "READ_AHEAD"]

#: How many received messages (or accepted connections) may wait for the loop.
READ_AHEAD = 64

_T = TypeVar("_T")


class _DaemonPool:
    """A few daemon worker threads for blocking calls (send, connect, listen, close).

    Unlike ``ThreadPoolExecutor`` its threads never delay interpreter exit.
    """

    def __init__(self, max_workers: int = 8) -> None:
        self._max = max_workers
        self._queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers = 0
        self._idle = 0

    def submit(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> "concurrent.futures.Future[_T]":
        future: "concurrent.futures.Future[_T]" = concurrent.futures.Future()
        with self._lock:
            if self._idle > 0:
                self._idle -= 1  # reserve a waiting worker for this item
                start = False
            else:
                start = self._workers < self._max
                self._workers += int(start)
        self._queue.put((future, fn, args, kwargs))
        if start:
            threading.Thread(target=self._work, name="ipcez-aio-worker", daemon=True).start()
        return future

    def _work(self) -> None:
        first = True
        while True:
            if not first:
                with self._lock:
                    self._idle += 1
            first = False
            future, fn, args, kwargs = self._queue.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
                future.set_exception(exc)
            else:
                future.set_result(result)
            del future, fn, args, kwargs


_pool = _DaemonPool()


@_fork.in_child
def _new_pool_in_child() -> None:
    global _pool
    _pool = _DaemonPool()  # the parent's workers do not exist in a forked child


async def _run_blocking(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    return await asyncio.wrap_future(_pool.submit(fn, *args, **kwargs))


class _End:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _Pump(Generic[_T]):
    """A daemon thread that calls ``fetch(slice)`` and queues the results for one loop."""

    def __init__(
        self,
        source: Any,
        fetch: Callable[[Any, float], Optional[_T]],
        dispose: Callable[[_T], None],
        loop: asyncio.AbstractEventLoop,
        name: str,
    ) -> None:
        self._source = weakref.ref(source)  # never keep the socket alive from here
        self._fetch = fetch
        self._dispose = dispose
        self.loop = loop
        self._items: Deque[_T] = collections.deque()
        self._end: Optional[BaseException] = None
        self._waiters: Set["asyncio.Future[None]"] = set()
        self._credits = threading.Semaphore(READ_AHEAD)
        self._stop = threading.Event()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    # -- reader thread ----------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._credits.acquire(timeout=SLICE_SECONDS):
                continue
            source = self._source()
            if source is None:
                return
            try:
                item = self._fetch(source, SLICE_SECONDS)
            except BaseException as exc:  # noqa: BLE001 - delivered to recv()/accept()
                self._post(_End(exc))
                return
            finally:
                del source
            if item is None:
                self._credits.release()
                continue
            if not self._post(item):
                self._dispose(item)
                return

    def _post(self, item: Any) -> bool:
        try:
            self.loop.call_soon_threadsafe(self._deliver, item)
            return True
        except RuntimeError:  # the loop is closed
            self._stop.set()
            return False

    # -- event loop thread --------------------------------------------------

    def _deliver(self, item: Any) -> None:
        if self._stop.is_set():
            if not isinstance(item, _End):
                self._dispose(item)
            return
        if isinstance(item, _End):
            self._end = item.exc
        else:
            self._items.append(item)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def get(self, timeout: Optional[float]) -> _T:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._items:
                item = self._items.popleft()
                self._credits.release()
                return item
            if self._end is not None:
                exc = self._end
                # Later calls get a fresh ConnectionLost (no ever-growing traceback).
                self._end = _errors.connection_lost()
                raise exc
            if self._stop.is_set():
                raise _errors.connection_lost()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(errno.ETIMEDOUT, f"nothing arrived within {timeout:g} s")
            waiter: "asyncio.Future[None]" = self.loop.create_future()
            self._waiters.add(waiter)
            try:
                await asyncio.wait({waiter}, timeout=remaining)
            finally:
                self._waiters.discard(waiter)
                waiter.cancel()

    def stop(self) -> None:
        """Stop the thread (within one slice) and drop what was not taken."""
        self._stop.set()
        while self._items:
            self._dispose(self._items.popleft())
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)


def _drop(_: Any) -> None:
    pass


def _close_socket(sock: Socket) -> None:
    sock.close()


class AsyncSocket:
    """An :class:`ipcez.Socket` for asyncio: ``await send()``, ``await recv()``, ``async for``.

    Obtained from :func:`ipcez.aio.connect` or :meth:`AsyncListener.accept`.
    Bound to the event loop of its first ``recv``.
    """

    def __init__(self, sock: Socket) -> None:
        """Wrap an already connected :class:`ipcez.Socket`."""
        self._sock = sock
        self._pump: Optional[_Pump[bytes]] = None
        self._lock = threading.Lock()

    @property
    def socket(self) -> Socket:
        """The underlying blocking :class:`ipcez.Socket`."""
        return self._sock

    @property
    def endpoint(self) -> str:
        """See :attr:`ipcez.Socket.endpoint`."""
        return self._sock.endpoint

    @property
    def transport(self) -> str:
        """See :attr:`ipcez.Socket.transport`."""
        return self._sock.transport

    @property
    def closed(self) -> bool:
        """See :attr:`ipcez.Socket.closed`."""
        return self._sock.closed

    async def send(self, data: Any) -> None:
        """Send one message; completes when the peer acknowledged it (local transports).

        Raises like :meth:`ipcez.Socket.send`.  If the awaiting task is
        cancelled, the send still completes in the background: do not modify a
        mutable buffer until it has.
        """
        check_open(self._sock)  # ConnectionLost right away when closed
        await _run_blocking(self._sock.send, data)

    #: Alias of :meth:`send`.
    send_message = send

    def _get_pump(self) -> "_Pump[bytes]":
        loop = asyncio.get_running_loop()
        check_open(self._sock)  # also: an inherited pump's thread is not in a forked child
        with self._lock:
            if self._pump is None:
                self._pump = _Pump(self._sock, recv_slice, _drop, loop, "ipcez-aio-reader")
                weakref.finalize(self, self._pump._stop.set)
            elif self._pump.loop is not loop:
                raise RuntimeError("this AsyncSocket is bound to another event loop")
            return self._pump

    async def recv(self, timeout: Optional[float] = None) -> bytes:
        """Return the next message; TimeoutError after ``timeout`` seconds (None: no limit).

        Raises :class:`ConnectionLost` once the connection has ended.
        Cancelling (or timing out) never loses a message.
        """
        return await self._get_pump().get(check_timeout(timeout))

    def __aiter__(self) -> "AsyncSocket":
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except _errors.ConnectionLost:
            raise StopAsyncIteration from None

    async def close(self) -> None:
        """Close the connection (idempotent); a pending ``recv`` raises ConnectionLost."""
        with self._lock:
            pump = self._pump
        await _run_blocking(self._sock.close)
        if pump is not None:
            pump.stop()

    #: Alias of :meth:`close`.
    disconnect = close

    async def __aenter__(self) -> "AsyncSocket":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<ipcez.aio.AsyncSocket wrapping {self._sock!r}>"


class AsyncListener:
    """An :class:`ipcez.Listener` for asyncio: ``await accept()``, ``async for``, ``async with``."""

    def __init__(self, listener: Listener) -> None:
        """Wrap an open :class:`ipcez.Listener`."""
        self._listener = listener
        self._pump: Optional[_Pump[Socket]] = None
        self._lock = threading.Lock()

    @property
    def listener(self) -> Listener:
        """The underlying blocking :class:`ipcez.Listener`."""
        return self._listener

    @property
    def address(self) -> str:
        """See :attr:`ipcez.Listener.address`."""
        return self._listener.address

    @property
    def closed(self) -> bool:
        """True once closed."""
        return self._listener.closed

    def _get_pump(self) -> "_Pump[Socket]":
        loop = asyncio.get_running_loop()
        check_open(self._listener)  # also: an inherited pump's thread is not in a forked child
        with self._lock:
            if self._pump is None:
                self._pump = _Pump(
                    self._listener, accept_slice, _close_socket, loop, "ipcez-aio-acceptor"
                )
                weakref.finalize(self, self._pump._stop.set)
            elif self._pump.loop is not loop:
                raise RuntimeError("this AsyncListener is bound to another event loop")
            return self._pump

    async def accept(self, timeout: Optional[float] = None) -> AsyncSocket:
        """The next connection; TimeoutError after ``timeout`` s, ConnectionLost once closed."""
        return AsyncSocket(await self._get_pump().get(check_timeout(timeout)))

    def __aiter__(self) -> "AsyncListener":
        return self

    async def __anext__(self) -> AsyncSocket:
        try:
            return await self.accept()
        except _errors.ConnectionLost:
            raise StopAsyncIteration from None

    async def close(self) -> None:
        """Stop listening (idempotent); connections not yet accepted are closed."""
        with self._lock:
            pump = self._pump
        await _run_blocking(self._listener.close)
        if pump is not None:
            pump.stop()

    async def __aenter__(self) -> "AsyncListener":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<ipcez.aio.AsyncListener wrapping {self._listener!r}>"


_R = TypeVar("_R", AsyncSocket, AsyncListener)


class _Opening(Generic[_R]):
    """What :func:`connect`/:func:`listen` return: await it, or use ``async with`` on it."""

    def __init__(self, make: Callable[[], Awaitable[_R]]) -> None:
        self._make: Callable[[], Awaitable[_R]] = make
        self._value: Optional[_R] = None

    def __await__(self) -> Generator[Any, None, _R]:
        result: _R = yield from self._make().__await__()
        return result

    async def __aenter__(self) -> _R:
        self._value = await self._make()
        return self._value

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._value is not None:
            await self._value.close()


async def _open_in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    future = _pool.submit(fn, *args, **kwargs)
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        # The call may still succeed in its thread: close what nobody will get.
        def close_orphan(done: "concurrent.futures.Future[Any]") -> None:
            if not done.cancelled() and done.exception() is None:
                done.result().close()

        future.add_done_callback(close_orphan)
        raise


def connect(
    endpoint: Endpoint,
    *,
    ack_timeout: float = 5.0,
    subprotocols: Optional[Iterable[str]] = None,
) -> "_Opening[AsyncSocket]":
    """Connect like :func:`ipcez.connect`, without blocking the loop.

    Use ``sock = await ipcez.aio.connect(...)`` or ``async with ipcez.aio.connect(...) as sock``.
    """
    check_ack_timeout(ack_timeout)  # a bad value fails here, not when awaited

    async def make() -> AsyncSocket:
        sock = await _open_in_thread(
            _connect, endpoint, ack_timeout=ack_timeout, subprotocols=subprotocols
        )
        return AsyncSocket(sock)

    return _Opening(make)


def listen(
    endpoint: Endpoint,
    *,
    mode: int = 0o600,
    certfile: Any = None,
    keyfile: Any = None,
    ack_timeout: float = 5.0,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    origins: Optional[Iterable[str]] = None,
    subprotocols: Optional[Iterable[str]] = None,
) -> "_Opening[AsyncListener]":
    """Listen like :func:`ipcez.listen`, without blocking the loop.

    Use ``server = await ipcez.aio.listen(...)`` or ``async with ipcez.aio.listen(...) as server``.
    """
    check_ack_timeout(ack_timeout)  # a bad value fails here, not when awaited

    async def make() -> AsyncListener:
        listener = await _open_in_thread(
            _listen,
            endpoint,
            mode=mode,
            certfile=certfile,
            keyfile=keyfile,
            ack_timeout=ack_timeout,
            max_connections=max_connections,
            origins=origins,
            subprotocols=subprotocols,
        )
        return AsyncListener(listener)

    return _Opening(make)
