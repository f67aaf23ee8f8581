"""Doorbells (Linux): while an ``ipcez.aio`` task awaits an ack, the peer's reader also
writes a 4-byte doorbell on the socket, so the sender's event loop wakes on the socket it
watches. The ack counter on the private page stays the one authority: these tests prove
that a doorbell acknowledges nothing by itself, and that acks still come when doorbells
do not.

The peer here is written from docs/protocol.md alone ("The private ack between ipcez
endpoints", "Doorbells"): ``socket.send_fds``/``recv_fds`` for the channel, ``mmap`` for
the page, ``struct`` for frames, ``posix_ipc`` for the endpoint's names. Real ipcez peers
in other processes cover the stalled, forked, killed and closed cases."""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import mmap
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Iterator, List, Optional

import pytest

import ipcez
import ipcez.aio

from conftest import child_env, pause

posix_ipc = pytest.importorskip("posix_ipc", reason="pip install posix_ipc (Linux only)")

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="private pages and doorbells are Linux's")

PAGE = 4096
DOORBELL = b"\x80\x00\x00\x00"
FORGED = 10_000
_libc = ctypes.CDLL(None, use_errno=True)
_SYS_FUTEX = 202 if os.uname().machine == "x86_64" else 98
_FUTEX_WAKE = 1


def _word(mm: mmap.mmap, offset: int) -> int:
    return int(struct.unpack_from("=I", mm, offset)[0])


