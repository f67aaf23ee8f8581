"""What :mod:`ipcez.aio` runs on: one native poller per event loop, a fixed pool of
helper threads, and per-socket ack collection.

* :class:`Hub`: one ``ipcez_poller`` per event loop, registered once with
  ``loop.add_reader``.  Every socket and listener of that loop reports a token
  to it when something comes to wait where nothing waited; the hub wakes the
  one waiter of that object, which then takes what it can without waiting.
  No thread per connection, and one descriptor however many connections.
* :data:`POOL`: :data:`POOL_THREADS` daemon threads for the blocking calls
  that remain: connects, listens, WebSocket sends.
* :class:`Acks`: the outstanding acks of one socket.  The library waits for
  them on a few native threads of its own (named semaphores cannot be
  polled) and reports through the same poller.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import ctypes
import itertools
import os
import queue
import threading
import weakref
from typing import Any, Callable, Deque, Optional, Tuple, TypeVar

from . import _abi, _batch, _errors, _ffi
from ._buffer import borrow
from ._ffi import fast, lib

_T = TypeVar("_T")

#: Helper threads shared by every event loop in the process.
POOL_THREADS = 4


class Pool:
    """A fixed number of daemon threads (never delaying interpreter exit), started on
    demand; work beyond them waits in the queue."""

    def __init__(self, threads: int) -> None:
        self._max = threads
        self._reset()
        if hasattr(os, "register_at_fork"):  # a child of fork has none of these threads
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = 0
        self._idle = 0

    def submit(self, fn: Callable[..., _T], *args: Any) -> "concurrent.futures.Future[_T]":
        future: "concurrent.futures.Future[_T]" = concurrent.futures.Future()
        with self._lock:
            start = self._idle == 0 and self._started < self._max
            self._started += int(start)
            self._idle -= int(not start and self._idle > 0)
        self._queue.put((future, fn, args))
        if start:
            threading.Thread(target=self._work, name="ipcez-aio", daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            future, fn, args = self._queue.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
                    future.set_exception(exc)
            del future, fn, args
            with self._lock:
                self._idle += 1


POOL = Pool(POOL_THREADS)


async def run_blocking(fn: Callable[..., _T], *args: Any) -> _T:
    """Run a blocking call on the pool and await it."""
    return await asyncio.wrap_future(POOL.submit(fn, *args))


class Hub:
    """The native poller of one event loop and the objects that report to it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        ptr = _ffi.poller_p()
        err = _ffi.error_p()
        rc = lib.ipcez_poller_new(ctypes.byref(ptr), ctypes.byref(err))
        if rc != _abi.RESULT_OK:
            raise _errors.fail(rc, err)
        self.ptr = ptr
        weakref.finalize(self, lib.ipcez_poller_free, ptr)
        self._targets: "weakref.WeakValueDictionary[int, Any]" = weakref.WeakValueDictionary()
        self._tokens = itertools.count(1)
        self._buf = (ctypes.c_uint64 * 256)()
        self._fd = lib.ipcez_poller_fileno(ptr)
        loop.add_reader(self._fd, self._on_ready)
        self._turn: Optional[asyncio.Handle] = None  # ``_turn_ends``, scheduled

    def turn_soon(self) -> None:
        """The loop read a socket it holds: end its turn for the library once the tasks
        woken meanwhile have run, one native call for all its sockets (see
        ``ipcez_loop_turn_ends``: a busy turn leaves doorbells to the answers written next,
        and this rings what no answer carried)."""
        if self._turn is None:
            self._turn = self.loop.call_soon(self._turn_ends)

    def _turn_ends(self) -> None:
        self._turn = None
        if fast.ipcez_loop_turn_ends():  # doorbells still deferred: rung after a later turn
            self._turn = self.loop.call_soon(self._turn_ends)

    def register(self, target: Any) -> int:
        """A new token for ``target``, whose ``_report()`` is called on the loop whenever
        the native object it was handed to reports (the caller hands it over)."""
        token = next(self._tokens)
        self._targets[token] = target
        return token

    def _on_ready(self) -> None:
        while True:
            n = lib.ipcez_poller_take(self.ptr, self._buf, len(self._buf))
            for token in self._buf[:n]:
                target = self._targets.get(token)
                if target is not None:
                    target._report()
            if n < len(self._buf):
                return


