"""message_handler: delivery on a background thread, queued messages first, exactly one
final error, exceptions to sys.unraisablehook, the trampoline's lifetime."""

from __future__ import annotations

import gc
import queue
import sys
import threading
import time
from typing import Any, List, Tuple

import pytest

import ipcez
from ipcez import _handler


def _collect(q: "queue.Queue[Any]", n: int, timeout: float = 5) -> List[Any]:
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        out.append(q.get(timeout=max(0.01, deadline - time.monotonic())))
    return out


def test_handler_gets_messages_on_a_background_thread(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, server = pair
    q: "queue.Queue[Any]" = queue.Queue()
    main = threading.get_ident()

    def on_message(m: Any) -> None:
        q.put((m, threading.get_ident()))

    assert server.message_handler(on_message) is on_message
    for i in range(5):
        client.send(b"m%d" % i)
    got = _collect(q, 5)
    assert [m for m, _ in got] == [b"m%d" % i for i in range(5)]
    assert all(tid != main for _, tid in got)
    assert all(type(m) is bytes for m, _ in got)


def test_messages_before_registration_come_first(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, server = pair
    for i in range(10):
        client.send(b"early%d" % i)  # acked, so already read and queued on the server side
    q: "queue.Queue[Any]" = queue.Queue()
    server.message_handler(q.put)
    for i in range(3):
        client.send(b"late%d" % i)
    got = _collect(q, 13)
    assert got == [b"early%d" % i for i in range(10)] + [b"late%d" % i for i in range(3)]


def test_exactly_one_final_error_then_silence(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, server = pair
    q: "queue.Queue[Any]" = queue.Queue()
    server.message_handler(q.put)
    client.send(b"last words")
    client.close()
    first, second = _collect(q, 2)
    assert first == b"last words"
    assert isinstance(second, ipcez.ConnectionLost)
    assert isinstance(second, ConnectionResetError)
    time.sleep(0.3)
    assert q.empty(), "nothing after the final error"


def test_close_delivers_final_error_before_returning(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    _, server = pair
    got: List[Any] = []
    server.message_handler(got.append)
    server.close()
    assert len(got) == 1 and isinstance(got[0], ipcez.ConnectionLost)
    with pytest.raises(ipcez.ConnectionLost):
        server.message_handler(got.append)


def test_registry_slot_is_freed_after_final_call(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    _, server = pair
    before = _handler.registered_count()
    server.message_handler(lambda m: None)
    assert _handler.registered_count() == before + 1
    server.close()
    assert _handler.registered_count() == before


def test_callback_exception_goes_to_unraisablehook(
    pair: Tuple[ipcez.Socket, ipcez.Socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, server = pair
    reports: List[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", reports.append)
    q: "queue.Queue[Any]" = queue.Queue()

    def handler(m: Any) -> None:
        if m == b"boom":
            raise RuntimeError("handler failure")
        if m == b"interrupt":
            raise KeyboardInterrupt  # BaseException must not escape into C either
        q.put(m)

    server.message_handler(handler)
    client.send(b"before")
    client.send(b"boom")
    client.send(b"interrupt")
    client.send(b"after")
    assert _collect(q, 2) == [b"before", b"after"], "the reader goes on after an exception"
    assert len(reports) == 2
    assert reports[0].exc_type is RuntimeError
    assert isinstance(reports[0].exc_value, RuntimeError)
    assert "ipcez" in reports[0].err_msg
    assert reports[0].object is handler
    assert reports[1].exc_type is KeyboardInterrupt


def test_default_unraisablehook_accepts_our_report(
    pair: Tuple[ipcez.Socket, ipcez.Socket], capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression guard: CPython's default hook rejects anything but UnraisableHookArgs;
    # the report must still print the traceback, not "sys.unraisablehook argument type ...".
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)
    client, server = pair
    q: "queue.Queue[Any]" = queue.Queue()

    def handler(m: Any) -> None:
        q.put(m)
        raise ValueError("visible in stderr")

    server.message_handler(handler)
    client.send(b"x")
    q.get(timeout=5)
    time.sleep(0.1)
    err = capfd.readouterr().err
    assert "ValueError: visible in stderr" in err
    assert "Exception ignored in ipcez message handler" in err


def test_second_registration_fails(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    _, server = pair
    server.message_handler(lambda m: None)
    before = _handler.registered_count()
    with pytest.raises(ipcez.SocketError):
        server.message_handler(lambda m: None)
    assert _handler.registered_count() == before, "a refused callback is not kept"


def test_recv_while_handler_set_fails(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    _, server = pair
    server.message_handler(lambda m: None)
    with pytest.raises(ipcez.SocketError):
        server.recv(timeout=0.2)


def test_handler_must_be_callable(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    with pytest.raises(TypeError):
        pair[1].message_handler(42)  # type: ignore[arg-type]


def test_handler_can_reply_and_close_from_inside(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    client, server = pair
    got: "queue.Queue[Any]" = queue.Queue()

    def echo(m: Any) -> None:
        got.put(m)
        if isinstance(m, bytes):
            if m == b"bye":
                server.close()  # from the handler thread: must not deadlock
            else:
                server.send(m.upper())  # re-entering the library from the callback

    server.message_handler(echo)
    client.send(b"hello")
    assert client.recv(timeout=5) == b"HELLO"
    client.send(b"bye")
    items = _collect(got, 3)
    assert items[:2] == [b"hello", b"bye"]
    assert isinstance(items[2], ipcez.ConnectionLost)
    with pytest.raises(ipcez.ConnectionLost):
        client.recv(timeout=2)


def test_handler_survives_gc_of_everything_but_the_socket(pair: Tuple[ipcez.Socket, ipcez.Socket]) -> None:
    # The trampoline and the callback must stay alive while Rust may call them,
    # even when the caller keeps no reference to the callback.
    client, server = pair
    q: "queue.Queue[Any]" = queue.Queue()
    server.message_handler(lambda m: q.put(m))
    gc.collect()
    client.send(b"still called")
    assert q.get(timeout=5) == b"still called"


def test_socket_dropped_with_handler_set(sock_path: str) -> None:
    with ipcez.listen(sock_path) as listener:
        client = ipcez.connect(sock_path)
        server = listener.accept(timeout=5)
        q: "queue.Queue[Any]" = queue.Queue()
        server.message_handler(q.put)
        client.send(b"one")
        assert q.get(timeout=5) == b"one"
        del server
        gc.collect()
        final = q.get(timeout=5)
        assert isinstance(final, ipcez.ConnectionLost)
        with pytest.raises(ipcez.ConnectionLost):
            client.recv(timeout=2)
        client.close()


def test_two_handlers_closing_each_others_sockets_do_not_deadlock(short_dir: Any) -> None:
    """Regression: a handler that closed another socket whose handler was, at the same time,
    closing this one used to deadlock both threads (each waited for the other to finish).
    Run in a subprocess: a deadlock would otherwise hang the test process at exit."""
    from conftest import run_python

    code = '''
import os, sys, threading, ipcez
d = sys.argv[1]
done = threading.Barrier(3, timeout=10)
with ipcez.listen(os.path.join(d, "a.sock")) as la, ipcez.listen(os.path.join(d, "b.sock")) as lb:
    a = ipcez.connect(os.path.join(d, "a.sock")); pa = la.accept(timeout=5)
    b = ipcez.connect(os.path.join(d, "b.sock")); pb = lb.accept(timeout=5)
    both_in = threading.Barrier(2, timeout=10)
    def make(other):
        def on(msg):
            if isinstance(msg, bytes):
                both_in.wait()        # both handlers are running now
                other.close()         # ... and each closes the other's socket
                done.wait()
        return on
    a.message_handler(make(b))
    b.message_handler(make(a))
    pa.send(b"go")
    pb.send(b"go")
    done.wait()
print("no deadlock")
'''
    r = run_python(code, str(short_dir), timeout=30)
    assert r.returncode == 0 and "no deadlock" in r.stdout, (r.returncode, r.stdout, r.stderr)
