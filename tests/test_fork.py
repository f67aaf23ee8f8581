"""Processes and fork: children connect anew, inherited objects are detached, the parent is
never harmed; stuck message handlers bound close() and interpreter exit.

Every scenario runs in a subprocess of its own with a hard timeout, so a hang or a crash
fails the test instead of stalling the run (or killing pytest itself).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, List

import pytest

import ipcez

from conftest import child_env

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")

#: Helpers every scenario script starts with.
PRELUDE = '''
import gc, logging, os, sys, threading, time
import ipcez

def sem_files(endpoint):
    """The files behind the endpoint's two named semaphores (Linux keeps them in /dev/shm)."""
    return ["/dev/shm/sem." + name.lstrip("/") for name in ipcez.ack_names(endpoint)]

def resources_intact(endpoint):
    assert os.path.exists(endpoint), "the socket file is gone"
    for f in sem_files(endpoint):
        assert os.path.exists(f), f + " is gone"

def wait_child(pid, timeout=15.0):
    """The child's exit code; kills it and fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            assert os.WIFEXITED(status), "child died: status %#x" % status
            return os.WEXITSTATUS(status)
        time.sleep(0.005)
    os.kill(pid, 9)
    raise AssertionError("child %d hung" % pid)

def expect_forked(call, *args):
    try:
        call(*args)
    except ipcez.ForkedError as e:
        assert isinstance(e, ipcez.SocketError)
        assert "created before fork; connect again in the child" in str(e), str(e)
        return
    raise AssertionError("%r did not raise ForkedError" % (call,))

def exchange_as_child(endpoint, tag=b"child"):
    """Connect anew and talk to serve_one(). The child has the last word and then waits for
    the parent to hang up: a process that exits, or a side that closes, right after taking
    a message may do so before the library acked it, and the peer's send then fails."""
    s = ipcez.connect(endpoint)
    s.send(b"hello from " + tag)
    assert s.recv(timeout=10) == b"pong"
    s.send(b"done")
    try:
        s.recv(timeout=10)
    except ipcez.ConnectionLost:
        pass
    else:
        raise AssertionError("expected the parent to hang up")
    s.close()

def serve_one(listener, tag=b"child"):
    peer = listener.accept(timeout=10)
    assert peer.recv(timeout=10) == b"hello from " + tag
    peer.send(b"pong")
    assert peer.recv(timeout=10) == b"done"
    peer.close()

def pair(listener, endpoint):
    client = ipcez.connect(endpoint)
    return client, listener.accept(timeout=5)

def round_trip(a, b, data=b"ping"):
    a.send(data)
    assert b.recv(timeout=5) == data
    b.send(data[::-1])
    assert a.recv(timeout=5) == data[::-1]
