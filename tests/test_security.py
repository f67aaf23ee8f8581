"""Who can get in: file modes of the socket and the ack semaphores, another user's access,
wss certificate verification (SSL_CERT_FILE, bogus CAs, wrong names, expired certificates)
and a WebSocket through an nginx reverse proxy."""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

import ipcez

from conftest import PYTHON_DIR, child_env, run_python

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Unix sockets, POSIX semaphores, /dev/shm")

MIB = 1024 * 1024
MIB4 = 4 * MIB


def sem_paths(endpoint: str) -> List[str]:
    return ["/dev/shm/sem." + n.lstrip("/") for n in ipcez.ack_names(endpoint)]


def perms(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def exchange(listener: ipcez.Listener, client: ipcez.Socket) -> ipcez.Socket:
    peer = listener.accept(timeout=5)
    client.send(b"hello")  # creates the ack semaphores on first use
    assert peer.recv(timeout=5) == b"hello"
    peer.send(b"back")
    assert client.recv(timeout=5) == b"back"
    return peer


# -- file modes ------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [None, 0o000, 0o077], ids=["default-umask", "umask-000", "umask-077"])
def test_socket_file_and_semaphores_are_0600_by_default(sock_path: str, umask: Optional[int]) -> None:
    """Owner only, whatever the umask: the socket file and both /dev/shm/sem.<name> files."""
    old = os.umask(umask) if umask is not None else None
    try:
        with ipcez.listen(sock_path) as listener, ipcez.connect(sock_path) as client:
            assert stat.S_ISSOCK(os.stat(sock_path).st_mode)
            assert perms(sock_path) == 0o600, oct(perms(sock_path))
            peer = exchange(listener, client)
            for f in sem_paths(sock_path):
                assert os.path.exists(f), f
                assert perms(f) == 0o600, f"{f}: {oct(perms(f))}"
                assert os.stat(f).st_uid == os.geteuid()
            peer.close()
    finally:
        if old is not None:
            os.umask(old)


@pytest.mark.parametrize("mode", [0o660, 0o666, 0o640])
def test_mode_sets_the_socket_file_and_the_semaphores(sock_path: str, mode: int) -> None:
    """``listen(mode=...)`` sets the socket file's bits exactly (umask 022 notwithstanding),
    and the ack semaphores get the same read/write bits (README, Security)."""
    old = os.umask(0o022)
    try:
        with ipcez.listen(sock_path, mode=mode) as listener, ipcez.connect(sock_path) as client:
            assert perms(sock_path) == mode, oct(perms(sock_path))
            peer = exchange(listener, client)
            for f in sem_paths(sock_path):
                assert perms(f) == mode & 0o666, f"{f}: {oct(perms(f))}"
            peer.close()
    finally:
        os.umask(old)


# -- another user ------------------------------------------------------------------------

NOBODY = 65534


def _python_for_nobody() -> Optional[str]:
    """An interpreter (3.9+) that user nobody can execute: every directory on its path
    world-searchable."""
    for cand in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        if not cand or not os.path.exists(cand):
            continue
        real = os.path.realpath(cand)
        p = Path(real)
        if all(os.stat(d).st_mode & 0o001 for d in list(p.parents)) and os.stat(real).st_mode & 0o001:
            out = subprocess.run([real, "-c", "import sys; print(sys.version_info >= (3, 9))"],
                                 capture_output=True, text=True)
            if out.stdout.strip() == "True":
                return real
    return None


def _readable_by_others(path: Path) -> bool:
    return all(os.stat(d).st_mode & 0o005 == 0o005 for d in [path, *path.parents])


NOBODY_CLIENT = """
import errno, os, socket, sys
sys.path.insert(0, sys.argv[2])
import ipcez
path = sys.argv[1]
raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    raw.connect(path)
    print("raw-connect ok")
    raw.close()
except OSError as e:
    print("raw-connect", errno.errorcode.get(e.errno, e.errno))
for f in sys.argv[3:]:
    try:
        open(f, "r+b").close()
        print("sem-open ok")
    except OSError as e:
        print("sem-open", errno.errorcode.get(e.errno, e.errno))
try:
    c = ipcez.connect(path, ack_timeout=1)
    c.send(b"nobody was here")
    print("ipcez-connect ok")
except ipcez.SocketError as e:
    print("ipcez-connect", type(e).__name__, errno.errorcode.get(getattr(e, "errno", None) or 0, "-"), e)
"""


@pytest.fixture
def other_user_dir() -> Iterator[Path]:
    """A world-searchable directory for a socket that another user may try to reach."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a child process as another user")
    if not _readable_by_others(PYTHON_DIR):
        pytest.skip(f"{PYTHON_DIR} is not readable by other users")
    lib = os.environ.get("IPCEZ_LIBRARY")
    if lib and not _readable_by_others(Path(lib).parent):
        pytest.skip(f"{lib} is not readable by other users")
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="ipz-u-", dir="/tmp"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _run_as_nobody(path: str) -> Dict[str, str]:
    py = _python_for_nobody()
    if py is None:
        pytest.skip("no Python 3.9+ interpreter that user nobody can execute")

    def drop() -> None:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)

    env = child_env()
    env.pop("PYTHONPATH", None)  # may point into /root; the path is passed explicitly
    r = subprocess.run(
        [py, "-c", textwrap.dedent(NOBODY_CLIENT), path, str(PYTHON_DIR), *sem_paths(path)],
        preexec_fn=drop, env=env, capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    out: Dict[str, str] = {}
    for line in lines:
        key, _, rest = line.partition(" ")
        out.setdefault(key, rest)  # the first sem-open line
    out["_all"] = r.stdout
    return out


def test_another_user_cannot_connect_by_default(other_user_dir: Path) -> None:
    """With the default 0600, user nobody can neither connect to the socket nor open the
    semaphores; ipcez.connect fails with IoError EACCES (a PermissionError) that says why,
    and the listener never sees a connection."""
    path = str(other_user_dir / "s.sock")
    with ipcez.listen(path) as listener, ipcez.connect(path) as c:
        exchange(listener, c).close()
        out = _run_as_nobody(path)
        assert out["raw-connect"] == "EACCES", out["_all"]
        assert out["sem-open"] == "EACCES", out["_all"]
        assert out["ipcez-connect"].startswith("IoError EACCES"), out["_all"]
        assert "permission" in out["ipcez-connect"].lower(), out["_all"]
        with pytest.raises(TimeoutError):
            listener.accept(timeout=0.2)


def test_widened_listener_lets_another_user_in_semaphores_included(other_user_dir: Path) -> None:
    """``mode=0o666`` widens the socket file and, with it, the listener's ack semaphores
    (their read/write bits follow the socket's), so another user's ipcez client connects
    and its send is acknowledged. (Before this was fixed the semaphores stayed 0600 and
    that client failed with EACCES on sem_open.)"""
    path = str(other_user_dir / "s.sock")
    with ipcez.listen(path, mode=0o666) as listener, ipcez.connect(path) as c:
        exchange(listener, c).close()
        for sem in sem_paths(path):
            assert stat.S_IMODE(os.stat(sem).st_mode) == 0o666, sem
        out = _run_as_nobody(path)
        assert out["raw-connect"] == "ok", out["_all"]
        assert out["sem-open"] == "ok", out["_all"]
        assert out["ipcez-connect"] == "ok", out["_all"]
        # The raw probe's connection ended with nothing sent: accept skips it.
        assert listener.accept(timeout=5).recv(timeout=5) == b"nobody was here"


# -- wss: certificates are always verified ---------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """A trustme CA with certificates for 127.0.0.1/localhost, for localhost only, and an
    expired one; a second, unrelated CA; all as PEM files."""
    trustme = pytest.importorskip("trustme", reason="pip install trustme")
    d = tmp_path_factory.mktemp("trust")
    ca = trustme.CA()
    bogus = trustme.CA()
    files: Dict[str, Path] = {}
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    bogus.cert_pem.write_to_path(str(d / "bogus.pem"))
    files["ca"], files["bogus"] = d / "ca.pem", d / "bogus.pem"

    def issue(name: str, *hosts: str, **kw: Any) -> None:
        leaf = ca.issue_cert(*hosts, **kw)
        chain, key = d / f"{name}.pem", d / f"{name}.key"
        chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))
        files[name], files[name + "_key"] = chain, key

    issue("good", "127.0.0.1", "localhost")
    issue("localhost_only", "localhost")
    try:
        now = datetime.datetime.now(datetime.timezone.utc)
        issue("expired", "127.0.0.1", not_before=now - datetime.timedelta(days=10),
              not_after=now - datetime.timedelta(days=1))
    except TypeError:  # trustme < 1.0 cannot date certificates
        pass
    return files


class EchoListener:
    """An ipcez listener whose accepted connections echo, served from a thread."""

    def __init__(self, endpoint: str, **kw: Any) -> None:
        self.listener = ipcez.listen(endpoint, **kw)
        self.address = self.listener.address
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                s = self.listener.accept(timeout=0.1)
            except TimeoutError:
                continue
            except ipcez.SocketError:
                return
            self.accepted += 1
            threading.Thread(target=self._echo, args=(s,), daemon=True).start()

    @staticmethod
    def _echo(s: ipcez.Socket) -> None:
        with s:
            for m in s:
                s.send(m)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.listener.close()


WSS_CLIENT = """
import sys, ipcez
try:
    with ipcez.connect(sys.argv[1]) as s:
        s.send(b"over tls")
        print("OK", s.recv(timeout=5).decode())
except ipcez.SocketError as e:
    print("ERR", type(e).__name__, e)
    sys.exit(3)
"""


def connect_in_child(url: str, cert_file: Optional[Path]) -> Tuple[int, str]:
    """Connect from a fresh process whose SSL_CERT_FILE is ``cert_file`` (unset when None)."""
    old = os.environ.pop("SSL_CERT_FILE", None)
    try:
        if cert_file is not None:
            os.environ["SSL_CERT_FILE"] = str(cert_file)
        r = run_python(WSS_CLIENT, url, timeout=30)
    finally:
        os.environ.pop("SSL_CERT_FILE", None)
        if old is not None:
            os.environ["SSL_CERT_FILE"] = old
    return r.returncode, (r.stdout + r.stderr).strip()


@pytest.fixture(scope="module")
def wss(pki: Dict[str, Path]) -> Iterator[EchoListener]:
    e = EchoListener("wss://127.0.0.1:0/secure", certfile=str(pki["good"]), keyfile=str(pki["good_key"]))
    yield e
    e.close()


def test_wss_client_trusts_the_ca_in_ssl_cert_file(wss: EchoListener, pki: Dict[str, Path]) -> None:
    assert wss.address.startswith("wss://127.0.0.1:")
    rc, out = connect_in_child(wss.address, pki["ca"])
    assert rc == 0, out
    assert out == "OK over tls"


def _assert_certificate_error(rc: int, out: str) -> None:
    assert rc == 3, out
    assert out.startswith("ERR WsError") or out.startswith("ERR IoError"), out
    low = out.lower()
    assert "certificate" in low or "unknownissuer" in low or "unknown issuer" in low, out


@pytest.mark.parametrize("trust", ["system-roots-only", "bogus-ca"])
def test_wss_client_rejects_an_untrusted_certificate(wss: EchoListener, pki: Dict[str, Path], trust: str) -> None:
    """Certificates are always verified: without the CA (or with an unrelated one) the
    handshake fails with a certificate error, and no connection reaches the listener."""
    before = wss.accepted
    rc, out = connect_in_child(wss.address, None if trust == "system-roots-only" else pki["bogus"])
    _assert_certificate_error(rc, out)
    print(f"\n{trust}: {out}")
    time.sleep(0.1)
    assert wss.accepted == before


def test_wss_client_rejects_a_certificate_for_another_name(pki: Dict[str, Path]) -> None:
    e = EchoListener("wss://127.0.0.1:0/secure", certfile=str(pki["localhost_only"]),
                     keyfile=str(pki["localhost_only_key"]))
    try:
        rc, out = connect_in_child(e.address, pki["ca"])  # 127.0.0.1 is not in the certificate
        _assert_certificate_error(rc, out)
        print(f"\nwrong name: {out}")
        port = e.address.rsplit(":", 1)[1].split("/")[0]
        rc, out = connect_in_child(f"wss://localhost:{port}/secure", pki["ca"])
        assert rc == 0, out  # the right name works
    finally:
        e.close()


def test_wss_client_rejects_an_expired_certificate(pki: Dict[str, Path]) -> None:
    if "expired" not in pki:
        pytest.skip("trustme too old to issue an expired certificate")
    e = EchoListener("wss://127.0.0.1:0/secure", certfile=str(pki["expired"]), keyfile=str(pki["expired_key"]))
    try:
        rc, out = connect_in_child(e.address, pki["ca"])
        _assert_certificate_error(rc, out)
        assert "expired" in out.lower(), out
    finally:
        e.close()


def test_unreadable_ssl_cert_file_is_a_clear_error(wss: EchoListener, tmp_path: Path) -> None:
    rc, out = connect_in_child(wss.address, tmp_path / "missing.pem")
    assert rc == 3, out
    assert "SSL_CERT_FILE" in out, out


def test_plain_ws_client_against_wss_listener_fails(wss: EchoListener) -> None:
    before = wss.accepted
    with pytest.raises(ipcez.SocketError):
        ipcez.connect(wss.address.replace("wss://", "ws://", 1))
    assert wss.accepted == before


def test_websockets_client_with_the_ca_talks_to_the_ipcez_wss_listener(pki: Dict[str, Path]) -> None:
    import ssl

    websockets = pytest.importorskip("websockets")
    from websockets.sync.client import connect as ws_connect

    with ipcez.listen("wss://127.0.0.1:0/secure", certfile=str(pki["good"]), keyfile=str(pki["good_key"])) as lst:
        ctx = ssl.create_default_context(cafile=str(pki["ca"]))
        with ws_connect(lst.address, ssl=ctx, proxy=None, max_size=8 * MIB, close_timeout=2) as ws:
            peer = lst.accept(timeout=5)
            ws.send(b"from websockets")
            assert peer.recv(timeout=5) == b"from websockets"
            big = os.urandom(MIB)
            peer.send(big)
            assert ws.recv(timeout=10) == big
            peer.close()
        # and a default context (system roots) does not trust it
        with pytest.raises(ssl.SSLCertVerificationError):
            ws_connect(lst.address, ssl=ssl.create_default_context(), proxy=None, open_timeout=5)
        with pytest.raises(TimeoutError):
            lst.accept(timeout=0.2)
    del websockets


# -- behind nginx ----------------------------------------------------------------------------


def _find_nginx() -> Optional[str]:
    found = shutil.which("nginx")
    if found:
        return found
    for cand in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if os.access(cand, os.X_OK):
            return cand
    return None


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _wait_for_port(port: int, proc: "subprocess.Popen[bytes]", log: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"nginx exited with {proc.returncode}: {log.read_text() if log.exists() else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nginx did not listen on {port}: {log.read_text() if log.exists() else ''}")


NGINX_CONF = """\
{user}
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_read_timeout 60s;
        }}
    }}
}}
"""


def test_websocket_through_an_nginx_reverse_proxy(tmp_path: Path) -> None:
    nginx = _find_nginx()
    if nginx is None:
        pytest.skip("nginx is not installed (CI installs the Debian package nginx-light)")
    with ipcez.listen("ws://127.0.0.1:0/proxied") as listener:
        upstream = int(listener.address.rsplit(":", 1)[1].split("/")[0])
        port = _free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(NGINX_CONF.format(
            user="user root;" if os.geteuid() == 0 else "", tmp=tmp_path, port=port, upstream=upstream,
        ))
        log = tmp_path / "error.log"
        proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp_path), "-e", str(log)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_for_port(port, proc, log)
            with ipcez.connect(f"ws://127.0.0.1:{port}/proxied") as client:
                peer = listener.accept(timeout=5)
                for msg in (b"through nginx", b"", os.urandom(MIB), b"m" * MIB4):
                    client.send(msg)
                    assert peer.recv(timeout=10) == msg
                    peer.send(msg[::-1])
                    assert client.recv(timeout=10) == msg[::-1]
                peer.close()
                with pytest.raises(ipcez.ConnectionLost):
                    client.recv(timeout=5)
            access_log = tmp_path / "access.log"
            deadline = time.monotonic() + 5  # nginx logs an upgraded request when it ends
            while " 101 " not in (access_log.read_text() if access_log.exists() else ""):
                assert time.monotonic() < deadline, "nginx logged no 101 Switching Protocols"
                time.sleep(0.05)
            assert "GET /proxied" in access_log.read_text()
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()


MANY_IN_FLIGHT = """
import errno, os, resource, socket, sys
sys.path.insert(0, sys.argv[2])
import ipcez
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
path = sys.argv[1]
raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
raw.bind(path)
raw.listen(1000)  # never accepts: every channel sent to it stays in flight
kinds = {}
for _ in range(60):
    c = ipcez.connect(path, ack_timeout=0.01)
    try:
        c.send(b"x")
        k = "sent"
    except ipcez.SocketError as e:
        k = type(e).__name__ + ":" + errno.errorcode.get(getattr(e, "errno", None) or 0, "-")
    kinds[k] = kinds.get(k, 0) + 1
    c.close()
print(sorted(kinds.items()))
"""


def test_many_descriptors_in_flight_do_not_fail_a_send(other_user_dir: Path) -> None:
    """Past the kernel's limit of descriptors in flight (RLIMIT_NOFILE, binding for users
    without CAP_SYS_RESOURCE) the first frame goes without the private channel: the send
    is acked the shared way (here: never, as the raw peer never reads) instead of failing
    with ETOOMANYREFS."""
    py = _python_for_nobody()
    if py is None:
        pytest.skip("no Python 3.9+ interpreter that user nobody can execute")

    def drop() -> None:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)

    os.chown(other_user_dir, NOBODY, NOBODY)  # nobody binds the raw listener there
    env = child_env()
    env.pop("PYTHONPATH", None)
    r = subprocess.run(
        [py, "-c", textwrap.dedent(MANY_IN_FLIGHT), str(other_user_dir / "s"), str(PYTHON_DIR)],
        preexec_fn=drop, env=env, capture_output=True, text=True, timeout=60, cwd="/",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[('RecipientAckTimeout:-', 60)]", r.stdout
