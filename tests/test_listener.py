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