_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub]" = weakref.WeakKeyDictionary()


def hub() -> Hub:
    """The hub of the running event loop (made on first use)."""
    loop = asyncio.get_running_loop()
    h = _hubs.get(loop)
    if h is None:
        h = _hubs[loop] = Hub(loop)
    return h


class Waker:
    """The waiters of one socket or listener, woken in turn.

    A report means "something came to wait"; only the first waiter is woken.
    A waiter that took something, or gave up after being woken, wakes the next
    one, which finds out for itself whether anything is left.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._waiters: Deque["asyncio.Future[None]"] = collections.deque()

    @property
    def waiting(self) -> bool:
        """Whether a waiter is in line."""
        return bool(self._waiters)

    def wait(self) -> "asyncio.Future[None]":
        fut: "asyncio.Future[None]" = self.loop.create_future()
        self._waiters.append(fut)
        return fut

    def forget(self, fut: "asyncio.Future[None]", pass_on: bool) -> None:
        """``fut`` is done waiting; with ``pass_on`` the next waiter gets a turn."""
        # A woken waiter was taken off the line already; only a cancelled or timed-out one
        # is still in it. (Not found, deque.remove would build a ValueError with the
        # future's repr: 7 µs per message, measured.)
        if not fut.done() or fut.cancelled():
            try:
                self._waiters.remove(fut)
            except ValueError:
                pass
        if pass_on:
            self.wake()

    def wake(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def wake_all(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)


class Acks:
    """The sends of one socket that wait for their ack, oldest first.

    The library waits for the acks on threads of its own and reports progress
    through the socket's poller token; :meth:`collect` then settles the oldest
    sends.  Acks are taken in order, whatever task awaits them: a send whose
    task was cancelled still has its ack taken, so every later send gets its own.
    """

    def __init__(self, sock: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._sock = sock
        self._loop = loop
        self._pending: Deque["asyncio.Future[None]"] = collections.deque()

    def expect(self, count: int = 1) -> "asyncio.Future[None]":
        """A future that completes once ``count`` more acks (after all earlier ones) came."""
        fut: "asyncio.Future[None]" = self._loop.create_future()
        _call(self._sock, lib.ipcez_socket_expect_acks, count)
        self._pending.extend([_NO_FUTURE] * (count - 1))
        self._pending.append(fut)
        return fut

    @property
    def pending(self) -> bool:
        """True while a send waits for its ack."""
        return bool(self._pending)

    def expected(self, count: int = 1) -> "asyncio.Future[None]":
        """:meth:`expect` for acks the library already expects (``start_send(acked=True)``)."""
        fut: "asyncio.Future[None]" = self._loop.create_future()
        self._pending.extend([_NO_FUTURE] * (count - 1))
        self._pending.append(fut)
        return fut

    def collect(self) -> None:
        """Settle the sends whose ack came (or ran out of time) since the last look."""
        if not self._pending:
            return
        try:
            acked, timed_out = take_acks(self._sock)
        except _errors.SocketError as exc:
            self.fail(exc)
            return
        self.settle(acked, timed_out)

    def settle(self, acked: int, timed_out: int) -> None:
        """Settle the oldest sends: ``acked`` got their ack, then ``timed_out`` did not."""
        if acked == 1 and not timed_out and self._pending:  # the common case, shorter
            fut = self._pending.popleft()
            if not fut.done():
                fut.set_result(None)
            return
        for _ in range(min(acked, len(self._pending))):
            fut = self._pending.popleft()
            if not fut.done():
                fut.set_result(None)
        for _ in range(min(timed_out, len(self._pending))):
            fut = self._pending.popleft()
            if not fut.done():
                fut.set_exception(
                    _errors.RecipientAckTimeout(
                        "the recipient did not acknowledge the message within "
                        f"{self._sock.ack_timeout:g} s"
                    )
                )

    def fail(self, exc: BaseException) -> None:
        """Every send still waiting fails with ``exc`` (the connection is gone)."""
        while self._pending:
            fut = self._pending.popleft()
            if not fut.done():
                fut.set_exception(exc if isinstance(exc, Exception) else _errors.connection_lost())


class _Done:
    """A stand-in future for acks nobody awaits one by one (send_many's earlier ones)."""

    def done(self) -> bool:
        return True


_NO_FUTURE: Any = _Done()


# -- the native calls aio makes on sockets and listeners (none of them waits) --------


def _call(owner: Any, fn: Any, *args: Any) -> None:
    err = _ffi.error_p()
    with owner._use() as handle:
        rc = fn(handle, *args, ctypes.byref(err))
    if rc != _abi.RESULT_OK:
        raise _errors.fail(rc, err)


def watch(owner: Any, watch_fn: Any, poller: Any, token: int) -> None:
    """Have a socket or listener (``watch_fn``: its ``*_watch`` call) report ``token`` to
    ``poller`` whenever something comes to wait."""
    _call(owner, watch_fn, poller, token)


def start_send(sock: Any, data: Any, acked: bool = False) -> bool:
    """Hand one message over without waiting: True when it was (on a Unix socket what the
    socket does not take now is finished in the background, in order), False with nothing
    sent when that would mean waiting (a busy WebSocket, a named pipe). ``acked``: the
    library also expects its ack (see :meth:`Acks.expected`)."""
    err = _ffi.error_p()
    handle = sock._enter()  # (``with sock._use()`` without the context manager)
    try:
        if type(data) is bytes:  # no buffer dance for bytes, as in Socket.send
            fn = fast.ipcez_socket_start_send_acked if acked else fast.ipcez_socket_start_send
            rc = fn(handle, data or None, ctypes.c_size_t(len(data)), ctypes.byref(err))
        else:
            fn = lib.ipcez_socket_start_send_acked if acked else lib.ipcez_socket_start_send
            with borrow(data) as (ptr, n):
                rc = fn(handle, ptr, n, ctypes.byref(err))
    finally:
        sock._exit()
    if rc == _abi.RESULT_ERROR:
        raise _errors.fail(rc, err)
    return bool(rc == _abi.RESULT_OK)


def hold_read(sock: Any, on: bool) -> int:
    """``on``: the loop reads ``sock`` itself while it waits for a message, watching the
    descriptor returned (-1: it cannot, wait for the poller); ``off``: it stopped."""
    fd = ctypes.c_int32(-1)
    _call(sock, fast.ipcez_socket_hold_read, ctypes.c_int32(on), ctypes.byref(fd))
    return fd.value


def read_held_acks(sock: Any) -> Tuple[bool, int, int]:
    """The held ``sock`` is readable and no receive waits: read what came (doorbells,
    messages to queue), then take the acks as :func:`take_acks` does. Returns (let go,
    acked, timed out); let go: stop holding the socket instead (see :func:`hold_read`)."""
    err = _ffi.error_p()
    let_go = ctypes.c_int32(1)
    acked = ctypes.c_size_t()
    timed_out = ctypes.c_size_t()
    with sock._use() as handle:
        rc = fast.ipcez_socket_read_held_acks(
            handle, ctypes.byref(let_go), ctypes.byref(acked), ctypes.byref(timed_out), ctypes.byref(err)
        )
    if rc != _abi.RESULT_OK:
        raise _errors.fail(rc, err)
    return bool(let_go.value), acked.value, timed_out.value


def read_held_batch(sock: Any) -> Optional[Tuple[Optional[bytes], bool, int, int]]:
    """:func:`read_held_acks` that also takes the next message (as a rule the answer that
    came with the acks), in one call: (message or None, let go, acked, timed out). None,
    with nothing read, while the socket's batch buffer holds messages."""
    return _batch.take_held(sock, sock._pending)


def take_acks(sock: Any) -> Tuple[int, int]:
    """(acked, timed out) of the expected acks since the last call; raises once the
    connection ended."""
    err = _ffi.error_p()
    acked = ctypes.c_size_t()
    timed_out = ctypes.c_size_t()
    with sock._use() as handle:
        rc = fast.ipcez_socket_take_acks(handle, ctypes.byref(acked), ctypes.byref(timed_out), ctypes.byref(err))
    if rc != _abi.RESULT_OK:
        raise _errors.fail(rc, err)
    return acked.value, timed_out.value
