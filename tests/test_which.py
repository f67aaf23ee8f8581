"""Transport selection: which(), the detection errors, ack_names(),
and the exception hierarchy."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import socket
from pathlib import Path

import pytest

import ipcez

from conftest import run_python


# -- the exception hierarchy ---------------------------------------------------


@pytest.mark.parametrize(
    "cls, bases",
    [
        (ipcez.SocketError, (Exception,)),
        (ipcez.IoError, (ipcez.SocketError, OSError)),
        (ipcez.ConnectionLost, (ipcez.IoError, ConnectionResetError, OSError)),
        (ipcez.MessageTooLarge, (ipcez.IoError, ValueError, OSError)),
        (ipcez.WsError, (ipcez.SocketError,)),
        (ipcez.UnsupportedCombination, (ipcez.SocketError,)),
        (ipcez.DetectionError, (ipcez.SocketError, ValueError)),
        (ipcez.RecipientAckTimeout, (ipcez.SocketError, TimeoutError)),
    ],
)
def test_exception_hierarchy(cls: type, bases: tuple) -> None:
    for base in bases:
        assert issubclass(cls, base), f"{cls.__name__} is not a subclass of {base.__name__}"
    assert cls.__doc__


def test_io_error_constructs_like_oserror() -> None:
    e = ipcez.IoError(errno.ENOENT, "no such socket")
    assert e.errno == errno.ENOENT
    assert e.strerror == "no such socket"
    assert "no such socket" in str(e)
    lost = ipcez.ConnectionLost(errno.ECONNRESET, "connection lost")
    assert isinstance(lost, ConnectionResetError) and lost.errno == errno.ECONNRESET


@pytest.mark.parametrize(
    "number, builtin",
    [
        (errno.ENOENT, FileNotFoundError),
        (errno.ECONNREFUSED, ConnectionRefusedError),
        (errno.EACCES, PermissionError),
        (errno.EPIPE, BrokenPipeError),
        (errno.ETIMEDOUT, TimeoutError),
    ],
)
def test_io_error_is_the_errno_builtin_like_oserror(number: int, builtin: type) -> None:
    import pickle

    e = ipcez.IoError(number, "text")
    assert isinstance(e, builtin) and isinstance(e, ipcez.IoError)
    assert type(e).__name__ == "IoError"
    again = pickle.loads(pickle.dumps(e))
    assert isinstance(again, builtin) and again.args == e.args
    plain = ipcez.IoError(errno.EADDRINUSE, "in use")
    assert not isinstance(plain, builtin)


def test_detail_attributes_on_constructed_errors() -> None:
    u = ipcez.UnsupportedCombination("nope", "local", "windows")
    assert (u.target, u.os) == ("local", "windows")
    d = ipcez.DetectionError("missing", "target")
    assert d.variable == "target"


# -- which ---------------------------------------------------------------------


def test_which_local_linux_is_unix(sock_path: str) -> None:
    r = ipcez.which(sock_path)
    assert r.transport == "unix"
    assert r.address == sock_path
    assert isinstance(r, ipcez.Resolution)
    with pytest.raises(Exception):
        r.transport = "websocket"  # type: ignore[misc]  # frozen


def test_which_accepts_pathlike(sock_path: str) -> None:
    assert ipcez.which(Path(sock_path)).address == sock_path


@pytest.mark.parametrize("url", ["ws://127.0.0.1:9/x", "WS://example.com/", "wss://example.com:443/p", "WsS://h/"])
def test_which_websocket_ignores_environment(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("target")
    monkeypatch.delenv("os")
    monkeypatch.setenv("IPCEZ_OS", "garbage")  # not even read
    r = ipcez.which(url)
    assert r.transport == "websocket"
    assert r.address.lower().startswith(url.split(":")[0].lower())


def test_values_are_case_insensitive_and_trimmed(monkeypatch: pytest.MonkeyPatch, sock_path: str) -> None:
    monkeypatch.setenv("target", "  LoCaL ")
    monkeypatch.setenv("os", "\tLINUX\n")
    assert ipcez.which(sock_path).transport == "unix"


@pytest.mark.parametrize("variable", ["target", "os"])
def test_missing_variable(variable: str, monkeypatch: pytest.MonkeyPatch, sock_path: str) -> None:
    monkeypatch.delenv(variable)
    with pytest.raises(ipcez.DetectionError) as info:
        ipcez.which(sock_path)
    e = info.value
    assert isinstance(e, ValueError) and isinstance(e, ipcez.SocketError)
    assert e.variable.lower().endswith(variable), e.variable
    assert variable in str(e)
    with pytest.raises(ipcez.DetectionError):
        ipcez.connect(sock_path)


@pytest.mark.parametrize("variable, bad, allowed", [("target", "cloud", ("local", "remote")), ("os", "macos", ("linux", "windows"))])
def test_invalid_variable(variable: str, bad: str, allowed: tuple, monkeypatch: pytest.MonkeyPatch, sock_path: str) -> None:
    monkeypatch.setenv(variable, bad)
    with pytest.raises(ipcez.DetectionError) as info:
        ipcez.which(sock_path)
    e = info.value
    assert e.variable.lower().endswith(variable)
    message = str(e)
    assert bad in message, message
    for value in allowed:
        assert value in message, message


def test_detection_guidance_printed_once_to_stderr(sock_path: str) -> None:
    # In a fresh process: the guidance (with how to fix it) is printed once, not per call.
    code = """
        import os, sys, ipcez
        os.environ.pop("target", None); os.environ.pop("IPCEZ_TARGET", None)
        for _ in range(3):
            try:
                ipcez.which(sys.argv[1])
            except ipcez.DetectionError as e:
                print("DetectionError", e.variable)
    """
    result = run_python(code, sock_path)
    assert result.stdout.split() == ["DetectionError", "target"] * 3, result.stdout
    err = result.stderr
    assert "target" in err, f"guidance goes to stderr; got {err!r}"
    assert "local" in err and "remote" in err, err
    assert "export" in err or "set" in err, f"the guidance says how to fix it: {err!r}"
    first = err.split("\n")[0]
    assert err.count(first) == 1, f"printed more than once: {err!r}"


def test_prefixed_variable_wins(monkeypatch: pytest.MonkeyPatch, sock_path: str) -> None:
    monkeypatch.setenv("target", "remote")
    monkeypatch.setenv("IPCEZ_TARGET", "local")
    monkeypatch.setenv("os", "windows")
    monkeypatch.setenv("IPCEZ_OS", "Linux")
    assert ipcez.which(sock_path).transport == "unix"


def test_env_source_names_the_variable_the_library_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    from ipcez._resolve import env_source

    monkeypatch.delenv("IPCEZ_TARGET", raising=False)
    monkeypatch.delenv("target", raising=False)
    assert env_source("target") is None
    monkeypatch.setenv("target", "remote")
    assert env_source("target") == ("target", "remote")
    monkeypatch.setenv("IPCEZ_TARGET", "local")
    assert env_source("target") == ("IPCEZ_TARGET", "local")
    with pytest.raises(ipcez.IoError, match="unknown setting"):
        env_source("colour")


def test_prefixed_variable_wins_even_when_invalid(monkeypatch: pytest.MonkeyPatch, sock_path: str) -> None:
    monkeypatch.setenv("IPCEZ_OS", "beos")
    with pytest.raises(ipcez.DetectionError) as info:
        ipcez.which(sock_path)
    assert info.value.variable.lower().endswith("os")
    assert "beos" in str(info.value)


def test_remote_with_non_url(monkeypatch: pytest.MonkeyPatch, sock_path: str) -> None:
    monkeypatch.setenv("target", "remote")
    with pytest.raises(ipcez.DetectionError) as info:
        ipcez.which(sock_path)
    assert "ws://" in str(info.value) and "wss://" in str(info.value)
    with pytest.raises(ipcez.DetectionError):
        ipcez.connect(sock_path)


def test_local_windows_on_linux_is_unsupported(monkeypatch: pytest.MonkeyPatch, sock_path: str) -> None:
    monkeypatch.setenv("os", "Windows")
    with pytest.raises(ipcez.UnsupportedCombination) as info:
        ipcez.which(sock_path)
    assert info.value.target == "local"
    assert info.value.os == "windows"
    with pytest.raises(ipcez.UnsupportedCombination):
        ipcez.connect(sock_path)
    with pytest.raises(ipcez.UnsupportedCombination):
        ipcez.listen(sock_path)


@pytest.mark.parametrize("endpoint", ["", "/tmp/a\0b", "\0"])
def test_empty_or_nul_endpoint_is_einval(endpoint: str) -> None:
    for fn in (ipcez.which, ipcez.connect, ipcez.listen, ipcez.ack_names):
        with pytest.raises(ipcez.IoError) as info:
            fn(endpoint)  # type: ignore[operator]
        assert info.value.errno == errno.EINVAL, (fn.__name__, info.value)
        assert isinstance(info.value, OSError)


def test_endpoint_type_is_checked() -> None:
    with pytest.raises(TypeError):
        ipcez.which(42)  # type: ignore[arg-type]


# -- ack_names -----------------------------------------------------------------


def _expected_names(path: str) -> tuple:
    """The rule, written independently: realpath (symlinks and ``..`` resolved), then the
    file name as the tag and SHA-256 of the canonical path as the hash."""
    canonical = os.path.realpath(path)
    tag = re.sub(rb"[^A-Za-z0-9_-]", b"_", os.path.basename(canonical).encode())[:32].decode()
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return f"/ipcez.{tag}.{digest}.data_ready", f"/ipcez.{tag}.{digest}.data_acked"


def test_ack_names_follow_spec(short_dir: Path) -> None:
    path = str(short_dir / "my sock.v1+x.sock")
    assert ipcez.ack_names(path) == _expected_names(path)


def test_ack_names_long_file_name_is_cut_to_32(short_dir: Path) -> None:
    path = str(short_dir / ("n" * 60))
    ready, acked = ipcez.ack_names(path)
    assert ready.split(".")[1] == "n" * 32
    assert (ready, acked) == _expected_names(path)


def test_ack_names_relative_path_is_made_canonical(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(short_dir)
    (short_dir / "sub").mkdir()
    expected = _expected_names(os.path.join(os.getcwd(), "rel.sock"))
    for spelling in ("rel.sock", "./rel.sock", f"{os.getcwd()}//rel.sock", "sub/../rel.sock", "nosuch/../rel.sock"):
        assert ipcez.ack_names(spelling) == expected, spelling


def test_ack_names_are_the_same_for_every_spelling_of_a_socket(short_dir: Path) -> None:
    """A symlinked directory, ``..`` and a symlink to the socket file itself: one socket,
    one pair of names — before the socket exists (a listener about to bind) and after."""
    real = short_dir / "real"
    real.mkdir()
    (short_dir / "sub").mkdir()
    os.symlink(real, short_dir / "linkdir")
    target = str(real / "app.sock")
    spellings = [str(short_dir / "linkdir" / "app.sock"), str(short_dir / "sub" / ".." / "real" / "app.sock")]
    expected = _expected_names(target)
    for s in spellings:
        assert ipcez.ack_names(s) == expected, s
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        srv.bind(target)
        os.symlink(target, short_dir / "file-link.sock")
        for s in spellings + [str(short_dir / "file-link.sock")]:
            assert ipcez.ack_names(s) == expected, s
    finally:
        srv.close()


def test_ack_names_need_no_environment(monkeypatch: pytest.MonkeyPatch, sock_path: str) -> None:
    for var in ("os", "target", "IPCEZ_OS", "IPCEZ_TARGET"):
        monkeypatch.delenv(var, raising=False)
    assert ipcez.ack_names(sock_path) == _expected_names(sock_path)
    assert ipcez.ack_names(r"\\.\pipe\app") == (r"Global\app.data_ready", r"Global\app.data_acked")
