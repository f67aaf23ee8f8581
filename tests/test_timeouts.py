"""Timeouts are real numbers of seconds, and the library owns the ack deadline.

Strings and bools are refused with TypeError before anything is waited for (a
string used to be accepted through ``float()``); negative numbers and NaN stay
ValueError.  Through the C ABI, ``ipcez_socket_send`` / ``ipcez_socket_wait_ack``
keep the deadline of the pending send themselves: the caller only re-calls per slice.
"""

from __future__ import annotations

import asyncio
import ctypes
import fractions
import math
import socket
import time
from typing import Any, Iterator, Tuple

import pytest

import ipcez
import ipcez.aio
from ipcez import _abi, _errors, _ffi

NOT_NUMBERS = ["0.2", b"1", True, False, [1], object()]


@pytest.fixture
def pair(sock_path: str) -> Iterator[Tuple[ipcez.Listener, ipcez.Socket, ipcez.Socket]]:
    with ipcez.listen(sock_path) as listener:
        client = ipcez.connect(sock_path)
        server = listener.accept(timeout=5)
        try:
            yield listener, client, server
        finally:
            client.close()
            server.close()


@pytest.mark.parametrize("bad", NOT_NUMBERS, ids=repr)
def test_recv_and_accept_refuse_non_numbers(pair: Any, bad: Any) -> None:
    listener, client, server = pair
    with pytest.raises(TypeError, match="timeout must be None or a number of seconds"):
        server.recv(timeout=bad)
    with pytest.raises(TypeError, match="timeout must be None or a number of seconds"):
        listener.accept(timeout=bad)
    client.send(b"still fine")  # nothing was consumed or broken
    assert server.recv(timeout=5) == b"still fine"


@pytest.mark.parametrize("bad", NOT_NUMBERS, ids=repr)
def test_connect_and_listen_refuse_non_number_ack_timeouts(sock_path: str, bad: Any) -> None:
    with pytest.raises(TypeError, match="ack_timeout must be None or a number of seconds"):
        ipcez.connect(sock_path, ack_timeout=bad)
    with pytest.raises(TypeError, match="ack_timeout"):
        ipcez.listen(sock_path, ack_timeout=bad)
    with pytest.raises(TypeError, match="ack_timeout"):
        ipcez.aio.connect(sock_path, ack_timeout=bad)


@pytest.mark.parametrize("bad", [-1, -0.001, math.nan])
def test_negative_and_nan_stay_value_errors(pair: Any, bad: float) -> None:
    listener, _, server = pair
    with pytest.raises(ValueError):
        server.recv(timeout=bad)
    with pytest.raises(ValueError):
        listener.accept(timeout=bad)


def test_other_real_numbers_are_accepted(pair: Any) -> None:
    listener, _, server = pair
    for timeout in (0, 0.05, fractions.Fraction(1, 20)):
        with pytest.raises(TimeoutError):
            server.recv(timeout=timeout)
    with pytest.raises(TimeoutError):
        listener.accept(timeout=fractions.Fraction(1, 20))


def test_aio_recv_refuses_a_string(pair: Any) -> None:
    _, _, server = pair

    async def main() -> None:
        sock = ipcez.aio.AsyncSocket(server)
        with pytest.raises(TypeError, match="timeout"):
            await sock.recv(timeout="0.2")  # type: ignore[arg-type]

    asyncio.run(main())


def _send(handle: Any, data: bytes, slice_ms: int) -> Tuple[int, Any]:
    err = _ffi.error_p()
    rc = _ffi.lib.ipcez_socket_send(handle, data, len(data), slice_ms, ctypes.byref(err))
    return rc, err


def test_c_abi_reports_the_ack_timeout_itself(sock_path: str) -> None:
    """A raw peer that never acks: wait_ack returns TIMEOUT per slice, then the library's
    own RecipientAckTimeout error once the socket's ack timeout has passed."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(1)
    client = ipcez.connect(sock_path, ack_timeout=0.3)
    conn, _ = server.accept()
    try:
        with client._use() as handle:
            t0 = time.monotonic()
            rc, err = _send(handle, b"nobody acks this", 0)
            assert rc == _abi.RESULT_TIMEOUT
            slices = 0
            err = _ffi.error_p()
            while True:
                rc = _ffi.lib.ipcez_socket_wait_ack(handle, 20, ctypes.byref(err))
                if rc != _abi.RESULT_TIMEOUT:
                    break
                slices += 1
                assert time.monotonic() - t0 < 5, "the library never ended the wait"
            elapsed = time.monotonic() - t0
        assert rc == _abi.RESULT_ERROR
        exc = _errors.take(err)
        assert isinstance(exc, ipcez.RecipientAckTimeout), exc
        assert slices >= 3, slices  # several short slices, not one long wait
        assert 0.25 <= elapsed < 2, elapsed
    finally:
        client.close()
        conn.close()
        server.close()


def test_c_abi_wait_ack_without_a_pending_send_is_an_error(sock_path: str) -> None:
    with ipcez.listen(sock_path) as listener, ipcez.connect(sock_path) as client:
        with listener.accept(timeout=5), client._use() as handle:
            err = _ffi.error_p()
            rc = _ffi.lib.ipcez_socket_wait_ack(handle, 10, ctypes.byref(err))
            assert rc == _abi.RESULT_ERROR
            exc = _errors.take(err)
            assert isinstance(exc, ipcez.IoError) and "no message sent on this thread" in str(exc)
