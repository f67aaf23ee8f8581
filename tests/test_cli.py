"""The command line: `ipcez which|listen|send|demo`, exit codes and messages."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest

from conftest import child_env

import ipcez
from ipcez import _cli, _cli_common

CLI = [sys.executable, "-m", "ipcez"]
ENV_NAMES = ("target", "os", "IPCEZ_TARGET", "IPCEZ_OS")


def cli_env(**changes: Optional[str]) -> Dict[str, str]:
    """child_env() (target=local os=linux from the autouse fixture) with changes; None removes."""
    env = child_env()
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def bare_env() -> Dict[str, str]:
    """An environment with none of target / os / IPCEZ_TARGET / IPCEZ_OS."""
    return cli_env(**{name: None for name in ENV_NAMES})


def run_cli(
    *args: str, env: Optional[Dict[str, str]] = None, input: Optional[str] = None, timeout: float = 20
) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [*CLI, *args],
        env=env if env is not None else cli_env(),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(*args: str, env: Optional[Dict[str, str]] = None) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [*CLI, *args],
        env=env if env is not None else cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class Lines:
    """Collects a child's stdout lines on a thread (no select/readline buffering pitfalls)."""

    def __init__(self, proc: "subprocess.Popen[str]") -> None:
        self.proc = proc
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.seen: List[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def until(self, match: Callable[[str], bool], timeout: float = 10) -> str:
        """The next line that matches (fails on EOF or timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError(f"no matching line; stdout so far={self.seen!r}")
            self.seen.append(line)
            if match(line):
                return line

    def finish(self, timeout: float = 10) -> "tuple[int, str, str]":
        """Wait for the child to exit: (returncode, whole stdout, stderr)."""
        returncode = self.proc.wait(timeout=timeout)
        self._thread.join(timeout=timeout)
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.seen.append(line)
        assert self.proc.stderr is not None
        return returncode, "".join(self.seen), self.proc.stderr.read()


def start_listener(*args: str) -> "tuple[Lines, str]":
    """Start `ipcez listen ARGS...`; returns its output reader and the address it reports."""
    lines = Lines(start_cli("listen", *args))
    try:
        line = lines.until(lambda s: s.startswith("listening on "))
    except AssertionError:
        stop(lines)
        raise
    return lines, line.split()[2]


def stop(lines: Lines) -> None:
    """Kill the child if it still runs (cleanup after a failure)."""
    if lines.proc.poll() is None:
        lines.proc.kill()
        lines.proc.wait(timeout=10)


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("ipcez: error: ")]
    assert len(errors) == 1, stderr
    for fragment in fragments:
        assert fragment in errors[0], stderr


# -- entry points and usage ------------------------------------------------------------


def test_main_is_importable_where_the_console_script_points() -> None:
    from ipcez.__main__ import main

    assert main is _cli.main


def test_help_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for word in ("which", "listen", "send", "demo", "examples:", "ipcez demo", "export target=local os=linux"):
        assert word in out
    for command in ("which", "listen", "send", "demo"):
        assert _cli.main([command, "--help"]) == 0
        assert "usage: ipcez " + command in capsys.readouterr().out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli.main([]) == 2
    assert "ipcez: error:" in capsys.readouterr().err


def test_usage_errors_exit_2() -> None:
    for args in (["frobnicate"], ["which"], ["listen", "/tmp/x.sock", "--count", "many"], ["send"]):
        proc = run_cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "ipcez: error:" in proc.stderr and "Traceback" not in proc.stderr


def test_version() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0 and ipcez.__version__ in proc.stdout


# -- which --------------------------------------------------------------------------------


def test_which_unix_names_the_variables(short_dir: Path) -> None:
    path = str(short_dir / "app.sock")
    proc = run_cli("which", path)
    assert proc.returncode == 0, proc.stderr
    assert "transport:  unix" in proc.stdout
    assert f"address:    {path}" in proc.stdout
    assert "target=local" in proc.stdout and "os=linux" in proc.stdout
    assert "IPCEZ_TARGET is unset" in proc.stdout
    ready, acked = ipcez.ack_names(path)
    assert ready in proc.stdout and acked in proc.stdout


def test_which_reports_the_variable_that_wins(short_dir: Path) -> None:
    proc = run_cli("which", str(short_dir / "a.sock"), env=cli_env(IPCEZ_OS=" Linux ", os="windows"))
    assert proc.returncode == 0, proc.stderr
    assert "from IPCEZ_OS=' Linux '; it wins over os='windows'" in proc.stdout


def test_which_websocket_needs_no_environment() -> None:
    proc = run_cli("which", "WS://example.org:8765/app", env=bare_env())
    assert proc.returncode == 0, proc.stderr
    assert "transport:  websocket" in proc.stdout
    assert "no environment variable is read" in proc.stdout
    assert proc.stderr == ""


def test_which_json(short_dir: Path) -> None:
    import json

    path = str(short_dir / "j.sock")
    proc = run_cli("which", "--json", path, env=cli_env(IPCEZ_TARGET="local"))
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["transport"] == "unix" and info["address"] == path
    assert info["environment"]["target"]["read_from"] == "IPCEZ_TARGET"
    assert info["environment"]["os"]["read_from"] == "os"
    assert info["ack_names"] == list(ipcez.ack_names(path))


@pytest.mark.parametrize(
    "changes, variable, fragment",
    [
        ({"target": None}, "`target`", "not set"),
        ({"os": None}, "`os`", "not set"),
        ({"target": "nearby"}, "`target`", '"nearby"'),
        ({"os": "solaris"}, "`os`", '"solaris"'),
        ({"IPCEZ_TARGET": "bogus"}, "`IPCEZ_TARGET`", '"bogus"'),
        ({"IPCEZ_OS": ""}, "`IPCEZ_OS`", '""'),
    ],
)
def test_which_detection_errors_exit_2(changes: Dict[str, Optional[str]], variable: str, fragment: str) -> None:
    proc = run_cli("which", "/tmp/ipcez-cli-which.sock", env=cli_env(**changes))
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert_one_line_error(proc.stderr, variable, fragment)
    # The library's guidance, with how to fix it, comes along.
    assert "export target=local os=linux" in proc.stderr


def test_which_remote_target_needs_a_url() -> None:
    proc = run_cli("which", "/tmp/ipcez-cli.sock", env=cli_env(target="remote"))
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "ws://")


def test_which_unsupported_combination_exit_2() -> None:
    proc = run_cli("which", "/tmp/ipcez-cli.sock", env=cli_env(os="windows"))
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "windows")


def test_which_empty_endpoint_exit_2() -> None:
    proc = run_cli("which", "")
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "empty")


@pytest.mark.parametrize("command", ["listen", "send"])
def test_listen_and_send_detection_errors_exit_2(command: str, short_dir: Path) -> None:
    path = short_dir / "nope.sock"
    proc = run_cli(command, str(path), "x", env=cli_env(target=None)) if command == "send" else run_cli(
        command, str(path), env=cli_env(target=None)
    )
    assert proc.returncode == 2, proc.stderr
    assert_one_line_error(proc.stderr, "`target`")
    assert not path.exists()


# -- send errors ----------------------------------------------------------------------------


def test_send_without_listener_exit_1(short_dir: Path) -> None:
    path = str(short_dir / "none.sock")
    proc = run_cli("send", path, "hello")
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr, path)
    debug = run_cli("--debug", "send", path, "hello")
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1].startswith("ipcez: error: ")
    after = run_cli("send", path, "hello", "--debug")  # --debug also after the command
    assert after.returncode == 1 and "Traceback" in after.stderr


def test_send_reports_a_missing_ack(short_dir: Path) -> None:
    """A peer that reads but never posts data_acked: RecipientAckTimeout, exit 1."""
    path = str(short_dir / "mute.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(path)
        server.listen()
        proc = run_cli("send", path, "hello", "--ack-timeout", "0.3", "--wait", "0")
        assert proc.returncode == 1
        assert_one_line_error(proc.stderr, "acknowledge")
    finally:
        server.close()


def test_send_bad_hex_exit_2(short_dir: Path) -> None:
    proc = run_cli("send", "--hex", str(short_dir / "x.sock"), "zz")
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "hex")


# -- listen + send ----------------------------------------------------------------------------


def test_listen_echo_with_send(short_dir: Path) -> None:
    path = str(short_dir / "echo.sock")
    listener, address = start_listener(path, "--echo")
    try:
        assert address == path
        sent = run_cli("send", path, "hello", "two words", "--wait", "1")
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.splitlines() == ["hello", "two words"]
        assert "acked in" in sent.stderr
        binary = run_cli("send", "--hex", path, "00ff10", "--wait", "1")
        assert binary.returncode == 0, binary.stderr
        assert "binary (3 B): 00 ff 10" in binary.stdout
        listener.until(lambda s: "binary (3 B): 00 ff 10" in s)
        listener.proc.send_signal(signal.SIGINT)
        code, out, err = listener.finish(timeout=10)
        assert code == 0, err
    finally:
        stop(listener)
    assert "#1 text (5 B): hello" in out or "text (5 B): hello" in out
    assert not os.path.exists(path)


def test_listen_count_exits_by_itself(short_dir: Path) -> None:
    path = str(short_dir / "count.sock")
    listener, _ = start_listener(path, "--count", "3")
    try:
        sent = run_cli("send", path, "--wait", "0", input="one\ntwo\r\nthree\n")
        assert sent.returncode == 0, sent.stderr
        code, out, err = listener.finish(timeout=10)
        assert code == 0, err
    finally:
        stop(listener)
    assert "text (3 B): one" in out and "text (3 B): two" in out and "text (5 B): three" in out
    assert "received 3 message(s)" in out
    assert not os.path.exists(path)


def test_listen_serves_several_clients_at_once(short_dir: Path) -> None:
    path = str(short_dir / "multi.sock")
    listener, _ = start_listener(path, "--echo", "--count", "2")
    try:
        first = ipcez.connect(path)
        second = ipcez.connect(path)
        with first, second:
            second.send(b"from the second")
            assert second.recv(timeout=5) == b"from the second"
            first.send(b"from the first")
            assert first.recv(timeout=5) == b"from the first"
        code, out, err = listener.finish(timeout=10)
        assert code == 0, err
    finally:
        stop(listener)
    assert "#1 connected" in out and "#2 connected" in out
    assert "#2 text (15 B): from the second" in out


def test_sigint_stops_listen_and_removes_the_socket_file(short_dir: Path) -> None:
    path = str(short_dir / "int.sock")
    listener, _ = start_listener(path)
    try:
        client = ipcez.connect(path)  # an open connection must not delay the exit
        assert os.path.exists(path)
        listener.proc.send_signal(signal.SIGINT)
        code, out, err = listener.finish(timeout=5)
        client.close()
    finally:
        stop(listener)
    assert code == 0, err
    assert "Traceback" not in err
    assert not os.path.exists(path)
    assert f"removed {path}" in out


def test_sigterm_also_removes_the_socket_file(short_dir: Path) -> None:
    path = str(short_dir / "term.sock")
    listener, _ = start_listener(path)
    try:
        listener.proc.send_signal(signal.SIGTERM)
        code, _, _ = listener.finish(timeout=5)
    finally:
        stop(listener)
    assert code == 0
    assert not os.path.exists(path)


def test_listen_websocket_port_0() -> None:
    listener, address = start_listener("ws://127.0.0.1:0/cli", "--echo", "--count", "1")
    try:
        assert address.startswith("ws://127.0.0.1:") and not address.startswith("ws://127.0.0.1:0/")
        sent = run_cli("send", address, "over ws", "--wait", "1", env=bare_env())
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.splitlines() == ["over ws"]
        code, out, err = listener.finish(timeout=10)
        assert code == 0, err
    finally:
        stop(listener)
    assert "connected (websocket)" in out


def test_listen_refuses_a_live_socket_and_a_regular_file(short_dir: Path) -> None:
    path = str(short_dir / "busy.sock")
    listener, _ = start_listener(path)
    try:
        second = run_cli("listen", path, timeout=10)
        assert second.returncode == 1
        assert_one_line_error(second.stderr)
    finally:
        listener.proc.send_signal(signal.SIGINT)
        stop(listener)
    regular = short_dir / "file.txt"
    regular.write_text("keep me")
    proc = run_cli("listen", str(regular), timeout=10)
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr)
    assert regular.read_text() == "keep me"


def test_listen_bad_count_exit_2(short_dir: Path) -> None:
    proc = run_cli("listen", str(short_dir / "c.sock"), "--count", "0")
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "--count")


# -- demo ---------------------------------------------------------------------------------------


def test_demo_needs_no_environment() -> None:
    started = time.monotonic()
    proc = run_cli("demo", env=bare_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 60
    out = proc.stdout
    assert "Unix domain socket" in out and "transport unix" in out
    assert "WebSocket" in out and "transport websocket" in out
    assert "1 MiB message: delivered intact" in out
    assert out.count("p50") >= 2 and out.count("p99") >= 2
    assert "socket file removed" in out
    # The temporary directory is gone too.
    demo_path = next(line.split("'")[1] for line in out.splitlines() if "which('/" in line)
    assert not os.path.exists(os.path.dirname(demo_path))
    assert "Traceback" not in proc.stderr


def test_demo_in_process_restores_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IPCEZ_TARGET", "remote")
    assert _cli.main(["demo", "--rounds", "5"]) == 0
    assert "5 round trips" in capsys.readouterr().out
    assert os.environ["IPCEZ_TARGET"] == "remote"
    assert "IPCEZ_OS" not in os.environ


# -- formatting -----------------------------------------------------------------------------------


def test_describe() -> None:
    assert _cli_common.describe(b"hello") == "text (5 B): hello"
    assert _cli_common.describe("grüße\n".encode()) == "text (8 B): grüße\\n"
    assert _cli_common.describe(b"") == "empty message (0 B)"
    assert _cli_common.describe(b"\x00\xff") == "binary (2 B): 00 ff"
    big = bytes(1024 * 1024)
    assert _cli_common.describe(big).startswith("binary (1 MiB): 00 00")
    assert _cli_common.describe(big).endswith(" ...")
    long_text = _cli_common.describe(b"a" * 1000)
    assert long_text.startswith("text (1000 B): aaa") and long_text.endswith(" ...")
    assert len(long_text) < 250