class PagePeer:
    """The far end of one connection, speaking the private-ack protocol as documented."""

    def __init__(self, conn: socket.socket, rings: bool, custom: bool = False) -> None:
        self.conn = conn
        self.conn.settimeout(10)
        self.buf = b""
        self.their_page: Optional[mmap.mmap] = None
        self.their_alive: Optional[int] = None
        self.rang_for_us = 0
        self.to_send: List[int] = []
        self.alive_r = -1
        self.page = mmap.mmap(-1, PAGE)
        self.custom = custom
        if custom:  # plain frames, no channel: a custom peer
            return
        # Our page and pipe, sent with our first frame.
        mem = os.memfd_create("doorbell-test", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.ftruncate(mem, PAGE)
        fcntl.fcntl(mem, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
        self.page = mmap.mmap(mem, PAGE)
        struct.pack_into("=I", self.page, 8, 1 if rings else 0)  # "my reader rings doorbells"
        self.alive_r, alive_w = os.pipe()
        self.to_send = [mem, alive_w]

    def close(self) -> None:
        for fd in self.to_send:
            os.close(fd)
        self.to_send = []
        for fd in (self.alive_r, self.their_alive):
            if fd is not None and fd >= 0:
                os.close(fd)
        self.conn.close()

    def write_frame(self, payload: bytes) -> None:
        data = struct.pack(">I", len(payload)) + payload
        if self.to_send:
            sent = socket.send_fds(self.conn, [data], self.to_send)
            for fd in self.to_send:
                os.close(fd)
            self.to_send = []
            data = data[sent:]
        self.conn.sendall(data)

    def _fill(self, n: int) -> None:
        while len(self.buf) < n:
            if self.their_page is None and not self.custom:
                data, fds, _, _ = socket.recv_fds(self.conn, 65536, 2)
                if fds:
                    mem, alive = fds
                    self.their_page = mmap.mmap(mem, PAGE)
                    self._futex_addr = ctypes.addressof(ctypes.c_char.from_buffer(self.their_page))
                    os.close(mem)
                    self.their_alive = alive  # held until the first ack, as the docs ask
            else:
                data = self.conn.recv(65536)
            if not data:
                raise ConnectionError("the ipcez side closed")
            self.buf += data

    def read_frame(self) -> bytes:
        """The next message; doorbells the ipcez side rang for us are counted and skipped."""
        while True:
            self._fill(4)
            (n,) = struct.unpack(">I", self.buf[:4])
            if n & 0xC000_0000 == 0x8000_0000:
                self.rang_for_us += 1
                self.buf = self.buf[4:]
                continue
            self._fill(4 + n)
            msg, self.buf = self.buf[4 : 4 + n], self.buf[4 + n :]
            return msg

    def asked_for_doorbells(self) -> bool:
        assert self.their_page is not None
        return _word(self.their_page, 12) != 0

    def ack(self, ring: bool = True) -> None:
        """Count one ack on the sender's page, wake its sleepers, ring if it asks."""
        page = self.their_page
        assert page is not None
        struct.pack_into("=I", page, 0, (_word(page, 0) + 1) & 0xFFFF_FFFF)
        if self.their_alive is not None:
            os.close(self.their_alive)
            self.their_alive = None
        if _word(page, 4):
            _libc.syscall(_SYS_FUTEX, ctypes.c_void_p(self._futex_addr), _FUTEX_WAKE, 0x7FFF_FFFF)
        if ring and self.asked_for_doorbells():
            self.conn.sendall(DOORBELL)


@pytest.fixture
def page_peer(sock_path: str) -> Iterator["PagePeerFactory"]:
    made: List[PagePeer] = []
    names = ipcez.ack_names(sock_path)
    sems = [posix_ipc.Semaphore(n, posix_ipc.O_CREAT, 0o600, 0) for n in names]
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(4)
    server.settimeout(10)

    def accept(rings: bool = True, custom: bool = False) -> PagePeer:
        conn, _ = server.accept()
        peer = PagePeer(conn, rings, custom)
        made.append(peer)
        return peer

    try:
        yield accept
    finally:
        for p in made:
            p.close()
        server.close()
        for s in sems:
            s.close()
        for n in names:
            try:
                posix_ipc.unlink_semaphore(n)
            except posix_ipc.ExistentialError:
                pass


PagePeerFactory = "Callable[..., PagePeer]"


def _drain(conn: socket.socket) -> bytes:
    """What arrives within 0.3 s of quiet."""
    conn.settimeout(0.3)
    got = b""
    try:
        while True:
            chunk = conn.recv(4096)
            if not chunk:
                break
            got += chunk
    except socket.timeout:
        pass
    conn.settimeout(10)
    return got


def _words(data: bytes) -> List[bytes]:
    return [data[i : i + 4] for i in range(0, len(data), 4)]


async def _meet(sock_path: str, accept: "PagePeerFactory", rings: bool = True, ack_timeout: float = 5.0):
    """An aio client and the page peer, past the first exchange both ways (from then on
    the client knows the peer's kind and asks for doorbells)."""
    client = await ipcez.aio.connect(sock_path, ack_timeout=ack_timeout)
    peer = await asyncio.to_thread(accept, rings)
    peer.write_frame(b"hello")
    assert await client.recv(timeout=5) == b"hello"
    first = asyncio.ensure_future(client.send(b"first"))
    assert await asyncio.to_thread(peer.read_frame) == b"first"
    peer.ack()
    await asyncio.wait_for(first, 5)
    return client, peer


def test_forged_and_stale_doorbells_acknowledge_nothing(sock_path: str, page_peer: "PagePeerFactory") -> None:
    """10,000 doorbells, some claiming counts, before and during the ack waits of 5 sends:
    every send still times out (0 false acks), and the connection stays whole (the next
    real frame and ack work)."""

    async def main() -> None:
        client, peer = await _meet(sock_path, page_peer, ack_timeout=1.0)
        # Stale: rung before anything waits; forged counts in the low bits.
        peer.conn.sendall(DOORBELL * (FORGED // 2))
        peer.conn.sendall(struct.pack(">I", 0x8000_0000 | 10_000) * 10)
        sends = [asyncio.ensure_future(client.send(b"unacked %d" % i)) for i in range(5)]
        await asyncio.sleep(0.05)
        assert await asyncio.to_thread(peer.asked_for_doorbells), "the sends must have asked for doorbells"
        peer.conn.sendall(DOORBELL * (FORGED // 2 - 10))
        results = await asyncio.gather(*sends, return_exceptions=True)
        assert all(isinstance(r, ipcez.RecipientAckTimeout) for r in results), results
        for i in range(5):
            assert await asyncio.to_thread(peer.read_frame) == b"unacked %d" % i
        # Real acks still count, in order: the five late ones, then a new send's.
        for _ in range(5):
            peer.ack()
        last = asyncio.ensure_future(client.send(b"after"))
        assert await asyncio.to_thread(peer.read_frame) == b"after"
        peer.ack()
        await asyncio.wait_for(last, 5)
        peer.write_frame(b"still framed")
        assert await client.recv(timeout=5) == b"still framed"
        await client.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_an_ack_then_the_end_settles_every_send(sock_path: str, page_peer: "PagePeerFactory") -> None:
    """Two sends await acks; the peer acks the first, rings, and hangs up. The first send
    completes, the second fails with ConnectionLost: the end is not kept back behind the
    ack that came with it (a message left unread means the end itself reports nothing
    new to the loop)."""

    async def main() -> None:
        client, peer = await _meet(sock_path, page_peer, ack_timeout=30.0)
        peer.write_frame(b"left unread")
        await asyncio.sleep(0.1)
        first = asyncio.ensure_future(client.send(b"one"))
        second = asyncio.ensure_future(client.send(b"two"))
        assert await asyncio.to_thread(peer.read_frame) == b"one"
        assert await asyncio.to_thread(peer.read_frame) == b"two"
        assert await asyncio.to_thread(peer.asked_for_doorbells)
        peer.ack()
        peer.conn.shutdown(socket.SHUT_RDWR)
        await asyncio.wait_for(first, 10)
        with pytest.raises(ipcez.ConnectionLost):
            await asyncio.wait_for(second, 10)
        await client.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_acks_without_doorbells_still_come(sock_path: str, page_peer: "PagePeerFactory") -> None:
    """A peer that counts acks but never rings (or whose doorbell cannot be written): the
    library's threads see the count after their grace period; nothing times out."""

    async def main() -> None:
        client, peer = await _meet(sock_path, page_peer, ack_timeout=3.0)
        began = time.monotonic()
        for i in range(20):
            send = asyncio.ensure_future(client.send(b"quiet %d" % i))
            assert await asyncio.to_thread(peer.read_frame) == b"quiet %d" % i
            peer.ack(ring=False)
            await asyncio.wait_for(send, 5)
        assert time.monotonic() - began < 20, "each ack waited for more than the fallback"
        await client.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_peer_that_rings_gets_its_acks_in_band(sock_path: str, page_peer: "PagePeerFactory") -> None:
    """Both directions against the documented peer: the aio sender asks for doorbells and
    takes them (its sends complete), and the ipcez reader rings for a peer that asks."""

    async def main() -> None:
        client, peer = await _meet(sock_path, page_peer)
        asked = 0
        for i in range(50):
            send = asyncio.ensure_future(client.send(b"rung %d" % i))
            assert await asyncio.to_thread(peer.read_frame) == b"rung %d" % i
            asked += peer.asked_for_doorbells()
            peer.ack()
            await asyncio.wait_for(send, 5)
        assert asked == 50, f"the sender asked for doorbells in {asked} of 50 waits"
        # The other way: our page asks; the ipcez reader rings after the acks it counts.
        struct.pack_into("=I", peer.page, 12, 1)
        for i in range(10):
            peer.write_frame(b"to ipcez %d" % i)
        got = [await client.recv(timeout=5) for _ in range(10)]
        assert got == [b"to ipcez %d" % i for i in range(10)]
        assert _word(peer.page, 0) == 11, "hello + 10 counted"
        rung = await asyncio.to_thread(_drain, peer.conn)
        assert rung and len(rung) % 4 == 0 and set(_words(rung)) == {DOORBELL}, rung[:64]
        # Asked no more: no more doorbells.
        struct.pack_into("=I", peer.page, 12, 0)
        peer.write_frame(b"quiet")
        assert await client.recv(timeout=5) == b"quiet"
        assert await asyncio.to_thread(_drain, peer.conn) == b""
        await client.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_answers_that_come_with_the_ack_are_received_in_order(
    sock_path: str, page_peer: "PagePeerFactory", monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop that wakes for an ack takes the message that came with it in the same
    native call (``ipcez_socket_read_held_batch``). Three answers and the doorbell in one
    write: the send completes and the answers come in order; an answer that comes while
    one taken so is still unread goes behind it; one taken so before a close is never
    returned after it."""
    import ipcez.aio as aio_module

    seen: List[tuple] = []
    real = aio_module.read_held_batch

    def counting(sock: object) -> object:
        got = real(sock)
        seen.append(got)
        return got

    monkeypatch.setattr(aio_module, "read_held_batch", counting)

    def frame(payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + payload

    async def main() -> None:
        client, peer = await _meet(sock_path, page_peer)
        seen.clear()
        send = asyncio.ensure_future(client.send(b"request"))
        assert await asyncio.to_thread(peer.read_frame) == b"request"
        assert await asyncio.to_thread(peer.asked_for_doorbells)
        peer.ack(ring=False)
        peer.conn.sendall(frame(b"a1") + frame(b"a2") + frame(b"a3") + DOORBELL)
        await asyncio.wait_for(send, 5)
        # Taken by the held read (its ack too, unless the library's fallback look at the
        # counter, 15-20 ms after the send, came first on a loaded machine).
        assert any(g is not None and g[0] == b"a1" for g in seen), seen
        # a1 is taken, a2 and a3 wait in the batch buffer; a4 comes with the next ack.
        send = asyncio.ensure_future(client.send(b"request 2"))
        assert await asyncio.to_thread(peer.read_frame) == b"request 2"
        peer.ack(ring=False)
        peer.conn.sendall(frame(b"a4") + DOORBELL)
        await asyncio.wait_for(send, 5)
        got = [await client.recv(timeout=5) for _ in range(4)]
        assert got == [b"a1", b"a2", b"a3", b"a4"]
        # Taken with the ack, then the socket is closed: the receive says so.
        seen.clear()
        send = asyncio.ensure_future(client.send(b"request 3"))
        assert await asyncio.to_thread(peer.read_frame) == b"request 3"
        peer.ack(ring=False)
        peer.conn.sendall(frame(b"a5") + DOORBELL)
        await asyncio.wait_for(send, 5)
        assert any(g is not None and g[0] == b"a5" for g in seen), seen
        await client.close()
        with pytest.raises(ipcez.ConnectionLost):
            await client.recv(timeout=5)

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_protocol_violation_read_with_the_acks_is_reported_with_its_reason(
    sock_path: str, page_peer: "PagePeerFactory"
) -> None:
    """The loop that reads a socket for its acks (``ipcez_socket_read_held_batch``) finds
    the end of the connection, here a frame longer than the limit: the send fails and the
    next receive names the violation (as a sync receive would), not only "connection lost"."""

    async def main() -> None:
        client, peer = await _meet(sock_path, page_peer)
        send = asyncio.ensure_future(client.send(b"request"))
        assert await asyncio.to_thread(peer.read_frame) == b"request"
        assert await asyncio.to_thread(peer.asked_for_doorbells)
        peer.conn.sendall(struct.pack(">I", 5 * 1024 * 1024))  # over 4 MiB: a violation
        with pytest.raises(ipcez.SocketError):
            await asyncio.wait_for(send, 10)
        with pytest.raises(ipcez.IoError, match="protocol violation"):
            await client.recv(timeout=5)
        await client.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_doorbell_left_to_the_end_of_a_busy_turn_is_rung(sock_path: str, page_peer: "PagePeerFactory") -> None:
    """A loop that reads several held sockets in one turn rings the first doorbell at once
    and leaves the others to the next frame it writes on each socket, or to the end of the
    turn: a peer that is sent no frame still gets its doorbell (the sockets stay held
    throughout, so nothing else rings it), and every ack is counted."""

    async def main() -> None:
        pairs = [await _meet(sock_path, page_peer) for _ in range(3)]
        for _, peer in pairs:
            struct.pack_into("=I", peer.page, 12, 1)  # each page peer asks for doorbells
        got: List[asyncio.Queue] = [asyncio.Queue() for _ in pairs]

        async def reader(client: ipcez.aio.AsyncSocket, out: asyncio.Queue) -> None:
            while True:  # a receive always waits: the socket is never let go
                out.put_nowait(await client.recv())

        readers = [asyncio.ensure_future(reader(c, q)) for (c, _), q in zip(pairs, got)]
        await asyncio.sleep(0.05)
        for round_ in range(5):
            for _, peer in pairs:
                peer.write_frame(b"round %d" % round_)
            time.sleep(0.03)  # the loop is blocked (not long enough for the library to take over)
            assert [await asyncio.wait_for(q.get(), 5) for q in got] == [b"round %d" % round_] * 3
            for i, (_, peer) in enumerate(pairs):
                rung = await asyncio.to_thread(_drain, peer.conn)
                assert rung and set(_words(rung)) == {DOORBELL}, f"peer {i}, round {round_}: {rung!r}"
                assert _word(peer.page, 0) == 2 + round_, "hello, then one per round, counted"
        for task in readers:
            task.cancel()
        for client, _ in pairs:
            await client.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_custom_peer_never_gets_a_doorbell(sock_path: str, page_peer: "PagePeerFactory") -> None:
    """A peer without a page (plain frames and the endpoint's named semaphores): acks in
    both directions go through the semaphores, and not a byte beyond the frames reaches
    it, however the aio side waits."""

    async def main() -> None:
        client = await ipcez.aio.connect(sock_path, ack_timeout=5.0)
        peer = await asyncio.to_thread(page_peer, False, True)
        ready, acked = (posix_ipc.Semaphore(n) for n in ipcez.ack_names(sock_path))
        try:
            for i in range(20):
                peer.write_frame(b"custom %d" % i)
                ready.release()
            got = [await client.recv(timeout=5) for _ in range(20)]
            assert got == [b"custom %d" % i for i in range(20)]
            for _ in range(20):
                acked.acquire(5)  # one per message
            for i in range(5):
                send = asyncio.ensure_future(client.send(b"to custom %d" % i))
                assert await asyncio.to_thread(peer.read_frame) == b"to custom %d" % i
                ready.acquire(5)
                acked.release()
                await asyncio.wait_for(send, 5)
            assert peer.rang_for_us == 0 and peer.buf == b""
            assert await asyncio.to_thread(_drain, peer.conn) == b"", "bytes beyond the frames"
        finally:
            ready.close()
            acked.close()
        await client.close()

    asyncio.run(asyncio.wait_for(main(), 60))


# -- real ipcez peers in other processes -------------------------------------------

SINK = r"""
import sys, ipcez
with ipcez.listen(sys.argv[1], ack_timeout=5) as listener:
    print("ready", flush=True)
    sock = listener.accept(timeout=30)
    sock.send(b"hi")  # the client learns our kind (it then asks for doorbells)
    n = 0
    while True:
        try:
            sock.recv(timeout=60)
        except (ipcez.ConnectionLost, TimeoutError):
            break
        n += 1
        print(n, flush=True)
"""


def _spawn(script: str, path: str) -> "subprocess.Popen[str]":
    proc = subprocess.Popen([sys.executable, "-c", script, path], stdout=subprocess.PIPE, text=True, env=child_env())
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _sink(path: str) -> "subprocess.Popen[str]":
    return _spawn(SINK, path)


def _end(*procs: "subprocess.Popen[str]") -> None:
    """Ends peers, stopped ones too."""
    for p in procs:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGCONT)
            p.kill()
            p.wait()


def _wait_child(pid: int, timeout: float) -> int:
    """A forked child's wait status; kills it (and says so) after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return status
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"child {pid} hung")


def _count(proc: "subprocess.Popen[str]") -> int:
    """The sink's last reported count, once it has ended."""
    out, _ = proc.communicate(timeout=30)
    lines = out.split()
    return int(lines[-1]) if lines else 0


async def _client(path: str, ack_timeout: float) -> ipcez.aio.AsyncSocket:
    client = await ipcez.aio.connect(path, ack_timeout=ack_timeout)
    assert await client.recv(timeout=10) == b"hi"
    await client.send(b"x")  # the first ack makes the connection private
    return client


def test_a_stalled_peer_beside_a_busy_one(short_dir) -> None:
    """One loop sends to two ipcez peers; one is stopped (SIGSTOP). The busy one's 300
    sends are all acked (0 false timeouts); the stopped one's sends time out, and none of
    its acks is false: what it was acked for, it read."""
    busy_proc, stalled_proc = _sink(str(short_dir / "busy.sock")), _sink(str(short_dir / "stalled.sock"))

    async def main() -> None:
        busy = await _client(str(short_dir / "busy.sock"), 5.0)
        stalled = await _client(str(short_dir / "stalled.sock"), 0.5)
        pause(stalled_proc.pid)
        acked_stalled, timeouts = 1, 0

        async def to_stalled() -> None:
            nonlocal acked_stalled, timeouts
            for i in range(3):
                try:
                    await stalled.send(b"s%d" % i)
                    acked_stalled += 1
                except ipcez.RecipientAckTimeout:
                    timeouts += 1

        async def to_busy() -> None:
            for i in range(300):
                await busy.send(b"b%d" % i)

        await asyncio.gather(to_stalled(), to_busy())
        assert timeouts >= 1, "a stopped peer acked everything"
        os.kill(stalled_proc.pid, signal.SIGCONT)
        await asyncio.sleep(0.2)
        await busy.close()
        await stalled.close()
        assert _count(busy_proc) == 301
        assert _count(stalled_proc) >= acked_stalled, "an ack for a message the peer never read"

    try:
        asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        _end(busy_proc, stalled_proc)


@pytest.mark.parametrize("how", ["fork", "sigkill", "close"])
def test_an_ack_wait_survives_fork_and_ends_cleanly(short_dir, how: str) -> None:
    """An aio send waits for its ack (the peer is stopped) when the process forks, the peer
    is killed, or the socket is closed: after a fork the parent's ack still comes exactly
    once and nothing is lost or doubled; a killed peer or a close ends the wait with
    ConnectionLost, never an ack."""
    path = str(short_dir / f"{how}.sock")
    proc = _sink(path)

    async def main() -> None:
        client = await _client(path, 10.0)
        for i in range(20):
            await client.send(b"before %d" % i)
        pause(proc.pid)
        waiting = asyncio.ensure_future(client.send(b"during"))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        if how == "fork":
            pid = os.fork()
            if pid == 0:
                os._exit(0)  # a child that leaves at once: it must not take the parent's ack
            os.waitpid(pid, 0)
            os.kill(proc.pid, signal.SIGCONT)
            await asyncio.wait_for(waiting, 10)
            for i in range(20):
                await client.send(b"after %d" % i)
            await client.close()
            assert _count(proc) == 1 + 20 + 1 + 20, "lost or doubled around the fork"
            return
        if how == "sigkill":
            os.kill(proc.pid, signal.SIGKILL)
        else:
            await client.close()
        with pytest.raises(ipcez.ConnectionLost):
            await asyncio.wait_for(waiting, 10)
        await client.close()

    try:
        asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        _end(proc)


def test_a_child_forked_during_an_ack_wait_gets_its_own_timeouts(short_dir) -> None:
    """The process forks while a loop on another thread awaits an ack: the child's own
    aio sends still get their acks, and a send to a stopped peer times out on time (the
    child's ack threads start afresh, with none of the parent's state)."""
    a, b = str(short_dir / "a.sock"), str(short_dir / "b.sock")
    procs = [_sink(a), _sink(b)]
    waiting = threading.Event()
    done = threading.Event()

    def parent_loop() -> None:
        async def main() -> None:
            client = await _client(a, 30.0)
            await client.send(b"y")
            pause(procs[0].pid)
            pending = asyncio.ensure_future(client.send(b"during"))
            await asyncio.sleep(0.3)
            waiting.set()
            while not done.is_set():
                await asyncio.sleep(0.05)
            pending.cancel()

        asyncio.run(main())

    t = threading.Thread(target=parent_loop, daemon=True)
    t.start()
    try:
        assert waiting.wait(30)
        pid = os.fork()
        if pid == 0:  # the child: exit status 0 only if every check held
            code = 1
            try:

                async def child() -> bool:
                    client = await _client(b, 0.5)
                    for i in range(6):
                        await asyncio.wait_for(client.send(b"m%d" % i), 5)
                        await asyncio.sleep(0.05)
                    pause(procs[1].pid)
                    began = time.monotonic()
                    try:
                        await asyncio.wait_for(client.send(b"stalled"), 5)
                    except ipcez.RecipientAckTimeout:
                        return time.monotonic() - began < 2
                    return False

                code = 0 if asyncio.run(child()) else 1
            finally:
                os._exit(code)
        status = _wait_child(pid, 30)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "the child's timeout did not come"
    finally:
        done.set()
        t.join(10)
        _end(*procs)


MANY = r"""
import sys, threading, ipcez
def serve(sock):
    sock.send(b"hi")
    for _ in sock:
        pass
with ipcez.listen(sys.argv[1], ack_timeout=5) as listener:
    print("ready", flush=True)
    while True:
        threading.Thread(target=serve, args=(listener.accept(),), daemon=True).start()
"""


def test_forks_while_the_ack_threads_are_busy_leave_each_child_its_own(short_dir) -> None:
    """200 sends await acks from a stopped peer, so the ack threads take their queue's lock
    over and over, while the process forks up to 40 times. Each child still gets the acks of
    its own sends: a child whose copy of that lock was held, at the fork, by a thread it
    does not have would hang (it did, before the queue was made per process)."""
    stalled_path, live_path = str(short_dir / "stalled.sock"), str(short_dir / "live.sock")
    procs = [_spawn(MANY, stalled_path), _spawn(MANY, live_path)]
    busy = threading.Event()
    done = threading.Event()
    failed: List[BaseException] = []

    def parent_loop() -> None:
        async def main() -> None:
            clients = [await _client(stalled_path, 60.0) for _ in range(200)]
            pause(procs[0].pid)
            pending = [asyncio.ensure_future(c.send(b"stalled")) for c in clients]
            await asyncio.sleep(0.1)
            assert not any(p.done() for p in pending)
            busy.set()
            while not done.is_set():
                await asyncio.sleep(0.05)
            for p in pending:
                p.cancel()

        try:
            asyncio.run(main())
        except BaseException as e:  # noqa: BLE001 - reported by the test's thread
            failed.append(e)
            busy.set()

    t = threading.Thread(target=parent_loop, daemon=True)
    t.start()
    try:
        assert busy.wait(30) and not failed, f"the parent's sends did not start: {failed}"
        forks, end = 0, time.monotonic() + 25  # well within the run's 60 s watchdog
        while forks < 40 and time.monotonic() < end:
            forks += 1
            pid = os.fork()
            if pid == 0:  # the child: exit status 0 once its send is acked
                code = 1
                try:
                    signal.alarm(8)  # a hang is a kill, seen by the parent

                    async def child() -> None:
                        client = await _client(live_path, 5.0)
                        await asyncio.wait_for(client.send(b"acked"), 5)

                    asyncio.run(child())
                    code = 0
                finally:
                    os._exit(code)
            status = _wait_child(pid, 10)
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"a child hung or failed: status {status:#x}"
        assert forks >= 10, f"only {forks} forks in 25 s"
    finally:
        done.set()
        t.join(10)
        _end(*procs)
