"""Shared fixtures: library location, a clean environment per test, short socket paths,
subprocess helpers and a watchdog so that a hang fails fast instead of stalling CI."""

from __future__ import annotations

import faulthandler
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Dict, Iterator, List, Optional, Tuple

import pytest

if TYPE_CHECKING:
    import ipcez

ROOT = Path(__file__).resolve().parent.parent
PYTHON_DIR = ROOT / "python"
HEADER = ROOT / "rust" / "ipcez-ffi" / "include" / "ipcez.h"

_in_package = [PYTHON_DIR / "ipcez" / n for n in ("_ipcez_ffi.so", "_ipcez_ffi.dylib", "_ipcez_ffi.dll")]


def pytest_report_header() -> Optional[str]:
    """Warns when the library in the package is older than a cargo build: the tests would
    run the old code (``python build.py test`` copies the new one in)."""
    if "IPCEZ_LIBRARY" in os.environ:
        return None
    packaged = [p for p in _in_package if p.exists()]
    built = [ROOT / "rust" / "target" / prof / "libipcez_ffi.so" for prof in ("debug", "release")]
    newer = [b for b in built if b.exists() and packaged and b.stat().st_mtime > packaged[0].stat().st_mtime]
    if not newer:
        return None
    return (
        f"WARNING: {packaged[0].relative_to(ROOT)} is older than {newer[0].relative_to(ROOT)}: "
        "these tests load the older one; run `python build.py test` or set IPCEZ_LIBRARY"
    )


if "IPCEZ_LIBRARY" not in os.environ and not any(p.exists() for p in _in_package):
    for profile in ("debug", "release"):
        candidate = ROOT / "rust" / "target" / profile / "libipcez_ffi.so"
        if candidate.exists():
            os.environ["IPCEZ_LIBRARY"] = str(candidate)
            break

# The per-message native calls skip ctypes' argument conversion (``_ffi.fast``); in the
# tests (and their child processes) each checks its arguments' types instead.
os.environ.setdefault("IPCEZ_FFI_STRICT", "1")

if str(PYTHON_DIR) not in sys.path:
    sys.path.insert(0, str(PYTHON_DIR))


def _missing_test_requirements() -> List[str]:
    """The test section of requirements-dev.txt that this environment does not satisfy.

    They are not optional: a missing one would silently skip whole modules (WebSocket,
    reliability, raw protocol), so the run stops instead and says what to install."""
    from importlib import metadata

    from packaging.requirements import InvalidRequirement, Requirement

    path = ROOT / "requirements-dev.txt"
    if not path.is_file():  # tests/ copied somewhere without it
        return []
    missing = []
    section = ""
    for raw in path.read_text().splitlines():
        if raw.startswith("# ---"):
            section = raw
        line = raw.split("#", 1)[0].strip()
        if not line or not section.startswith("# --- tests"):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            missing.append(str(req))
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            missing.append(f"{req} (found {version})")
    return missing


def pytest_configure(config: pytest.Config) -> None:
    missing = _missing_test_requirements()
    if missing:
        raise pytest.UsageError(
            f"missing test dependencies: {', '.join(missing)}\n"
            f"install them with: {sys.executable} -m pip install -r requirements-dev.txt"
        )


# A shell starts background jobs with SIGINT ignored, and children inherit that through
# exec: the Ctrl-C tests would then see children that cannot be interrupted. Give the
# children the disposition a terminal gives them.
if hasattr(signal, "SIGINT") and signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: Seconds before a single test is declared hung (the whole run then stops with a traceback dump).
WATCHDOG_SECONDS = float(os.environ.get("IPCEZ_TEST_WATCHDOG", "60"))
#: Where that dump goes. Not to fd 2: pytest captures it, and what it captured is lost when
#: the watchdog ends the process. `python build.py test` prints this file when pytest fails.
WATCHDOG_LOG = Path(
    os.environ.get("IPCEZ_TEST_WATCHDOG_LOG") or Path(tempfile.gettempdir()) / f"ipcez-test-watchdog-{os.getpid()}.log"
)
_watchdog_file: Optional[IO[str]] = None


def pytest_unconfigure() -> None:
    """A run that ended normally leaves no watchdog file behind."""
    if _watchdog_file is not None:
        _watchdog_file.close()
        WATCHDOG_LOG.unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def _watchdog(request: pytest.FixtureRequest) -> Iterator[None]:
    global _watchdog_file
    if _watchdog_file is None:
        _watchdog_file = open(WATCHDOG_LOG, "w", encoding="utf-8")
    f = _watchdog_file
    f.seek(0)
    f.truncate()
    # Left in the file when the process ends in the test: a hang adds the stacks below it.
    f.write(f"pytest ended while running {request.node.nodeid} (a hang of over {WATCHDOG_SECONDS:g} s shows the stacks below)\n")
    f.flush()
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True, file=f)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        f.seek(0)
        f.truncate()


@pytest.fixture(autouse=True)
def local_linux_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with target=local, os=linux and no IPCEZ_* overrides."""
    monkeypatch.delenv("IPCEZ_TARGET", raising=False)
    monkeypatch.delenv("IPCEZ_OS", raising=False)
    monkeypatch.setenv("target", "local")
    monkeypatch.setenv("os", "linux")


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A fresh directory with a short path (AF_UNIX paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="ipz-", dir="/tmp" if os.path.isdir("/tmp") else None))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sock_path(short_dir: Path) -> str:
    """A socket path of this test's own."""
    return str(short_dir / "s.sock")


@pytest.fixture
def pair(sock_path: str) -> Iterator[Tuple["ipcez.Socket", "ipcez.Socket"]]:
    """A connected (client, server) pair over a Unix socket, closed afterwards."""
    import ipcez

    with ipcez.listen(sock_path) as listener:
        client = ipcez.connect(sock_path)
        server = listener.accept(timeout=5)
        try:
            yield client, server
        finally:
            client.close()
            server.close()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) that process ``pid`` has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment for a Python child process that imports ipcez from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(PYTHON_DIR)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def python_child(code: str, *args: str, **popen_kwargs: object) -> "subprocess.Popen[str]":
    """Start ``python -c code args...`` with :func:`child_env`, text pipes."""
    return subprocess.Popen(  # type: ignore[call-overload]
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen_kwargs,
    )


def run_python(code: str, *args: str, timeout: float = 20) -> "subprocess.CompletedProcess[str]":
    """Run ``python -c code`` to completion (killed after ``timeout`` s)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for_line(proc: "subprocess.Popen[str]", expected: str, timeout: float = 10) -> str:
    """Read the child's stdout until a line equal to ``expected`` (fails on EOF or timeout)."""
    import selectors

    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    import time

    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
            break
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.strip() == expected:
            return line
    stderr = ""
    if proc.poll() is not None and proc.stderr is not None:
        stderr = proc.stderr.read()
    raise AssertionError(f"child never printed {expected!r}; stdout={seen!r} stderr={stderr!r}")


def pause(pid: int) -> None:
    """SIGSTOP `pid` and wait until every thread of it has stopped (a thread in the middle of
    a read would otherwise still take a message in, and ack it rightly)."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = []
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/stat") as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
            except FileNotFoundError:
                pass
        if states and all(s in ("T", "t") for s in states):
            return
        time.sleep(0.001)
    raise AssertionError(f"process {pid} did not stop")
