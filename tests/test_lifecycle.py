"""Process-level behaviour, each in a child process so a crash or hang is a clean failure:
Ctrl-C in blocked calls, interpreter exit with open handles, use after close, a peer
killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any, List

import pytest

import ipcez

from conftest import python_child, run_python, wait_for_line

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _interrupt_and_time(proc: "subprocess.Popen[str]") -> float:
    wait_for_line(proc, "READY")
    time.sleep(0.3)  # let it settle into the blocking call
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("the child ignored Ctrl-C for 5 s")
    return time.monotonic() - t0


_KBI_TAIL = """
except KeyboardInterrupt:
    print("KBI", flush=True)
    sys.exit(42)
"""


#: A second thread blocked in recv first: the main thread then waits for the socket's receive
#: buffer (batched receives take a lock per socket), not in the library.
_OTHER_RECV = "threading.Thread(target=lambda: s.recv(), daemon=True).start()\n"


@pytest.mark.parametrize("before", ["", _OTHER_RECV], ids=["alone", "behind-another-recv"])
def test_ctrl_c_interrupts_blocked_recv(sock_path: str, before: str) -> None:
    with ipcez.listen(sock_path) as listener:
        proc = python_child(
            "import sys, threading, ipcez\n"
            "s = ipcez.connect(sys.argv[1])\n" + before +
            "print('READY', flush=True)\n"
            "try:\n"
            "    s.recv()\n" + _KBI_TAIL,
            sock_path,
        )
        peer = listener.accept(timeout=10)
        elapsed = _interrupt_and_time(proc)
        out, err = proc.communicate()
        assert proc.returncode == 42, (out, err)
        assert "KBI" in out
        assert elapsed < 1.0, f"KeyboardInterrupt took {elapsed:.2f} s"
        peer.close()


def test_ctrl_c_interrupts_blocked_accept(sock_path: str) -> None:
    proc = python_child(
        "import sys, ipcez\n"
        "l = ipcez.listen(sys.argv[1])\n"
        "print('READY', flush=True)\n"
        "try:\n"
        "    l.accept()\n" + _KBI_TAIL,
        sock_path,
    )
    elapsed = _interrupt_and_time(proc)
    out, err = proc.communicate()
    assert proc.returncode == 42, (out, err)
    assert elapsed < 1.0, f"KeyboardInterrupt took {elapsed:.2f} s"


def test_ctrl_c_interrupts_send_waiting_for_ack(sock_path: str) -> None:
    import socket

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(1)
    proc = python_child(
        "import sys, ipcez\n"
        "s = ipcez.connect(sys.argv[1], ack_timeout=60)\n"
        "print('READY', flush=True)\n"
        "try:\n"
        "    s.send(b'never acked')\n" + _KBI_TAIL,
        sock_path,
    )
    conn, _ = server.accept()
    try:
        elapsed = _interrupt_and_time(proc)
        out, err = proc.communicate()
        assert proc.returncode == 42, (out, err)
        assert elapsed < 1.0, f"KeyboardInterrupt took {elapsed:.2f} s"
    finally:
        conn.close()
        server.close()
        for name in ipcez.ack_names(sock_path):
            try:
                import posix_ipc

                posix_ipc.unlink_semaphore(name)
            except Exception:  # noqa: BLE001
                pass


def test_ctrl_c_interrupts_a_send_still_writing_to_a_peer_that_does_not_read(sock_path: str) -> None:
    """Regression: a 4 MiB send to a peer that reads nothing used to sit in one native call
    until the ack timeout (here 60 s) while it waited for room to write."""
    import socket

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(1)
    proc = python_child(
        "import sys, ipcez\n"
        "s = ipcez.connect(sys.argv[1], ack_timeout=60)\n"
        "print('READY', flush=True)\n"
        "try:\n"
        "    s.send(bytes(4 * 1024 * 1024))\n" + _KBI_TAIL,
        sock_path,
    )
    conn, _ = server.accept()  # never reads
    try:
        elapsed = _interrupt_and_time(proc)
        out, err = proc.communicate()
        assert proc.returncode == 42, (out, err)
        assert elapsed < 1.0, f"KeyboardInterrupt took {elapsed:.2f} s"
    finally:
        conn.close()
        server.close()


def test_ctrl_c_interrupts_a_hanging_websocket_handshake() -> None:
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # accepts TCP, never answers the HTTP upgrade
    port = server.getsockname()[1]
    proc = python_child(
        "import sys, ipcez\n"
        "print('READY', flush=True)\n"
        "try:\n"
        "    ipcez.connect(sys.argv[1])\n" + _KBI_TAIL,
        f"ws://127.0.0.1:{port}/x",
    )
    try:
        elapsed = _interrupt_and_time(proc)
        out, err = proc.communicate()
        assert proc.returncode == 42, (out, err)
        assert elapsed < 1.0, f"KeyboardInterrupt took {elapsed:.2f} s"
    finally:
        server.close()


def test_interpreter_exit_with_open_handles(sock_path: str) -> None:
    code = """
        import sys, threading, ipcez, asyncio
        import ipcez.aio
        path = sys.argv[1]
        listener = ipcez.listen(path)
        a = ipcez.connect(path)
        b = listener.accept(timeout=5)
        c = ipcez.connect(path)
        d = listener.accept(timeout=5)
        b.message_handler(lambda m: None)      # a handler thread is live
        threading.Thread(target=c.recv, daemon=True).start()   # a thread blocked in recv
        threading.Thread(target=listener.accept, daemon=True).start()  # and one in accept
        a.send(b"x")

        async def main():
            s = await ipcez.aio.connect(path)
            asyncio.get_running_loop().create_task(s.recv())  # an aio reader thread
            await asyncio.sleep(0.1)
            return s
        keep = asyncio.run(main())
        print("EXITING", flush=True)
        # no close() anywhere: atexit and the finalizers must cope
    """
    t0 = time.monotonic()
    result = run_python(code, sock_path, timeout=15)
    elapsed = time.monotonic() - t0
    assert result.returncode == 0, result.stderr
    assert "EXITING" in result.stdout
    assert "Fatal" not in result.stderr and "Segmentation" not in result.stderr, result.stderr
    assert elapsed < 8, f"exit took {elapsed:.1f} s"
    assert not os.path.exists(sock_path), "the atexit hook closed the listener (and removed its file)"


def test_use_after_close_never_crashes(sock_path: str) -> None:
    code = """
        import gc, sys, ipcez
        path = sys.argv[1]
        listener = ipcez.listen(path)
        s = ipcez.connect(path)
        p = listener.accept(timeout=5)
        s.close(); p.close(); listener.close()
        failures = []
        def expect_lost(fn, *args):
            try:
                fn(*args)
            except ipcez.ConnectionLost:
                return
            except BaseException as e:
                failures.append(f"{fn}: {e!r}")
            else:
                failures.append(f"{fn}: no error")
        for _ in range(100):
            expect_lost(s.send, b"x")
            expect_lost(s.recv)
            expect_lost(s.recv, 0)
            expect_lost(s.message_handler, print)
            expect_lost(listener.accept)
            expect_lost(listener.accept, 0)
            assert list(s) == [] and list(listener) == []
            assert s.closed and p.closed and listener.closed
            s.close(); listener.close(); s.disconnect()
            repr(s); repr(listener); s.endpoint; s.transport; listener.address
        del s, p, listener
        gc.collect()
        print("FAILURES", failures)
        print("OK")
    """
    result = run_python(code, sock_path, timeout=30)
    assert result.returncode == 0, f"child died with {result.returncode}: {result.stderr}"
    assert "FAILURES []" in result.stdout, result.stdout
    assert "OK" in result.stdout


def test_close_racing_with_calls_in_threads(sock_path: str) -> None:
    code = """
        import sys, threading, ipcez
        path = sys.argv[1]
        listener = ipcez.listen(path)
        for round in range(20):
            s = ipcez.connect(path)
            p = listener.accept(timeout=5)
            p.message_handler(lambda m: None)
            def hammer():
                for _ in range(50):
                    try:
                        s.send(b"y" * 100)
                    except ipcez.SocketError:
                        return
            def reader():
                while True:
                    try:
                        s.recv(0.01)
                    except TimeoutError:
                        continue
                    except ipcez.SocketError:
                        return
            ts = [threading.Thread(target=hammer) for _ in range(4)]
            ts.append(threading.Thread(target=reader))
            for t in ts: t.start()
            s.close()
            p.close()
            for t in ts: t.join(10)
        listener.close()
        print("OK")
    """
    result = run_python(code, sock_path, timeout=60)
    assert result.returncode == 0, f"child died with {result.returncode}: {result.stderr}"
    assert "OK" in result.stdout


@pytest.mark.parametrize("use_handler", [False, True])
def test_peer_killed_gives_connection_lost_promptly(sock_path: str, use_handler: bool) -> None:
    with ipcez.listen(sock_path) as listener:
        proc = python_child(
            """
            import sys, time, ipcez
            s = ipcez.connect(sys.argv[1])
            print("READY", flush=True)
            time.sleep(60)
            """,
            sock_path,
        )
        try:
            peer = listener.accept(timeout=10)
            wait_for_line(proc, "READY")
            events: List[Any] = []
            import threading

            got = threading.Event()
            if use_handler:

                def handler(m: Any) -> None:
                    events.append((time.monotonic(), m))
                    got.set()

                peer.message_handler(handler)
            time.sleep(0.1)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGKILL)
            if use_handler:
                assert got.wait(2), "the handler never heard of the loss"
                when, err = events[0]
                assert isinstance(err, ipcez.ConnectionLost)
                delay = when - t0
            else:
                with pytest.raises(ipcez.ConnectionLost):
                    peer.recv(timeout=2)
                delay = time.monotonic() - t0
            assert delay < 0.5, f"connection loss noticed after {delay:.3f} s (the bound is 50 ms)"
            peer.close()
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()  # type: ignore[union-attr]
            proc.stderr.close()  # type: ignore[union-attr]


def test_python_m_ipcez_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ipcez"],
        capture_output=True,
        text=True,
        timeout=20,
        env=__import__("conftest").child_env(),
    )
    assert result.returncode == 2
    assert "usage" in (result.stdout + result.stderr).lower()
