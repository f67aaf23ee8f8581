"""ipcez: inter-process messaging that picks its transport from the endpoint.

``ipcez.connect(endpoint)`` uses a WebSocket for ``ws://``/``wss://`` URLs and,
for anything else, a Unix domain socket or a Windows named pipe chosen from the
environment variables ``target`` (local/remote) and ``os`` (linux/windows)::

    import ipcez

    with ipcez.listen("/tmp/demo.sock") as server, ipcez.connect("/tmp/demo.sock") as client:
        peer = server.accept()
        client.send(b"hello")
        assert peer.recv() == b"hello"

Messages are 0 to 4 MiB; local sends block until the recipient acknowledges
them.  The work is done by a Rust library loaded through :mod:`ctypes`;
:mod:`ipcez.aio` offers the same for asyncio.
"""

from __future__ import annotations

from ._errors import (
    ConnectionLost,
    DetectionError,
    ForkedError,
    IoError,
    MessageTooLarge,
    RecipientAckTimeout,
    SocketError,
    UnsupportedCombination,
    WsError,
)
from ._ffi import native_version as _native_version  # loads and checks the library
from ._log import install as _install_logging
from ._listener import Listener, listen
from ._resolve import Resolution, ack_names, which
from ._socket import MAX_MESSAGE_SIZE, Socket, connect
from ._version import __version__

__all__ = [
    "__version__",
    "connect",
    "listen",
    "which",
    "ack_names",
    "Socket",
    "Listener",
    "Resolution",
    "MAX_MESSAGE_SIZE",
    "SocketError",
    "IoError",
    "ConnectionLost",
    "MessageTooLarge",
    "WsError",
    "UnsupportedCombination",
    "DetectionError",
    "RecipientAckTimeout",
    "ForkedError",
]

for _public in (
    Socket,
    Listener,
    Resolution,
    SocketError,
    IoError,
    ConnectionLost,
    MessageTooLarge,
    WsError,
    UnsupportedCombination,
    DetectionError,
    RecipientAckTimeout,
    ForkedError,
):
    _public.__module__ = "ipcez"  # tracebacks and reprs show the public name
del _public, _native_version

# Rust's log records go to logging.getLogger("ipcez"); the detection guidance to sys.stderr.
_install_logging()
del _install_logging
