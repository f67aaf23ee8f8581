"""Listener behaviour on Unix sockets and connect errors with errno."""

from __future__ import annotations

import errno
import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

import ipcez

from conftest import run_python


def test_connect_to_missing_path_is_enoent(sock_path: str) -> None:
    with pytest.raises(ipcez.IoError) as info:
        ipcez.connect(sock_path)
    assert info.value.errno == errno.ENOENT
    assert isinstance(info.value, FileNotFoundError), "the README promises `except FileNotFoundError`"


def test_connect_to_dead_socket_is_econnrefused(sock_path: str) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sock_path)  # bound, never listening: nothing answers
    s.close()
    with pytest.raises(ipcez.IoError) as info:
        ipcez.connect(sock_path)
    assert info.value.errno == errno.ECONNREFUSED
    assert isinstance(info.value, ConnectionRefusedError)
    assert "nothing listens on it" in str(info.value)


def test_listen_in_a_missing_directory_says_so(short_dir: Path) -> None:
    with pytest.raises(ipcez.IoError) as info:
        ipcez.listen(str(short_dir / "no-such-dir" / "x.sock"))
    assert info.value.errno == errno.ENOENT
    assert "does its directory exist?" in str(info.value), info.value
    assert "listener running" not in str(info.value)  # (the hint for a client)


def test_address_mode_and_cleanup(sock_path: str) -> None:
    listener = ipcez.listen(sock_path)
    assert listener.address == sock_path
    st = os.stat(sock_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    listener.close()
    assert not os.path.exists(sock_path), "the listener removes its socket file on close"
    listener.close()  # idempotent
    assert listener.closed


def test_custom_mode(sock_path: str) -> None:
    with ipcez.listen(sock_path, mode=0o640):
        assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o640


@pytest.mark.parametrize("mode", [-1, 0o10000, "600", True])
def test_bad_mode(mode: object, sock_path: str) -> None:
    with pytest.raises(ValueError):
        ipcez.listen(sock_path, mode=mode)  # type: ignore[arg-type]


def test_live_socket_is_addr_in_use(sock_path: str) -> None:
    with ipcez.listen(sock_path):
        with pytest.raises(ipcez.IoError) as info:
            ipcez.listen(sock_path)
        assert info.value.errno == errno.EADDRINUSE
        assert str(info.value)
        assert os.path.exists(sock_path), "a live socket is never removed"
        with ipcez.connect(sock_path):
            pass


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="named semaphores shown in /dev/shm")
def test_two_listeners_racing_for_a_path_leave_the_winner_whole(sock_path: str) -> None:
    """Exactly one of two simultaneous listens wins, and its ack semaphores stay in place."""
    sems = ["/dev/shm/sem." + n.lstrip("/") for n in ipcez.ack_names(sock_path)]
    lock_file = os.path.join(os.path.dirname(sock_path), "." + os.path.basename(sock_path) + ".lock")
    broken = []
    for round_ in range(300):
        barrier = threading.Barrier(2)
        won: "list[ipcez.Listener]" = []
        lost: "list[BaseException]" = []

        def race() -> None:
            barrier.wait(timeout=5)
            try:
                won.append(ipcez.listen(sock_path))
            except ipcez.IoError as e:
                lost.append(e)

        threads = [threading.Thread(target=race) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert not any(t.is_alive() for t in threads), "a listen hung"
        assert len(won) == 1, (round_, won, lost)
        assert [getattr(e, "errno", None) for e in lost] == [errno.EADDRINUSE], lost
        if not all(os.path.exists(f) for f in sems):
            broken.append(round_)
        won[0].close()
    assert broken == [], f"the winner's semaphores were removed in rounds {broken}"
    assert not os.path.exists(lock_file), "the lock file goes with the listener"


def test_a_live_socket_with_a_full_backlog_is_addr_in_use_at_once(sock_path: str) -> None:
    """A raw listener that never accepts, its backlog full: listen fails at once, no hang."""
    code = """
import errno, socket, sys, time
import ipcez
path = sys.argv[1]
busy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
busy.bind(path)
busy.listen(0)
clients = []
for _ in range(4096):
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.setblocking(False)
    rc = c.connect_ex(path)
    if rc != 0:
        assert rc == errno.EAGAIN, rc
        break
    clients.append(c)
t = time.monotonic()
try:
    ipcez.listen(path)
except ipcez.IoError as e:
    print(e.errno == errno.EADDRINUSE, time.monotonic() - t < 1)
"""
    out = run_python(code, sock_path, timeout=10)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"], out.stdout
    assert os.path.exists(sock_path), "the live socket is left alone"


def test_stale_socket_file_is_replaced(sock_path: str) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sock_path)
    s.close()
    with ipcez.listen(sock_path) as listener:
        with ipcez.connect(sock_path) as c:
            peer = listener.accept(timeout=5)
            c.send(b"hi")
            assert peer.recv(timeout=5) == b"hi"
            peer.close()


