"""asyncio front end: the same sockets and listeners, awaited instead of blocked on.

::

    import asyncio, ipcez.aio

    async def echo(sock: ipcez.aio.AsyncSocket) -> None:
        async for message in sock:
            await sock.send(message)

    async def main() -> None:
        async with ipcez.aio.serve(echo, "/tmp/demo.sock"):
            async with ipcez.aio.connect("/tmp/demo.sock") as client:
                await client.send(b"hello")
                print(await client.recv())

    asyncio.run(main())

How it runs: the library reads every connection in the background as usual.
Each event loop has one native poller registered with ``loop.add_reader``;
a socket or listener reports to it when something comes to wait, and the
task waiting in ``recv``/``accept`` is woken and takes it without blocking.
There is no thread per connection and no polling.  On Linux, while a task
awaits ``recv`` or a send awaits its ack, the loop watches the socket itself
and reads it when it is readable, and the library's reader stands aside (it
takes over again when nobody waits, when the loop's thread blocks in a call of
the library, or when the socket is found readable and unread after 100 ms: a
blocked loop).  A send on a Unix socket writes its frame on the loop's thread
without waiting (what the socket does not take at once is finished in the
background, so the frame stays whole).  Between ipcez endpoints on Linux its
ack rings a doorbell on that socket; the loop then looks at the connection's
private ack counter, the only authority on acks.  Elsewhere the wait for the
ack, which named semaphores cannot offer to an event loop, runs on a few
shared helper threads, as do connects, listens and WebSocket sends.

Cancellation and timeouts lose nothing: a message is only taken inside
``recv`` right before it is returned, so a cancelled ``recv`` leaves it for
the next one.  A cancelled ``send`` has written its whole frame already (or
the connection has ended): the message is on its way and its ack is still
accounted for, so later sends get their own.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
from typing import Any, Awaitable, Callable, Deque, Generator, Generic, Iterable, Optional, Set, TypeVar

from . import _errors
from ._aio_hub import (
    Acks,
    Hub,
    Waker,
    hold_read,
    hub,
    read_held_acks,
    read_held_batch,
    run_blocking,
    start_send,
    watch,
)
from ._aio_open import Opening as _Opening
from ._aio_open import open_in_thread as _open_in_thread
from ._ffi import lib
from ._listener import Listener, accept_slice
from ._listener import listen as _listen
from ._managed import check_open
from ._resolve import Endpoint
from ._socket import BATCH, WINDOW, Socket, check_ack_timeout, prepare_many, take_now, write_many
from ._socket import connect as _connect
from ._timeout import check_timeout

__all__ = ["connect", "listen", "serve", "AsyncSocket", "AsyncListener", "Server"]

_log = logging.getLogger("ipcez.aio")
#: How long a socket stays held after its last waiter, at least, when nothing else ends the
#: loop's turn for it (see ``AsyncSocket._release_soon``), in seconds.
_LET_GO_AFTER = 0.01
_T = TypeVar("_T")


class _Watched:
    """A native object reporting to the running loop's hub, with its waiting tasks."""

    _waker: Optional[Waker] = None
    _hub: Optional[Hub] = None  # the running loop's, once watched
    _watch_fn: Any = None  # the native *_watch call of the wrapped object

    def _report(self) -> None:
        """The native object reported: something came (called on the loop)."""
        if self._waker is not None:
            self._waker.wake()

    def _watch(self, native: Any) -> Waker:
        waker = self._waker
        loop = asyncio.get_running_loop()
        if waker is None:
            h = self._hub = hub()
            waker = self._waker = Waker(loop)
            watch(native, self._watch_fn, h.ptr, h.register(self))
        elif waker.loop is not loop:
            check_open(native)  # closed, or inherited by a fork: that error comes first
            name = type(self).__name__
            closed = " (now closed)" if waker.loop.is_closed() else ""
            raise RuntimeError(
                f"this {name} is bound to another event loop, the one it first waited on{closed}; "
                f"an {name} cannot move between loops: use it from that loop, or open a new one in this loop"
            )
        return waker

    async def _take(
        self, native: Any, take: Callable[[], Optional[_T]], timeout: Optional[float], look: bool = True
    ) -> _T:
        """Wait until ``take()`` gives something; ``take`` never blocks. ``look`` False: it
        would give nothing now, wait first."""
        timeout = check_timeout(timeout)
        if look:
            item = take()
            if item is not None:
                return item
        waker = self._watch(native)
        loop = waker.loop
        deadline = None if timeout is None else loop.time() + timeout
        reading = self._read_here(waker)
        try:
            return await self._wait_take(waker, take, timeout, deadline)
        finally:
            if reading:
                self._stop_reading_here()

    def _read_here(self, waker: Waker) -> bool:
        """A waiter is about to wait: the loop may watch the native object itself (True:
        it does, until :meth:`_stop_reading_here`)."""
        return False

    def _stop_reading_here(self) -> None:
        """A waiter for which :meth:`_read_here` gave True is done waiting."""

    async def _wait_take(
        self, waker: Waker, take: Callable[[], Optional[_T]], timeout: Optional[float], deadline: Optional[float]
    ) -> _T:
        loop = waker.loop
        while True:
            fut = waker.wait()
            try:
                if deadline is None:
                    await fut
                elif deadline > loop.time():
                    await asyncio.wait((fut,), timeout=deadline - loop.time())
            except BaseException:
                # Woken but cancelled before taking: the next waiter gets the turn.
                waker.forget(fut, pass_on=fut.done() and not fut.cancelled())
                raise
            woken = fut.done() and not fut.cancelled()
            if not woken:  # (a woken one is off the line already)
                waker.forget(fut, pass_on=False)
            try:
                item = take()
            except BaseException:
                waker.wake()  # the end is for every waiter
                raise
            if item is not None:
                if woken and waker.waiting:
                    waker.wake()  # more may wait; the next waiter looks
                return item
            if deadline is not None and loop.time() >= deadline:
                raise TimeoutError(errno.ETIMEDOUT, f"nothing arrived within {timeout:g} s")


