"""Logging: Rust's records reach ``logging.getLogger("ipcez")`` and its children, and the
detection guidance goes through ``sys.stderr``, never straight to file descriptor 2."""

from __future__ import annotations

import logging
import os

import pytest

from conftest import run_python

from ipcez import _log


def test_rust_targets_map_to_children_of_the_ipcez_logger() -> None:
    assert _log.logger_name("ipcez") == "ipcez"
    assert _log.logger_name("ipcez::listener") == "ipcez.listener"
    assert _log.logger_name("ipcez::ws::server") == "ipcez.ws.server"
    assert _log.logger_name("rustls::conn") == "ipcez.rustls.conn"


def test_the_package_logger_is_silent_until_configured() -> None:
    handlers = logging.getLogger("ipcez").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers), handlers


def test_detection_guidance_goes_through_sys_stderr_once() -> None:
    # sys.stderr replaced in-process: the guidance lands there, and fd 2 stays empty.
    code = """
        import io, os, sys
        os.environ.pop("target", None); os.environ.pop("IPCEZ_TARGET", None)
        import ipcez
        captured = io.StringIO()
        real, sys.stderr = sys.stderr, captured
        try:
            for _ in range(3):
                try:
                    ipcez.connect("/tmp/ipcez-no-such.sock")
                except ipcez.DetectionError as e:
                    pass
        finally:
            sys.stderr = real
        print(repr(captured.getvalue()))
    """
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", f"written to fd 2 behind Python's back: {result.stderr!r}"
    text = eval(result.stdout)  # the repr printed above
    assert "export target=local os=linux" in text, text
    assert text.count("a local endpoint needs") == 1, f"printed more than once: {text!r}"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_a_child_forked_while_records_flow_logs_and_exits() -> None:
    """Garbage handshakes make a steady stream of debug records while the process forks up to 30
    times. Each child makes records of its own and exits normally (atexit replaces the
    callback): none hangs on a lock a parent thread held at the fork (they did before the
    log queue and the callback's lock were made per process)."""
    code = r"""
        import logging, os, signal, socket, sys, threading, time
        import ipcez

        seen = []
        class Keep(logging.Handler):
            def emit(self, record):
                seen.append(record.getMessage())
        logging.getLogger("ipcez").addHandler(Keep())
        logging.getLogger("ipcez").setLevel(logging.DEBUG)

        def garbage(listener):
            port = int(listener.address.rsplit(":", 1)[1].split("/")[0])
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
                try:
                    s.recv(100)
                except OSError:
                    pass

        def wait(pid):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    return status
                time.sleep(0.005)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "hung"

        stop = threading.Event()
        with ipcez.listen("ws://127.0.0.1:0/x") as listener:
            def hammer():
                while not stop.is_set():
                    garbage(listener)
            for _ in range(2):
                threading.Thread(target=hammer, daemon=True).start()
            deadline = time.monotonic() + 10
            while not seen and time.monotonic() < deadline:
                time.sleep(0.01)
            assert seen, "no record came from the native side"
            failed = []
            forks, end = 0, time.monotonic() + 25  # well within the run's 60 s watchdog
            while forks < 30 and time.monotonic() < end:
                forks += 1
                pid = os.fork()
                if pid == 0:
                    signal.alarm(8)  # a hang is a kill, seen below
                    before = len(seen)
                    with ipcez.listen("ws://127.0.0.1:0/child") as own:
                        garbage(own)
                        end = time.monotonic() + 5
                        while len(seen) == before and time.monotonic() < end:
                            time.sleep(0.005)
                    sys.exit(0 if len(seen) > before else 3)  # 3: the child's record never came
                status = wait(pid)
                if status != 0:
                    failed.append(status)
                    break
            stop.set()
        print("failed children:", failed, "forks:", forks)
    """
    result = run_python(code, timeout=50)
    assert result.returncode == 0, result.stderr
    failed, forks = result.stdout.split("forks:")
    assert failed.strip() == "failed children: []", result.stdout
    assert int(forks) >= 10, result.stdout
