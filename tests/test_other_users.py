"""Another user (``nobody``) against a root listener: squatting the semaphore names before
or while the listener starts, planting a symlink at a name, and connecting to a socket
whose mode says it must not, under umask 000."""

from __future__ import annotations

import ast
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest

import ipcez

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="POSIX semaphores in /dev/shm, setpriv")

# The helper runs as nobody with the system Python, which needs nothing but the standard
# library (ctypes reaches glibc's sem_open).
SYSTEM_PYTHON = "/usr/bin/python3"
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", SYSTEM_PYTHON, "-c"]

SEM = r"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.sem_open.restype = ctypes.c_void_p
FAILED = ctypes.c_void_p(0).value  # SEM_FAILED is (sem_t *)0 in glibc
def sem_open(name, flags, mode=0o666):
    p = libc.sem_open(name.encode(), flags, ctypes.c_uint(mode), ctypes.c_uint(0))
    return None if p in (None, FAILED) else p
"""


@pytest.fixture(scope="module")
def nobody() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, to act as another user (nobody) with setpriv")
    if shutil.which("setpriv") is None or not os.path.exists(SYSTEM_PYTHON):
        pytest.skip("needs setpriv and /usr/bin/python3 to run a helper as nobody")
    r = subprocess.run(AS_NOBODY + ["import os; print(os.geteuid())"], capture_output=True, text=True)
    if r.returncode != 0 or r.stdout.strip() == "0":
        pytest.skip(f"cannot run a helper as nobody: {r.stderr.strip()}")


def shm(name: str) -> str:
    return "/dev/shm/sem." + name.lstrip("/")


def remove(*paths: str) -> None:
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def test_names_another_user_holds_are_a_clear_error(nobody: None, sock_path: str) -> None:
    names = ipcez.ack_names(sock_path)
    code = SEM + "import sys\nfor n in sys.argv[1:]: assert sem_open(n, os.O_CREAT | os.O_EXCL)\n"
    subprocess.run(AS_NOBODY + [code, *names], check=True, timeout=30)
    try:
        with pytest.raises(PermissionError) as info:
            ipcez.listen(sock_path)
        text = str(info.value)
        assert names[0] in text and "nobody" in text, text
        assert f"sudo rm {shm(names[0])}" in text, text
        assert not os.path.exists(sock_path), "nothing was bound"
        assert os.stat(shm(names[0])).st_uid != 0, "left as it was"
    finally:
        remove(*map(shm, names))


SQUATTER = SEM + r"""
import errno, sys, time
until = time.monotonic() + float(sys.argv[1])
names = sys.argv[2:]
won = opened = 0
while time.monotonic() < until:
    for n in names:
        if sem_open(n, os.O_CREAT | os.O_EXCL):
            won += 1
            time.sleep(0.0005)
            libc.sem_unlink(n.encode())
        elif sem_open(n, os.O_RDWR):
            opened += 1  # someone else's semaphore, open to us: we could forge its acks
print(won, opened, flush=True)
"""


def test_racing_creation_never_takes_over(nobody: None, sock_path: str) -> None:
    """While nobody keeps creating (and removing) the names, a root listener either refuses
    with the clear error or ends up with semaphores of its own that nobody can open."""
    names = ipcez.ack_names(sock_path)
    squatter = subprocess.Popen(AS_NOBODY + [SQUATTER, "6", *names], stdout=subprocess.PIPE, text=True)
    started = refused = 0
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                listener = ipcez.listen(sock_path)
            except PermissionError as e:
                assert "nobody" in str(e), e
                refused += 1
                continue
            with listener:
                started += 1
                for n in names:
                    st = os.stat(shm(n))
                    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600, (n, st)
        out, _ = squatter.communicate(timeout=30)
    finally:
        if squatter.poll() is None:
            squatter.kill()
        remove(*map(shm, names))
    won, opened = map(int, out.split())
    assert opened == 0, "the squatter opened a listener's semaphore"
    assert started > 0, (started, refused, won)
    assert won > 0, "the squatter never got a name: the race was not exercised"


CONNECTOR = r"""
import errno, socket, sys, time
until = time.monotonic() + float(sys.argv[1])
seen = {}
while time.monotonic() < until:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(sys.argv[2])
        s.sendall(b"\0\0\0\5intro")
        seen["connected"] = seen.get("connected", 0) + 1
    except OSError as e:
        seen[errno.errorcode.get(e.errno, str(e.errno))] = seen.get(errno.errorcode.get(e.errno, ""), 0) + 1
    finally:
        s.close()
print(seen, flush=True)
"""


def test_umask_000_never_lets_another_user_in(nobody: None, short_dir: Path) -> None:
    """mode 0600 under umask 000, started again and again: nobody, hammering connect(),
    never gets through (the socket only appears once it has its mode)."""
    short_dir.chmod(0o755)  # nobody may look for the socket; only its mode keeps them out
    path = str(short_dir / "u.sock")
    connector = subprocess.Popen(AS_NOBODY + [CONNECTOR, "5", path], stdout=subprocess.PIPE, text=True)
    old = os.umask(0)
    starts = 0
    received: List[bytes] = []
    try:
        deadline = time.monotonic() + 4.5
        while time.monotonic() < deadline:
            with ipcez.listen(path, mode=0o600) as listener:
                starts += 1
                try:
                    received.append(listener.accept(timeout=0.002).recv(timeout=0.2))
                except TimeoutError:
                    pass
    finally:
        os.umask(old)
        out, _ = connector.communicate(timeout=30)
    seen = ast.literal_eval(out)  # a dict printed by the helper
    assert "connected" not in seen, seen
    assert received == []
    assert seen.get("EACCES", 0) > 0, f"the socket was never there to try ({seen}, {starts} starts)"


def test_a_symlink_planted_at_a_name_is_not_followed(nobody: None, short_dir: Path) -> None:
    path = str(short_dir / "l.sock")
    names = ipcez.ack_names(path)
    victim = short_dir / "victim"
    victim.write_bytes(b"root only")
    victim.chmod(0o600)
    code = "import os, sys; os.symlink(sys.argv[1], sys.argv[2])"
    subprocess.run(AS_NOBODY + [code, str(victim), shm(names[0])], check=True, timeout=30)
    try:
        with pytest.raises(PermissionError) as info:
            ipcez.listen(path, mode=0o666)
        assert "nobody" in str(info.value)
        assert stat.S_IMODE(victim.stat().st_mode) == 0o600
        assert victim.read_bytes() == b"root only"
    finally:
        remove(*map(shm, names))
