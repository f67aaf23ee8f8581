"""Property tests (hypothesis): whatever the bytes, sizes, sequence or the way the wire is
cut into pieces, a message comes out of ipcez exactly as it went in, in order, over a Unix
socket and over a WebSocket."""

from __future__ import annotations

import os
import random
import socket
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest

import ipcez

import hypothesis  # noqa: E402  (requirements-dev.txt; conftest checks it is installed)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Unix sockets, POSIX semaphores")

MIB = 1024 * 1024
MIB4 = 4 * MIB

SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=bool(os.environ.get("CI")),
)
FEW = settings(SETTINGS, max_examples=12)


def seeded_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


#: Arbitrary bytes of 0..64 KiB: hypothesis' own bytes (small, shrinkable), or a seeded
#: random fill for the larger sizes.
payloads = st.one_of(
    st.binary(max_size=4096),
    st.builds(seeded_bytes, st.integers(0, 64 * 1024), st.integers(0, 2**32 - 1)),
)

#: Sizes where framing bugs live: around powers of two, the read buffer (64 KiB), the body
#: preallocation (256 KiB) and the 4 MiB limit.
large_sizes = st.sampled_from(
    [65535, 65536, 65537, 256 * 1024 - 1, 256 * 1024 + 1, MIB, 3 * MIB + 17, MIB4 - 4, MIB4 - 1, MIB4]
)


class Pair:
    """A connected (client, accepted peer) over one transport, shared by a module's examples."""

    def __init__(self, listener: ipcez.Listener, client: ipcez.Socket, peer: ipcez.Socket) -> None:
        self.listener, self.client, self.peer = listener, client, peer

    def close(self) -> None:
        self.client.close()
        self.peer.close()
        self.listener.close()


@pytest.fixture(scope="module")
def short_tmp() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="ipz-p-", dir="/tmp"))
    yield d
    import shutil

    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module", params=["unix", "ws"])
def pair(request: pytest.FixtureRequest, short_tmp: Path) -> Iterator[Pair]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("target", "local")
        mp.setenv("os", "linux")
        endpoint = str(short_tmp / "p.sock") if request.param == "unix" else "ws://127.0.0.1:0/prop"
        listener = ipcez.listen(endpoint)
        client = ipcez.connect(listener.address)
        peer = listener.accept(timeout=5)
    p = Pair(listener, client, peer)
    yield p
    p.close()


def drain_check(p: Pair) -> None:
    """Nothing is left over in either direction (no duplicates, nothing stray)."""
    for s in (p.client, p.peer):
        with pytest.raises(TimeoutError):
            s.recv(timeout=0)


@SETTINGS
@given(data=payloads)
def test_any_bytes_round_trip(pair: Pair, data: bytes) -> None:
    pair.client.send(data)
    assert pair.peer.recv(timeout=10) == data
    pair.peer.send(data)
    assert pair.client.recv(timeout=10) == data


@FEW
@given(size=large_sizes, seed=st.integers(0, 2**32 - 1))
def test_large_messages_round_trip(pair: Pair, size: int, seed: int) -> None:
    data = seeded_bytes(size, seed)
    pair.client.send(data)
    assert pair.peer.recv(timeout=20) == data
    pair.peer.send(memoryview(data))
    assert pair.client.recv(timeout=20) == data


@FEW
@given(extra=st.integers(1, 70_000))
def test_oversized_send_is_refused_and_the_socket_stays_usable(pair: Pair, extra: int) -> None:
    with pytest.raises(ipcez.MessageTooLarge):
        pair.client.send(bytes(MIB4 + extra))
    pair.client.send(b"still usable")
    assert pair.peer.recv(timeout=5) == b"still usable"


@SETTINGS
@given(messages=st.lists(payloads, max_size=40), reply_first=st.booleans())
def test_sequences_keep_their_order(pair: Pair, messages: List[bytes], reply_first: bool) -> None:
    """All sent before any is taken (they wait in the receiver's queue): same list out."""
    a, b = (pair.peer, pair.client) if reply_first else (pair.client, pair.peer)
    for m in messages:
        a.send(m)
    assert [b.recv(timeout=10) for _ in messages] == messages
    for m in messages:
        b.send(m)
    assert [a.recv(timeout=10) for _ in messages] == messages
    drain_check(pair)


@FEW
@given(messages=st.lists(st.one_of(payloads, large_sizes.map(lambda n: b"L" * n)), min_size=1, max_size=6))
def test_mixed_sizes_keep_their_order(pair: Pair, messages: List[bytes]) -> None:
    for m in messages:
        pair.client.send(m)
    got = [pair.peer.recv(timeout=20) for _ in messages]
    assert [len(g) for g in got] == [len(m) for m in messages]
    assert got == messages


# -- the wire cut anywhere: a raw writer, ipcez reading -------------------------------------

@pytest.fixture(scope="module")
def raw_pair(short_tmp: Path) -> Iterator[Tuple[socket.socket, ipcez.Socket, Any, Any]]:
    """A raw Unix client (a custom peer: socket + posix_ipc) and the ipcez socket that a
    listener accepted for it; plus the endpoint's data_ready and data_acked semaphores."""
    posix_ipc = pytest.importorskip("posix_ipc", reason="pip install posix_ipc (Linux only)")
    path = str(short_tmp / "raw.sock")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("target", "local")
        mp.setenv("os", "linux")
        listener = ipcez.listen(path)
        names = ipcez.ack_names(path)
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(path)
    peer = listener.accept(timeout=5)
    ready = posix_ipc.Semaphore(names[0], posix_ipc.O_CREAT, 0o600, 0)
    acked = posix_ipc.Semaphore(names[1], posix_ipc.O_CREAT, 0o600, 0)
    yield raw, peer, ready, acked
    raw.close()
    peer.close()
    ready.close()
    acked.close()
    listener.close()


@SETTINGS
@given(
    messages=st.lists(st.binary(max_size=3000), min_size=1, max_size=12),
    cuts=st.lists(st.integers(1, 700), min_size=1, max_size=50),
)
def test_frames_cut_anywhere_on_the_wire_arrive_whole(
    raw_pair: Tuple[socket.socket, ipcez.Socket, Any, Any], messages: List[bytes], cuts: List[int]
) -> None:
    """The byte stream of several frames, written in pieces of arbitrary sizes (cutting
    headers and bodies anywhere): ipcez delivers exactly the messages, in order, and acks
    each one once."""
    raw, peer, ready, acked = raw_pair
    stream = b"".join(struct.pack(">I", len(m)) + m for m in messages)
    i = 0
    k = 0
    while i < len(stream):
        n = cuts[k % len(cuts)]
        raw.sendall(stream[i : i + n])
        i += n
        k += 1
    for _ in messages:
        ready.release()  # a custom peer posts data_ready per frame written
    assert [peer.recv(timeout=10) for _ in messages] == messages
    for _ in messages:
        acked.acquire(5)  # one ack per message ...
    assert acked.value == 0  # ... and not more
    with pytest.raises(TimeoutError):
        peer.recv(timeout=0)
