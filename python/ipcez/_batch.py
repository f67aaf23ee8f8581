"""Receiving in batches: one native call hands over every message already waiting (up to
:data:`MAX_COUNT` messages and :data:`MAX_BYTES` bytes), and the socket keeps the ones
not asked for yet in a small buffer of its own.

A call through ctypes costs more than a small message's whole trip through the library,
so a stream of messages is taken a batch per call.  The promises of one message per call
still hold:

* order: the buffer is drained before the library is asked again, under one lock per
  socket;
* readiness: while the buffer holds messages the library counts them as still waiting, so
  :meth:`Socket.fileno` stays readable and an asyncio poller is not told again, until
  the last one is taken (``ipcez_socket_set_held``);
* ``close()`` and ``fork()``: the buffer is checked like the handle, so a closed socket
  raises ConnectionLost and a forked child ForkedError, never a buffered message;
* a message handler takes through the same path, so it gets buffered messages first;
* Ctrl-C: KeyboardInterrupt comes at the first chance after the native call returns, which
  may be after the library handed over a batch: the batch then goes to the buffer before
  the exception goes on (:func:`_keep`), and the next receive returns it.
"""

from __future__ import annotations

import ctypes
import threading
from collections import deque
from typing import Any, Deque, List, Optional, Tuple

from . import _abi, _errors, _ffi
from ._ffi import fast, lib
from ._managed import Managed, check_open

#: At most this many messages per native call ...
MAX_COUNT = 64
#: ... holding at most this many bytes (a longer message comes alone, as before).
MAX_BYTES = 64 * 1024
#: The count before a call: still there afterwards, the library handed nothing over (it
#: writes the count only with a batch).
NOTHING = MAX_COUNT + 1
#: How :func:`_receive` calls: a receive that waits up to ``wait_ms``, the held read (see
#: :func:`take_held`), or the take of :func:`take_now`.
_WAIT, _HELD, _NOW = range(3)


class Scratch:
    """One thread's out-parameters and copy buffer (reused: building them costs more than
    the call)."""

    __slots__ = (
        "buf", "view", "array", "lens", "count", "out", "head", "tail", "first", "freed",
        "let_go", "acked", "timed_out", "held", "wait", "dry", "dry_ref",
    )

    def __init__(self) -> None:
        self.buf = bytearray(MAX_BYTES)
        self.view = memoryview(self.buf)
        self.array = (ctypes.c_char * MAX_BYTES).from_buffer(self.buf)
        self.lens = (ctypes.c_size_t * MAX_COUNT)()
        self.count = ctypes.c_size_t()
        self.out = _ffi.Received()
        # The arguments before and after the wait, ready to pass (as ctypes values: the
        # calls are ``_ffi.fast``'s, which convert nothing).
        self.head = (
            ctypes.c_void_p(ctypes.addressof(self.array)),
            ctypes.c_size_t(MAX_BYTES),
            ctypes.c_void_p(ctypes.addressof(self.lens)),
            ctypes.c_size_t(MAX_COUNT),
        )
        self.wait = ctypes.c_uint32()
        self.tail = (ctypes.byref(self.count), *self.out.args)
        # ``ipcez_socket_read_held_batch``'s own, between the two.
        self.let_go = ctypes.c_int32()
        self.acked = ctypes.c_size_t()
        self.timed_out = ctypes.c_size_t()
        self.held = (ctypes.byref(self.let_go), ctypes.byref(self.acked), ctypes.byref(self.timed_out))
        # ``ipcez_socket_take_batch``'s own.
        self.dry = ctypes.c_int32()
        self.dry_ref = ctypes.byref(self.dry)
        #: The last batch's first message, once made into bytes (for :func:`_keep`) ...
        self.first: Optional[bytes] = None
        #: ... and whether a long message's native buffer was freed.
        self.freed = False

    def call(self, handle: Any, wait_ms: int) -> int:
        """One native batch receive into this scratch; the result code."""
        self.first = None
        self.freed = False
        self.count.value = NOTHING
        self.wait.value = wait_ms
        rc: int = fast.ipcez_socket_recv_batch(handle, *self.head, self.wait, *self.tail)
        return rc

    def holds_batch(self) -> bool:
        """True when the last call handed a batch over (whatever its result code says:
        an interrupt may have come before the code was looked at)."""
        return self.count.value != NOTHING