def test_regular_file_is_left_untouched(sock_path: str) -> None:
    Path(sock_path).write_bytes(b"precious")
    with pytest.raises(ipcez.IoError):
        ipcez.listen(sock_path)
    assert Path(sock_path).read_bytes() == b"precious"


def test_directory_is_left_untouched(short_dir: Path) -> None:
    d = short_dir / "dir"
    d.mkdir()
    (d / "keep").write_text("x")
    with pytest.raises(ipcez.IoError):
        ipcez.listen(str(d))
    assert (d / "keep").exists()


def test_accept_timeout(sock_path: str) -> None:
    with ipcez.listen(sock_path) as listener:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError) as info:
            listener.accept(timeout=0.3)
        assert type(info.value) is TimeoutError
        assert 0.25 <= time.monotonic() - t0 < 1.5
        with pytest.raises(TimeoutError):
            listener.accept(timeout=0)


def test_closed_listener_accept_is_connection_lost(sock_path: str) -> None:
    listener = ipcez.listen(sock_path)
    listener.close()
    with pytest.raises(ipcez.ConnectionLost):
        listener.accept()
    with pytest.raises(ipcez.ConnectionLost):
        listener.accept(timeout=0)
    assert list(listener) == []


def test_close_from_another_thread_ends_iteration(sock_path: str) -> None:
    listener = ipcez.listen(sock_path)
    accepted = []

    def client() -> None:
        for _ in range(3):
            c = ipcez.connect(sock_path)
            c.send(b"hi")  # one that ended with nothing sent would be skipped by accept
            c.close()
        time.sleep(0.2)
        listener.close()

    t = threading.Thread(target=client)
    t.start()
    t0 = time.monotonic()
    for sock in listener:
        accepted.append(sock)
    t.join(5)
    assert len(accepted) == 3
    assert all(s.transport == "unix" for s in accepted)
    assert time.monotonic() - t0 < 5
    for s in accepted:
        s.close()


def test_accepted_sockets_survive_listener_close(sock_path: str) -> None:
    listener = ipcez.listen(sock_path)
    client = ipcez.connect(sock_path)
    peer = listener.accept(timeout=5)
    listener.close()
    client.send(b"still here")
    assert peer.recv(timeout=5) == b"still here"
    client.close()
    peer.close()


def test_listener_repr_and_pathlike(sock_path: str) -> None:
    with ipcez.listen(Path(sock_path)) as listener:
        assert sock_path in repr(listener)


def test_a_closed_websocket_listener_refuses_at_once() -> None:
    """Regression: close() aborted the accept loop without waiting for it, so the listening
    socket lived a moment longer; a connect in that window was accepted, then reset
    (ConnectionLost instead of ECONNREFUSED, about 1 in 10 here)."""
    import errno as errno_mod

    outcomes = []
    for _ in range(200):
        lst = ipcez.listen("ws://127.0.0.1:0/x")
        address = lst.address
        lst.close()
        try:
            ipcez.connect(address).close()
            outcomes.append("connected")
        except ipcez.IoError as e:
            outcomes.append("refused" if e.errno == errno_mod.ECONNREFUSED else repr(e))
    assert set(outcomes) == {"refused"}, [o for o in outcomes if o != "refused"][:3]