'''


def run_scenario(tmp_path: Path, body: str, timeout: float = 60, name: str = "scenario.py") -> "subprocess.CompletedProcess[str]":
    """Run PRELUDE + ``body`` as a script (a file, so multiprocessing can import it)."""
    script = tmp_path / name
    script.write_text(PRELUDE + textwrap.dedent(body))
    env = child_env({"target": "local", "os": "linux"})
    for var in ("IPCEZ_TARGET", "IPCEZ_OS"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "s.sock")],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "FATAL" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture
def tmp(short_dir: Path) -> Path:
    return short_dir


def test_child_connects_anew_and_inherited_objects_are_detached(tmp: Path) -> None:
    proc = run_scenario(
        tmp,
        """
        endpoint = sys.argv[1]
        records = []
        class Keep(logging.Handler):
            def emit(self, record):
                records.append(record)
        logging.getLogger("ipcez").addHandler(Keep())

        listener = ipcez.listen(endpoint)
        client, server = pair(listener, endpoint)
        round_trip(client, server)
        got = []
        server.message_handler(got.append)  # a live handler thread at fork time
        client.send(b"before fork")
        # An asyncio socket whose reader thread is running at fork time.
        import asyncio, ipcez.aio
        aio_client, aio_server = pair(listener, endpoint)
        aio_peer = ipcez.aio.AsyncSocket(aio_server)
        async def warm_up():
            aio_client.send(b"aio")
            assert await aio_peer.recv(timeout=5) == b"aio"
            # A receive that waits on the held socket leaves it held, and the library
            # saying it keeps nothing more: the child's receive would not look first.
            waiting = asyncio.ensure_future(aio_peer.recv(timeout=5))
            await asyncio.sleep(0.05)
            await asyncio.to_thread(aio_client.send, b"held")
            assert await waiting == b"held"
            assert aio_peer._sock._pending.dry and aio_peer._read_fd >= 0
        asyncio.run(warm_up())

        pid = os.fork()
        if pid == 0:
            async def use_inherited_aio():
                for call in (lambda: aio_peer.recv(timeout=1), lambda: aio_peer.send(b"x")):
                    try:
                        await call()
                    except ipcez.ForkedError:
                        continue
                    raise AssertionError("an inherited AsyncSocket did not raise ForkedError")
                await aio_peer.close()
            asyncio.run(use_inherited_aio())
            expect_forked(client.send, b"x")
            expect_forked(client.recv, 1)
            expect_forked(server.message_handler, print)
            expect_forked(listener.accept, 1)
            assert client.closed and server.closed
            assert any("created before fork" in r.getMessage() for r in records), records
            exchange_as_child(endpoint)
            listener2 = ipcez.listen(endpoint + ".child")  # the child's own listener works
            c2, s2 = pair(listener2, endpoint + ".child")
            round_trip(c2, s2)
            c2.close(); s2.close(); listener2.close()
            sys.exit(0)  # a normal exit: atexit hooks run in the child

        serve_one(listener)
        assert wait_child(pid) == 0
        client.send(b"after fork")
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert got == [b"before fork", b"after fork"], got
        resources_intact(endpoint)
        # New clients are still served.
        c3, s3 = pair(listener, endpoint)
        round_trip(c3, s3)
        print("ok")
        """,
    )
    assert proc.stdout.strip().endswith("ok")


def test_child_that_closes_inherited_objects_leaves_the_parent_alone(tmp: Path) -> None:
    run_scenario(
        tmp,
        """
        endpoint = sys.argv[1]
        listener = ipcez.listen(endpoint)
        client, server = pair(listener, endpoint)
        round_trip(client, server)
        for mode in ("close", "collect", "exit", "os._exit"):
            pid = os.fork()
            if pid == 0:
                if mode == "close":
                    client.close(); server.close(); listener.close()
                    client.close()  # still idempotent
                    expect_forked(client.send, b"x")
                elif mode == "collect":
                    del client, server, listener
                    gc.collect()
                if mode == "os._exit":
                    os._exit(0)
                sys.exit(0)
            assert wait_child(pid) == 0, mode
            round_trip(client, server, mode.encode())
            resources_intact(endpoint)
            c, s = pair(listener, endpoint)
            round_trip(c, s)
            c.close(); s.close()
        listener.close()
        assert not os.path.exists(endpoint), "the parent's own close still cleans up"
        print("ok")
        """,
    )


def test_fork_made_by_c_code_is_caught_by_the_library(tmp: Path) -> None:
    # libc's fork() straight from C: Python's own fork hooks do not run, the library's do.
    run_scenario(
        tmp,
        """
        import ctypes
        endpoint = sys.argv[1]
        listener = ipcez.listen(endpoint)
        client, server = pair(listener, endpoint)
        pid = ctypes.CDLL(None, use_errno=True).fork()
        if pid == 0:
            code = 0
            try:
                client.send(b"x")
                code = 2
            except ipcez.ForkedError:
                pass
            client.close(); server.close(); listener.close()
            os._exit(code)
        assert pid > 0
        assert wait_child(pid) == 0
        round_trip(client, server)
        resources_intact(endpoint)
        print("ok")
        """,
    )


def test_grandchild_connects_to_the_grandparent(tmp: Path) -> None:
    run_scenario(
        tmp,
        """
        endpoint = sys.argv[1]
        listener = ipcez.listen(endpoint)
        client, server = pair(listener, endpoint)
        pid = os.fork()
        if pid == 0:
            exchange_as_child(endpoint, b"child")  # the child uses ipcez, then forks
            mine = ipcez.connect(endpoint)
            grandchild = os.fork()
            if grandchild == 0:
                expect_forked(mine.send, b"x")
                expect_forked(client.send, b"x")
                exchange_as_child(endpoint, b"grandchild")
                sys.exit(0)
            code = wait_child(grandchild)
            mine.send(b"child still fine")
            mine.close()
            sys.exit(code)
        serve_one(listener, b"child")
        child_conn = listener.accept(timeout=10)
        serve_one(listener, b"grandchild")
        assert child_conn.recv(timeout=10) == b"child still fine"
        assert wait_child(pid) == 0
        round_trip(client, server)
        resources_intact(endpoint)
        print("ok")
        """,
    )


POOL_BODY = """
import multiprocessing

MESSAGES = 1000

def worker(n):
    s = ipcez.connect(ENDPOINT)
    for i in range(MESSAGES):
        data = b"%d:%d" % (n, i)
        s.send(data)
        assert s.recv(timeout=10) == data
    s.close()
    return n

def echo(sock):
    def on_message(m):
        if isinstance(m, bytes):
            try:
                sock.send(m)
            except ipcez.ConnectionLost:
                pass  # the worker took its last reply and left before acking it
    sock.message_handler(on_message)

ENDPOINT = sys.argv[1]

if __name__ == "__main__":
    method = os.environ["START_METHOD"]
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["ipcez"])
    listener = ipcez.listen(ENDPOINT)
    client, server = pair(listener, ENDPOINT)  # live objects at every fork
    stop = threading.Event()
    served = []
    def accept_loop():
        while not stop.is_set():
            try:
                peer = listener.accept(timeout=0.1)
            except TimeoutError:
                continue
            served.append(peer)
            echo(peer)
    t = threading.Thread(target=accept_loop, daemon=True)
    t.start()
    for round_no in range(ROUNDS):
        with ctx.Pool(4) as pool:
            assert sorted(pool.map(worker, range(4))) == [0, 1, 2, 3]
        round_trip(client, server, b"round %d" % round_no)
    stop.set()
    t.join()
    resources_intact(ENDPOINT)
    for peer in served:
        peer.close()
    print("served", len(served))
"""


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_pool_workers_connect_to_the_parent(tmp: Path, method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import multiprocessing

    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    rounds = 20 if method == "fork" else 3
    monkeypatch.setenv("START_METHOD", method)
    proc = run_scenario(tmp, POOL_BODY.replace("ROUNDS", str(rounds)), timeout=120, name="pool.py")
    assert proc.stdout.split() == ["served", str(4 * rounds)]


def test_parent_keeps_sending_while_children_fork_and_exit(tmp: Path) -> None:
    run_scenario(
        tmp,
        """
        endpoint = sys.argv[1]
        # The parent's own traffic, on an endpoint of its own.
        own = ipcez.listen(endpoint + ".own")
        client, server = pair(own, endpoint + ".own")
        listener = ipcez.listen(endpoint)
        stop = threading.Event()
        counts = {"sent": 0, "got": 0}
        def send():
            while not stop.is_set():
                client.send(b"%d" % counts["sent"])
                counts["sent"] += 1
            client.send(b"end")
        def receive():
            while True:
                m = server.recv(timeout=10)
                if m == b"end":
                    return
                assert m == b"%d" % counts["got"], (m, counts)
                counts["got"] += 1
        threads = [threading.Thread(target=send), threading.Thread(target=receive)]
        for t in threads:
            t.start()
        for run in range(RUNS):
            pid = os.fork()
            if pid == 0:
                if run % 3 == 0:
                    exchange_as_child(endpoint)
                elif run % 3 == 1:
                    expect_forked(client.send, b"x")
                    client.close(); server.close()
                sys.exit(0)
            if run % 3 == 0:
                serve_one(listener)
            assert wait_child(pid) == 0, run
        stop.set()
        for t in threads:
            t.join(20)
            assert not t.is_alive()
        assert counts["got"] == counts["sent"] > 0, counts
        resources_intact(endpoint)
        resources_intact(endpoint + ".own")
        print("ok")
        """.replace("RUNS", "50"),
    )


# ---- stuck message handlers ---------------------------------------------------------


@pytest.fixture
def pair(sock_path: str) -> Any:
    with ipcez.listen(sock_path) as listener:
        client = ipcez.connect(sock_path)
        server = listener.accept(timeout=5)
        yield client, server
        client.close()
        server.close()


def test_close_returns_soon_despite_a_stuck_handler(pair: Any) -> None:
    client, server = pair
    calls: List[Any] = []
    entered = threading.Event()
    gate = threading.Event()

    def handler(m: Any) -> None:
        calls.append(m)
        if m == b"block":
            entered.set()
            gate.wait(30)

    server.message_handler(handler)
    client.send(b"block")
    client.send(b"queued behind the stuck call")
    assert entered.wait(5)
    start = time.monotonic()
    server.close()
    elapsed = time.monotonic() - start
    gate.set()  # the stuck call returns now ...
    time.sleep(0.3)
    assert calls == [b"block"], "... and the handler gets no further call"
    assert elapsed < 1.5, f"close() took {elapsed:.2f} s"
    with pytest.raises(ipcez.ConnectionLost):
        server.send(b"x")


STUCK_EXIT = """
endpoint = sys.argv[1]
mode = os.environ["STUCK_MODE"]
listener = ipcez.listen(endpoint)
entered = threading.Semaphore(0)
def stuck(m):
    entered.release()
    if mode == "busy":
        while True:
            pass
    elif mode == "naps":
        while True:
            time.sleep(0.001)
    else:
        threading.Event().wait()
keep = []
for _ in range(3):  # several stuck handlers still share one 2 s grace
    c, s = pair(listener, endpoint)
    s.message_handler(stuck)
    c.send(b"x")
    keep += [c, s]
for _ in range(3):
    assert entered.acquire(timeout=5)
print("exiting", flush=True)
sys.exit(3)
"""


@pytest.mark.parametrize("mode", ["busy", "naps", "wait"])
def test_interpreter_exit_with_stuck_handlers(tmp: Path, mode: str) -> None:
    script = tmp / "stuck.py"
    script.write_text(PRELUDE + STUCK_EXIT)
    env = child_env({"target": "local", "os": "linux", "STUCK_MODE": mode})
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp / "s.sock")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        assert line.strip() == "exiting", line + (proc.stderr.read() if proc.stderr else "")
        start = time.monotonic()
        proc.wait(timeout=10)
        elapsed = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 3, (proc.returncode, stderr)
    assert "FATAL" not in stderr and "Fatal" not in stderr, stderr
    assert elapsed < 2.5, f"exit took {elapsed:.2f} s"