_per_thread = threading.local()


def scratch() -> Scratch:
    s: Optional[Scratch] = getattr(_per_thread, "scratch", None)
    if s is None:
        s = _per_thread.scratch = Scratch()
    return s


class Pending:
    """A socket's messages taken from the library but not yet asked for."""

    __slots__ = ("messages", "lock", "dry")

    def __init__(self) -> None:
        self.messages: Deque[bytes] = deque()
        self.lock = threading.Lock()
        #: True only right after a :func:`take_now` that found the library keeps nothing
        #: more (see there); any other take sets it back.
        self.dry = False


def take(sock: Managed, pending: Pending, wait_ms: int) -> Optional[bytes]:
    """The next message of ``sock`` (whose buffer is ``pending``), waiting at most
    ``wait_ms`` (one slice) for the library; None when none came.  Raises like
    :meth:`Socket.recv`."""
    check_open(sock)  # before the lock: in a forked child a parent's thread may hold it
    with pending.lock:
        messages = pending.messages
        pending.dry = False  # only ever True right after take_now said so
        if messages:
            return _pop(sock, messages)
        return _receive(sock, scratch(), messages, wait_ms, _WAIT)


def take_now(sock: Managed, pending: Pending) -> Optional[bytes]:
    """:func:`take` without waiting, for an event loop that holds ``sock`` (buffer
    ``pending``): ``ipcez_socket_take_batch``, which also says whether the library keeps
    anything more. ``pending.dry`` is True when it does not and ``pending`` holds nothing:
    until the socket's descriptor turns readable or the socket reports to its poller, another
    take would find nothing."""
    check_open(sock)
    with pending.lock:
        messages = pending.messages
        pending.dry = False
        if messages:
            return _pop(sock, messages)
        s = scratch()
        message = _receive(sock, s, messages, 0, _NOW)
        pending.dry = s.dry.value == 1 and not messages
        return message


def take_held(sock: Managed, pending: Pending) -> Optional[Tuple[Optional[bytes], bool, int, int]]:
    """For an event loop that holds ``sock`` (buffer ``pending``) and found it readable while
    its sends await acks: ``ipcez_socket_read_held_batch``, which reads what came and takes
    the next message and the acks in one call. (message or None, let go, acked, timed out);
    None, with nothing read, while ``pending`` holds messages (those come first)."""
    check_open(sock)
    with pending.lock:
        pending.dry = False  # the held read queues what it reads without reporting it
        if pending.messages:
            return None
        s = scratch()
        message = _receive(sock, s, pending.messages, 0, _HELD)
        return message, bool(s.let_go.value), s.acked.value, s.timed_out.value


def _receive(sock: Managed, s: Scratch, messages: Deque[bytes], wait_ms: int, how: int) -> Optional[bytes]:
    """One native batch receive (``how``: see :data:`_WAIT`) into ``s``: the first message,
    the others to ``messages`` (empty before); None when none came."""
    s.count.value = NOTHING
    s.first = None
    s.freed = False
    try:
        handle = sock._enter()  # s.call(), inlined: this is the per-message path
        try:
            if how == _NOW:
                rc = fast.ipcez_socket_take_batch(handle, *s.head, s.dry_ref, *s.tail)
            elif how == _HELD:
                rc = fast.ipcez_socket_read_held_batch(handle, *s.head, *s.held, *s.tail)
            else:
                s.wait.value = wait_ms
                rc = fast.ipcez_socket_recv_batch(handle, *s.head, s.wait, *s.tail)
        finally:
            sock._exit()
        if rc == _abi.RESULT_OK:
            if s.count.value == 1:  # the common case: a request, or its answer
                return s.view[: s.lens[0]].tobytes()
            return _unpack(s, messages)
    except BaseException:
        if s.holds_batch():
            _keep(sock, s, messages)
        raise
    if rc == _abi.RESULT_TIMEOUT:
        return None
    raise _errors.fail(rc, s.out.err)