class AsyncSocket(_Watched):
    """An :class:`ipcez.Socket` for asyncio: ``await send()``, ``await recv()``, ``async for``.

    Obtained from :func:`ipcez.aio.connect`, :meth:`AsyncListener.accept` or a
    :func:`serve` handler.  Bound to the event loop it is first used on.
    """

    _watch_fn = lib.ipcez_socket_watch

    def __init__(self, sock: Socket) -> None:
        """Wrap an already connected :class:`ipcez.Socket`."""
        self._sock = sock
        self._unix = sock.transport == "unix"  # acks and doorbells: Unix sockets only
        self._acks: Optional[Acks] = None
        #: Waiters for which the loop holds the socket and watches ``_read_fd`` (see
        #: ``_read_here``); the hold lasts across ack waits (see ``_release_soon``).
        self._readers = 0
        self._read_fd = -1
        #: A report came since the loop last held the socket: hold it anew before waiting
        #: (the library takes a socket back from a blocked loop, and reports what it read).
        self._hold_anew = False
        self._letting_go: Optional[asyncio.TimerHandle] = None  # see ``_release_soon`` ...
        self._busy = False  # ... and whether a wait ended since it was set
        self._slow_lock: Optional[asyncio.Lock] = None  # made on the loop (Python 3.9)
        self._slow_sends = 0  # sends waiting for, or on, a helper thread
        #: Messages the loop took for a waiting receive (``_on_readable``), oldest first.
        self._taken: Deque[bytes] = collections.deque()

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

    def _read_here(self, waker: Waker) -> bool:
        # A waiter has the loop watch the socket's own descriptor, and the library's reader
        # stand aside: a message then wakes this thread only (not the library's thread and
        # then this one). Where that cannot be, the poller alone wakes it. Held already
        # (each read restarts the library's 100 ms count), it is not held anew unless a
        # report came: the library may have taken it back.
        if (self._read_fd < 0 or self._hold_anew) and not self._hold(waker.loop):
            return False
        self._readers += 1
        return True

    def _hold(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Hold the socket and watch its descriptor (True), for a waiting receive or for
        acks (they ring a doorbell on it). Holding it anew restarts the 100 ms the library
        allows an unread hold (as each read does), and takes the socket back if the
        library took it (this thread blocked in a call of the library)."""
        try:
            fd = hold_read(self._sock, True)
        except _errors.SocketError:
            return False  # closed: the caller's next call says so
        if fd < 0:
            return False
        self._hold_anew = False
        self._sock._pending.dry = False  # the library's reader may have read meanwhile
        if self._read_fd < 0:
            try:
                loop.add_reader(fd, self._on_readable)
            except OSError:  # e.g. a loop that cannot watch it: the poller will do
                self._release_hold()
                return False
            self._read_fd = fd
        return True

    def _stop_reading_here(self) -> None:
        self._readers -= 1
        self._release_soon()

    def _release_soon(self) -> None:
        """Lets go of the socket once nobody needs it held: not at once, since a task that
        takes a message and answers it awaits its ack, then the next message, and holding
        and letting go cost system calls each time. It lets go once nobody waited for
        :data:`_LET_GO_AFTER` (a look per message would cost the loop a turn per message)."""
        if self._letting_go is not None:
            self._busy = True  # used meanwhile: the timer looks again later
            return
        if self._read_fd < 0 or self._readers or self._awaiting_acks() or self._waker is None:
            return
        self._busy = False
        self._letting_go = self._waker.loop.call_later(_LET_GO_AFTER, self._let_go_if_idle)

    def _let_go_if_idle(self) -> None:
        self._letting_go = None
        if self._busy:
            # A task that was woken may not have run yet (and would wait again at once).
            self._release_soon()
        else:
            self._release_if_idle()

    def _release_if_idle(self) -> None:
        if not self._readers and not self._awaiting_acks():
            self._unwatch()
            self._release_hold()

    def _awaiting_acks(self) -> bool:
        return self._acks is not None and self._acks.pending

    def _on_readable(self) -> None:
        """The held socket is readable: the loop takes a message for the waiting task. With
        no task waiting, it reads what came itself while sends await acks (a doorbell, see
        ``ipcez_socket_read_held``) or while the socket is in use (a task received on it
        within :data:`_LET_GO_AFTER` and is about to again: letting go and holding anew
        would cost system calls), keeping one message for the next receive. Otherwise, or
        when it cannot, it lets go and the library's reader reads (and buffers) what comes."""
        if self._readers:
            self._take_for_waiter()
            return
        acks = self._acks
        awaiting = acks is not None and acks.pending
        if awaiting or (self._letting_go is not None and not self._taken):
            if self._read_held(acks if awaiting else None):
                if self._unix:  # after the tasks that settle woke: they may answer first
                    self._ring_soon()
                self._release_soon()
                return
        self._unwatch()
        self._release_hold()

    def _read_held(self, acks: Optional[Acks]) -> bool:
        """Reads the readable held socket for nobody waiting: the message that came (as a
        rule the answer to the send that awaits ``acks``) goes to ``_taken`` for the next
        receive, and the acks are settled. False: let go instead."""
        if not self._unix:  # a WebSocket: no acks, the plain receive reads it
            try:
                message = take_now(self._sock)
            except _errors.SocketError:
                return False  # the receive that comes says why
            if message is not None:
                self._taken.append(message)
            return True
        self._sock._pending.dry = False  # the held read queues what it reads unreported
        try:
            got = None if self._taken else read_held_batch(self._sock)
            if got is None:
                if acks is None:
                    return False
                let_go, acked, timed_out = read_held_acks(self._sock)
            else:
                message, let_go, acked, timed_out = got
                if message is not None:
                    self._taken.append(message)
        except _errors.SocketError as exc:
            if acks is not None:
                acks.fail(exc)
            return False
        if acks is not None:  # (with none awaited, the library reports none)
            acks.settle(acked, timed_out)
        return not let_go

    def _unwatch(self) -> None:
        """The loop stops watching the descriptor: before it is closed, or it could be
        another file's by the time the loop looks (asyncio's own transports do the same)."""
        if self._read_fd >= 0:
            assert self._waker is not None
            self._waker.loop.remove_reader(self._read_fd)
            self._read_fd = -1

    def _release_hold(self) -> None:
        try:
            hold_read(self._sock, False)
        except _errors.SocketError:
            pass  # closed meanwhile: the close ended the hold

    def _expect_acks(self, count: int) -> "asyncio.Future[None]":
        """The future of the next ``count`` acks (see :meth:`_ready_for_acks`)."""
        return self._ready_for_acks().expect(count)

    def _ready_for_acks(self) -> Acks:
        """The socket's acks, with the loop holding the socket, so that their doorbell
        (between ipcez endpoints on Linux) wakes it directly: the library asks the peer
        for doorbells only while a loop holds the socket."""
        acks = self._pending_acks()
        assert self._waker is not None
        if self._read_fd < 0 or self._hold_anew:  # else held already (see ``_read_here``)
            self._hold(self._waker.loop)
        return acks

    def _take_for_waiter(self) -> None:
        """Takes the next message here and wakes the waiting task with it. asyncio reports
        what was readable when it last polled, and the task woken before may have read
        it since: waking the task only for a message spares it those empty turns."""
        assert self._waker is not None
        if self._taken:
            return  # one waits for the task already: it looks again after taking it
        try:
            message = self._recv_now()
        except _errors.SocketError:
            self._waker.wake()  # the waiter's own receive raises it
            return
        if message is not None:
            self._taken.append(message)
            self._waker.wake()

    def _recv_now(self) -> Optional[bytes]:
        if self._taken:
            check_open(self._sock)  # a closed socket gives ConnectionLost, never a message
            return self._taken.popleft()
        message = take_now(self._sock)
        if message is not None and self._read_fd >= 0 and self._unix:
            self._ring_soon()
        if self._acks is not None and self._acks.pending:
            self._acks.collect()  # the read may have heard a doorbell
            self._release_soon()
        return message

    def _ring_soon(self) -> None:
        """This loop read its held socket. In a busy turn the library leaves the peer's
        doorbell for the acks it gave to the next frame written here (an answer usually
        follows at once: one write and one wake-up instead of two, each way); the loop's
        hub ends the turn for the library once the tasks the messages woke have run, and
        what no frame carried is rung then."""
        assert self._hub is not None
        self._hub.turn_soon()

    def _pending_acks(self) -> Acks:
        if self._acks is None:
            waker = self._watch(self._sock)  # acks are reported through the poller too
            self._acks = Acks(self._sock, waker.loop)
        return self._acks

    def _report(self) -> None:
        self._hold_anew = True
        self._sock._pending.dry = False
        super()._report()
        if self._acks is not None:
            self._acks.collect()
            self._release_soon()

    async def send(self, data: Any) -> None:
        """Send one message; completes when the peer acknowledged it (local transports).

        Raises like :meth:`ipcez.Socket.send`.  Concurrent sends from several
        tasks are written back to back and wait for their acks together.  If
        the awaiting task is cancelled, the message has still been sent whole
        (or the connection has ended): do not modify a mutable buffer until
        the call returned or was cancelled.
        """
        unix = self._unix
        # Sends that had to go to a helper thread go first: the order of sends is kept.
        if not self._slow_sends:
            acks = self._acks
            if unix and (acks is None or self._read_fd < 0 or self._hold_anew):  # else ready
                acks = self._ready_for_acks()
            try:
                sent = start_send(self._sock, data, acked=unix)  # the library expects its ack
            except BaseException:
                self._release_soon()  # held for an ack that will not come
                raise
            if sent:
                if acks is not None:
                    await acks.expected(1)
                return
            self._release_soon()
        check_open(self._sock)  # ConnectionLost right away when closed
        await self._send_slowly(self._sock.send, data)

    #: Alias of :meth:`send`.
    send_message = send

    async def _send_slowly(self, send: Callable[[Any], None], data: Any) -> None:
        """A blocking send on a helper thread, one at a time, in the order they came."""
        if self._slow_lock is None:
            self._slow_lock = asyncio.Lock()
        self._slow_sends += 1
        try:
            async with self._slow_lock:
                await run_blocking(send, data)
        finally:
            self._slow_sends -= 1

    async def send_many(self, messages: Iterable[Any]) -> None:
        """Send several messages back to back; completes when every one is acknowledged.

        Like :meth:`ipcez.Socket.send_many`, without blocking the loop.
        """
        if not self._unix:
            await self._send_slowly(self._sock.send_many, messages)
            return
        items, lens = prepare_many(self._sock, messages)
        acks = self._pending_acks()
        waiting: Set["asyncio.Future[None]"] = set()
        for start in range(0, len(items), BATCH):
            end = start + BATCH
            with self._sock._use() as handle:
                sent = not self._slow_sends and write_many(handle, items[start:end], lens[start:end], wait=False)
            if not sent:  # the frames already waiting hold their bound: wait the blocking way
                await self._send_slowly(self._sock.send_many, items[start:])
                break
            waiting.add(self._expect_acks(len(lens[start:end])))
            if len(waiting) * BATCH > WINDOW:
                done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for fut in done:
                    fut.result()
        for fut in waiting:
            await fut

    async def recv(self, timeout: Optional[float] = None) -> bytes:
        """Return the next message; TimeoutError after ``timeout`` seconds (None: no limit).

        Raises :class:`ConnectionLost` once the connection has ended.
        Cancelling (or timing out) never loses a message.
        """
        taken = self._taken
        if taken and timeout is None:  # the loop took it already (as a rule, the answer
            check_open(self._sock)  # that came with an ack): no wait, no call
            return taken.popleft()
        # Held, with nothing reported since the last take, which found the library keeps
        # nothing more: a look now would find nothing (one native call and, on a WebSocket,
        # one read that would block, per message).
        dry = self._sock._pending.dry and self._read_fd >= 0 and not self._hold_anew and not taken
        return await self._take(self._sock, self._recv_now, timeout, look=not dry)

    def __aiter__(self) -> "AsyncSocket":
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except _errors.ConnectionLost:
            raise StopAsyncIteration from None

    async def close(self) -> None:
        """Close the connection (idempotent); pending ``recv`` and ``send`` calls raise
        ConnectionLost."""
        self._close_now()

    def _close_now(self) -> None:
        try:
            here = self._waker is not None and self._waker.loop is asyncio.get_running_loop()
        except RuntimeError:
            here = False  # no loop runs here: the loop's selector is not ours to touch
        if here:
            self._unwatch()
        self._sock.close()
        self._taken.clear()
        if self._waker is not None:
            self._waker.wake_all()
        if self._acks is not None:
            self._acks.fail(_errors.connection_lost())

    #: Alias of :meth:`close`.
    disconnect = close

    async def __aenter__(self) -> "AsyncSocket":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<ipcez.aio.AsyncSocket wrapping {self._sock!r}>"


class AsyncListener(_Watched):
    """An :class:`ipcez.Listener` for asyncio: ``await accept()``, ``async for``, ``async with``."""

    _watch_fn = lib.ipcez_listener_watch

    def __init__(self, listener: Listener) -> None:
        """Wrap an open :class:`ipcez.Listener`."""
        self._listener = listener

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

    async def accept(self, timeout: Optional[float] = None) -> AsyncSocket:
        """The next connection; TimeoutError after ``timeout`` s, ConnectionLost once closed."""
        sock = await self._take(self._listener, lambda: accept_slice(self._listener, 0.0), timeout)
        return AsyncSocket(sock)

    def __aiter__(self) -> "AsyncListener":
        return self

    async def __anext__(self) -> AsyncSocket:
        try:
            return await self.accept()
        except _errors.ConnectionLost:
            raise StopAsyncIteration from None

    async def close(self) -> None:
        """Stop listening (idempotent); connections not yet accepted are closed."""
        self._listener.close()
        if self._waker is not None:
            self._waker.wake_all()

    async def __aenter__(self) -> "AsyncListener":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<ipcez.aio.AsyncListener wrapping {self._listener!r}>"


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
        return AsyncSocket(
            await _open_in_thread(
                lambda: _connect(endpoint, ack_timeout=ack_timeout, subprotocols=subprotocols)
            )
        )

    return _Opening(make)


def listen(
    endpoint: Endpoint,
    *,
    mode: int = 0o600,
    certfile: Any = None,
    keyfile: Any = None,
    ack_timeout: float = 5.0,
    max_connections: Optional[int] = None,
    origins: Optional[Iterable[str]] = None,
    subprotocols: Optional[Iterable[str]] = None,
) -> "_Opening[AsyncListener]":
    """Listen like :func:`ipcez.listen`, without blocking the loop.

    Use ``server = await ipcez.aio.listen(...)`` or ``async with ipcez.aio.listen(...) as server``.
    """
    check_ack_timeout(ack_timeout)  # a bad value fails here, not when awaited

    def open_listener() -> Listener:
        return _listen(
            endpoint,
            mode=mode,
            certfile=certfile,
            keyfile=keyfile,
            ack_timeout=ack_timeout,
            max_connections=max_connections,
            origins=origins,
            subprotocols=subprotocols,
        )

    async def make() -> AsyncListener:
        return AsyncListener(await _open_in_thread(open_listener))

    return _Opening(make)


class Server:
    """A running :func:`serve`: accepts connections and runs the handler for each.

    Use it as an async context manager (closed on exit), or await
    :meth:`serve_forever`; :meth:`close` then :meth:`wait_closed` stop it.
    """

    def __init__(self, listener: AsyncListener, handler: Callable[[AsyncSocket], Awaitable[Any]]) -> None:
        self._listener = listener
        self._handler = handler
        self._connections: Set[AsyncSocket] = set()
        self._tasks: Set["asyncio.Task[None]"] = set()
        self._accepting = asyncio.ensure_future(self._accept_loop())

    @property
    def address(self) -> str:
        """The address it listens on (see :attr:`ipcez.Listener.address`)."""
        return self._listener.address

    @property
    def listener(self) -> AsyncListener:
        """The listener it accepts on."""
        return self._listener

    @property
    def connections(self) -> Set[AsyncSocket]:
        """The connections whose handler is running."""
        return set(self._connections)

    async def _accept_loop(self) -> None:
        async for sock in self._listener:
            task = asyncio.ensure_future(self._run(sock))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, sock: AsyncSocket) -> None:
        self._connections.add(sock)
        try:
            await self._handler(sock)
        except _errors.ConnectionLost:
            pass  # the peer went away: the handler's business is over
        except Exception:  # noqa: BLE001 - one connection's failure must not stop the server
            _log.exception("connection handler failed on %s", self._listener.address)
        finally:
            self._connections.discard(sock)
            await sock.close()

    def close(self, close_connections: bool = True) -> None:
        """Stop accepting; also close open connections unless told not to (their pending
        ``recv`` calls then raise ConnectionLost)."""
        self._listener.listener.close()
        if self._listener._waker is not None:
            self._listener._waker.wake_all()
        if close_connections:
            for sock in list(self._connections):
                sock._close_now()

    async def wait_closed(self) -> None:
        """Wait until the server is closed and every handler has returned."""
        await asyncio.gather(self._accepting, return_exceptions=True)
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def serve_forever(self) -> None:
        """Serve until :meth:`close` (or until cancelled, which closes the server)."""
        try:
            await asyncio.shield(self._accepting)
        finally:
            self.close()
            await self.wait_closed()

    async def __aenter__(self) -> "Server":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()
        await self.wait_closed()


def serve(
    handler: Callable[[AsyncSocket], Awaitable[Any]],
    endpoint: Endpoint,
    **listen_options: Any,
) -> "_Opening[Server]":
    """Listen on ``endpoint`` and run ``await handler(sock)`` for every connection, in the
    shape of ``websockets.serve``.

    The connection is closed when the handler returns; a handler that raises is
    logged (logger ``ipcez.aio``) and does not stop the server.  Takes the
    options of :func:`listen`.  Use ``async with ipcez.aio.serve(...) as server:``
    (add ``await server.serve_forever()`` to run until cancelled) or
    ``server = await ipcez.aio.serve(...)``.
    """

    async def make() -> Server:
        return Server(await listen(endpoint, **listen_options), handler)

    return _Opening(make)
