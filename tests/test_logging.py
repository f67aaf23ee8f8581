"""Logging: Rust's records reach ``logging.getLogger("ipcez")`` and its children, and the
detection guidance goes through ``sys.stderr``, never straight to file descriptor 2."""

from __future__ import annotations

import logging

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