def take_into(sock: Managed, pending: Pending, ptr: int, cap: int, wait_ms: int) -> Optional[int]:
    """:func:`take`, copied into caller memory (``ptr``, ``cap`` bytes): the message's
    length, or None when none came.  A message longer than ``cap`` stays first in line
    and its length is returned (``> cap``)."""
    check_open(sock)
    with pending.lock:
        messages = pending.messages
        pending.dry = False
        if messages:
            n = len(messages[0])
            if n <= cap:
                ctypes.memmove(ptr, _pop(sock, messages), n)
            return n
        s = scratch()
        s.count.value = NOTHING
        try:
            with sock._use() as handle:
                rc = s.call(handle, wait_ms)
            if rc == _abi.RESULT_OK:
                return _deliver_into(sock, s, messages, ptr, cap)
        except BaseException:
            if s.holds_batch():
                _keep(sock, s, messages)
            raise
        if rc == _abi.RESULT_TIMEOUT:
            return None
        raise _errors.fail(rc, s.out.err)


def _deliver_into(sock: Managed, s: Scratch, messages: Deque[bytes], ptr: int, cap: int) -> int:
    """The batch in ``s``: its first message into caller memory when it fits, the others
    (or all) to ``messages``; the first message's length."""
    count = s.count.value
    n = s.lens[0] if count else s.out.len.value
    if n <= cap:
        if count:
            ctypes.memmove(ptr, ctypes.addressof(s.array), n)
            messages.extend(_rest(s, count, n))
        else:  # a long message, straight from the library's buffer to the caller's
            ctypes.memmove(ptr, s.out.data.value or 0, n)
            s.freed = True
            lib.ipcez_message_free(s.out.msg)
        return n
    first = _unpack(s, messages)
    messages.appendleft(first)
    if count <= 1:  # the library does not count it as waiting yet
        _set_held(sock, True)
    return n


def _unpack(s: Scratch, into: Deque[bytes]) -> bytes:
    """The first message of the batch in ``s``; the others go to ``into`` (all at once)."""
    if s.count.value == 0:  # one message too long for the scratch buffer, on its own
        out = s.out
        s.first = ctypes.string_at(out.data.value or 0, out.len.value) if out.len.value else b""
        s.freed = True
        lib.ipcez_message_free(out.msg)
        return s.first
    n = s.lens[0]
    s.first = s.view[:n].tobytes()
    into.extend(_rest(s, s.count.value, n))
    return s.first


def _rest(s: Scratch, count: int, at: int) -> List[bytes]:
    """The batch's messages after the first (which ends at ``at``)."""
    lens = s.lens
    view = s.view
    out = []
    for i in range(1, count):
        n = lens[i]
        out.append(view[at : at + n].tobytes())
        at += n
    return out


def _keep(sock: Managed, s: Scratch, messages: Deque[bytes]) -> None:
    """The thread was interrupted after the library handed over the batch in ``s`` and
    before its first message was returned: whatever of it is not in ``messages`` yet goes
    there, in order, for the next receive (``messages`` was empty before the call)."""
    count = s.count.value
    first = s.first
    if first is None:
        if count:
            first = s.view[: s.lens[0]].tobytes()
        elif not s.freed:
            first = s.out.take()
        else:
            return  # copied into caller memory: the one message this cannot give back
    if count > 1 and not messages:
        messages.extend(_rest(s, count, s.lens[0]))
    if not messages or messages[0] is not first:
        messages.appendleft(first)
    _set_held(sock, True)


def _pop(sock: Managed, messages: Deque[bytes]) -> bytes:
    """The first buffered message; when it is the last, the library stops counting the
    batch as waiting."""
    msg = messages.popleft()
    if not messages:
        _set_held(sock, False)
    return msg


def _set_held(sock: Managed, held: bool) -> None:
    err = _ffi.error_p()
    try:
        with sock._use() as handle:
            lib.ipcez_socket_set_held(handle, held, ctypes.byref(err))
    except (_errors.ConnectionLost, _errors.ForkedError):
        pass  # closed meanwhile: nothing waits any more


def discard(pending: Pending) -> None:
    """Drops the buffered messages (the socket is closed: they can never be taken)."""
    pending.messages.clear()
