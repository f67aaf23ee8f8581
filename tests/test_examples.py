"""Every script in examples/ runs as written, terminates by itself and exits 0."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from conftest import ROOT, child_env

EXAMPLES = ROOT / "examples"
TIMEOUT = 30


def run_example(
    name: str, *args: str, env: Optional[Dict[str, str]] = None, cwd: Optional[Path] = None
) -> "subprocess.CompletedProcess[str]":
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        env=env if env is not None else child_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def bare_env() -> Dict[str, str]:
    """No target/os at all: the examples must still run as written."""
    env = child_env()
    for name in ("target", "os", "IPCEZ_TARGET", "IPCEZ_OS", "IPCEZ_ENDPOINT"):
        env.pop(name, None)
    return env


def test_every_example_is_covered_and_documented() -> None:
    names = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert names == sorted(
        [
            "aio_chat.py",
            "custom_peer.py",
            "echo_client.py",
            "echo_server.py",
            "request_response.py",
            "same_script.py",
        ]
    )
    for name in names:
        doc = ast.get_docstring(ast.parse((EXAMPLES / name).read_text(encoding="utf-8")))
        assert doc and f"python examples/{name}" in doc, f"{name}: the docstring must say how to run it"


def test_echo_server_and_client(short_dir: Path) -> None:
    endpoint = str(short_dir / "echo.sock")
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "echo_server.py"), endpoint, "--clients", "2", "--idle", "20"],
        env=bare_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == f"listening on {endpoint}"
        outputs: List[str] = [run_example("echo_client.py", endpoint, env=bare_env()).stdout for _ in range(2)]
        out, err = server.communicate(timeout=TIMEOUT)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate(timeout=10)
    assert server.returncode == 0, err
    for output in outputs:
        assert "over unix" in output and output.count("echoed back") == 3
    assert "client 1: disconnected" in out and "client 2: disconnected" in out
    assert not Path(endpoint).exists()


def test_echo_client_starts_its_own_server(short_dir: Path) -> None:
    out = run_example("echo_client.py", str(short_dir / "auto.sock"), env=bare_env()).stdout
    assert "starting examples/echo_server.py" in out and out.count("echoed back") == 3


def test_echo_client_over_websocket() -> None:
    out = run_example("echo_client.py", "ws://127.0.0.1:0/echo", env=bare_env()).stdout
    assert "over websocket" in out and out.count("echoed back") == 3


def test_echo_server_gives_up_when_idle(short_dir: Path) -> None:
    out = run_example("echo_server.py", str(short_dir / "idle.sock"), "--idle", "0.3").stdout
    assert "no client for 0.3 s" in out


@pytest.mark.parametrize("args", [(), ("ws://127.0.0.1:0/rpc",)])
def test_request_response(args: tuple) -> None:
    out = run_example("request_response.py", *args, env=bare_env()).stdout
    assert "add(2, 3) = 5" in out
    assert "timed out as expected" in out
    assert "dropping the late response" in out
    assert "add(40, 2) = 42" in out


@pytest.mark.parametrize("args", [(), ("ws://127.0.0.1:0/chat",)])
def test_aio_chat(args: tuple) -> None:
    out = run_example("aio_chat.py", *args, env=bare_env()).stdout
    assert "[alice] bob says: bye" in out and "[bob] alice says: bye" in out
    assert "Bob exited with status 0" in out


def test_same_script_local_and_remote(short_dir: Path) -> None:
    local = child_env({"IPCEZ_ENDPOINT": str(short_dir / "same.sock")})
    out = run_example("same_script.py", env=local).stdout
    assert "over unix" in out and "'PING'" in out
    remote = bare_env()
    remote["IPCEZ_ENDPOINT"] = "ws://127.0.0.1:0/same"
    out = run_example("same_script.py", env=remote).stdout
    assert "over websocket" in out and "'PING'" in out


def test_custom_peer(short_dir: Path) -> None:
    pytest.importorskip("posix_ipc")
    out = run_example("custom_peer.py", env=bare_env(), cwd=short_dir).stdout
    assert out.count("ipcez client: sent") == 3
    assert "reply: 'you sent 300000 bytes'" in out
    # A relative path works too (the ack names are computed from the absolute path).
    out = run_example("custom_peer.py", "peer.sock", env=bare_env(), cwd=short_dir).stdout
    assert out.count("ipcez client: sent") == 3
    assert not (short_dir / "peer.sock").exists()
