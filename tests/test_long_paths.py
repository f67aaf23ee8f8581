"""Unix socket paths longer than a socket address holds (107 bytes).

Regression: ``listen()`` on such a path succeeded (the socket is bound in a private
directory and linked into place) but every ``connect()`` failed with "path must be shorter
than SUN_LEN", so a server started that no client could ever reach. Now both sides reach a
long path through a descriptor of its directory, and a path neither can reach (a file name
too long for that) is refused by both, with the same advice.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ipcez

from conftest import child_env, python_child, wait_for_line

posix_ipc = pytest.importorskip("posix_ipc", reason="pip install posix_ipc")


def long_dir(base: Path, total: int = 180) -> Path:
    """A directory under ``base`` whose path makes ``<dir>/s.sock`` about ``total`` bytes."""
    d = base / ("d" * max(1, total - len(str(base)) - 8))
    d.mkdir()
    return d


def test_a_long_path_listens_connects_and_acks(short_dir: Path) -> None:
    path = str(long_dir(short_dir) / "s.sock")
    assert len(path) > 107
    with ipcez.listen(path) as lst, ipcez.connect(path) as client:
        server = lst.accept(timeout=5)
        client.send(b"over a long path")            # returns on the server's ack
        assert server.recv(timeout=5) == b"over a long path"
        server.send(b"and back")
        assert client.recv(timeout=5) == b"and back"
        # which() and ack_names() speak of the same path; the listener made those names.
        assert ipcez.which(path).address == path
        for name in ipcez.ack_names(path):
            posix_ipc.Semaphore(name).close()       # exists: the listener created it
    assert not os.path.exists(path), "close removes the socket file"


def test_a_long_relative_path_from_another_directory(short_dir: Path) -> None:
    d = long_dir(short_dir)
    with ipcez.listen(str(d / "s.sock")) as lst:
        proc = subprocess.run(
            [sys.executable, "-c", "import ipcez,sys; s=ipcez.connect(sys.argv[1]); s.send(b'rel'); s.close()",
             os.path.relpath(d / "s.sock", short_dir)],
            cwd=short_dir, env=child_env(), capture_output=True, text=True, timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        assert lst.accept(timeout=5).recv(timeout=5) == b"rel"


def test_another_process_reaches_a_long_path_and_acks_both_ways(short_dir: Path) -> None:
    path = str(long_dir(short_dir, 250) / "s.sock")
    with ipcez.listen(path) as lst:
        child = python_child(
            """
            import sys, ipcez
            with ipcez.connect(sys.argv[1]) as s:
                s.send(b"ping")
                print("sent", flush=True)
                assert s.recv(timeout=10) == b"pong"
                print("done", flush=True)
            """,
            path,
        )
        try:
            wait_for_line(child, "sent", timeout=20)
            peer = lst.accept(timeout=5)
            assert peer.recv(timeout=5) == b"ping"
            peer.send(b"pong")                      # returns once the child has read it
            wait_for_line(child, "done", timeout=20)
            assert child.wait(timeout=10) == 0
        finally:
            child.kill()
            child.wait()


def test_the_cli_sends_to_a_long_path(short_dir: Path) -> None:
    path = str(long_dir(short_dir) / "s.sock")
    with ipcez.listen(path) as lst:
        proc = subprocess.run(
            [sys.executable, "-m", "ipcez", "send", path, "hello"],
            env=child_env(), capture_output=True, text=True, timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        assert lst.accept(timeout=5).recv(timeout=5) == b"hello"


def test_a_file_name_too_long_to_reach_is_refused_by_both_sides_alike(short_dir: Path) -> None:
    path = str(short_dir / ("n" * 120))
    with pytest.raises(ipcez.IoError) as on_listen:
        ipcez.listen(path)
    with pytest.raises(ipcez.IoError) as on_connect:
        ipcez.connect(path)
    for info in (on_listen, on_connect):
        text = str(info.value)
        assert "more than the 107" in text and "use a shorter path" in text, text
        assert info.value.errno == errno.EINVAL, text
    assert not os.path.exists(path), "nothing was left behind"
    assert not [p for p in os.listdir(short_dir) if p.startswith(".ipcez-bind-")]


def test_a_stale_socket_at_a_long_path_is_replaced(short_dir: Path) -> None:
    path = str(long_dir(short_dir) / "s.sock")
    child = python_child(
        """
        import os, sys, ipcez
        kept = ipcez.listen(sys.argv[1])
        print("listening", flush=True)
        os.kill(os.getpid(), 9)                     # dies without removing its file
        """,
        path,
    )
    try:
        wait_for_line(child, "listening", timeout=20)
        child.wait(timeout=10)
    finally:
        child.kill()
    assert os.path.exists(path), "the killed listener left its socket file"
    with ipcez.listen(path) as lst, ipcez.connect(path) as c:
        c.send(b"after a stale file")
        assert lst.accept(timeout=5).recv(timeout=5) == b"after a stale file"
