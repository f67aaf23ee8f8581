"""Smoke test of an installed wheel: import, resolve, and one local round trip."""

import os
import tempfile

os.environ.update(target="local", os="linux")

import ipcez  # noqa: E402

assert "site-packages" in ipcez.__file__, ipcez.__file__
print("ipcez", ipcez.__version__, "from", os.path.dirname(ipcez.__file__))
print(ipcez.which("ws://127.0.0.1:1/x"))
path = os.path.join(tempfile.mkdtemp(), "smoke.sock")
print(ipcez.which(path))
with ipcez.listen(path) as listener, ipcez.connect(path) as client:
    server = listener.accept(timeout=5)
    client.send(b"ping")
    assert server.recv(timeout=5) == b"ping"
    server.send(b"pong")
    assert client.recv(timeout=5) == b"pong"
print("smoke: local round trip ok")
