"""Borrow the memory of any bytes-like object for one C call, without copying it.

* ``bytes``: passed as is; ctypes hands C a pointer to the object's own buffer.
* Any other C-contiguous buffer (bytearray, memoryview, array.array, mmap,
  numpy arrays, ...): on CPython the buffer protocol is asked for the address
  (``PyObject_GetBuffer`` through ``ctypes.pythonapi``), which also pins the
  object (a bytearray cannot be resized) until the call returns.
* Where ``ctypes.pythonapi`` does not exist (PyPy), writable buffers are
  borrowed with ``(c_char * n).from_buffer``; read-only ones are copied once.
  This is the only copy the binding makes on the send path.
"""

from __future__ import annotations

import ctypes
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Tuple


class _PyBuffer(ctypes.Structure):
    # Py_buffer, part of the stable ABI since 3.11 and unchanged since 3.0.
    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.c_void_p),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    ]


_get_buffer: Optional[Any]
_release_buffer: Optional[Any]
try:
    _get_buffer = ctypes.pythonapi.PyObject_GetBuffer
    _get_buffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
    _get_buffer.restype = ctypes.c_int
    _release_buffer = ctypes.pythonapi.PyBuffer_Release
    _release_buffer.argtypes = [ctypes.POINTER(_PyBuffer)]
    _release_buffer.restype = None
except (AttributeError, OSError):  # PyPy and other implementations
    _get_buffer = _release_buffer = None

_PyBUF_SIMPLE = 0
_PyBUF_WRITABLE = 1


@contextmanager
def borrow(data: Any) -> Iterator[Tuple[Any, int]]:
    """Yield ``(pointer, length)`` for ``data``, valid until the ``with`` block ends.

    Raises TypeError for objects without the buffer protocol and BufferError
    for non-contiguous buffers.
    """
    if type(data) is bytes:
        yield (data if data else None), len(data)
        return
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(
            f"a bytes-like object is required, not {type(data).__name__!r}"
        ) from None
    with view:
        if not view.c_contiguous:
            raise BufferError("ipcez can only send C-contiguous buffers")
        n = view.nbytes
        if n == 0:
            yield None, 0
            return
        if _get_buffer is not None and _release_buffer is not None:
            pybuf = _PyBuffer()
            _get_buffer(view, ctypes.byref(pybuf), _PyBUF_SIMPLE)
            try:
                yield pybuf.buf, n
            finally:
                _release_buffer(ctypes.byref(pybuf))
        elif not view.readonly:
            yield (ctypes.c_char * n).from_buffer(view.cast("B")), n
        else:
            copy = view.tobytes()  # documented fallback: one copy, read-only non-bytes only
            yield copy, n


@contextmanager
def borrow_writable(data: Any) -> Iterator[Tuple[Any, int]]:
    """Yield ``(pointer, length)`` of a writable buffer (bytearray, memoryview, mmap,
    array.array, numpy arrays, ...), valid until the ``with`` block ends.

    Raises TypeError for read-only objects (such as ``bytes``) and objects
    without the buffer protocol, BufferError for non-contiguous buffers.
    """
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(
            f"a writable bytes-like object is required, not {type(data).__name__!r}"
        ) from None
    with view:
        if view.readonly:
            raise TypeError(
                f"a writable bytes-like object is required, not read-only {type(data).__name__!r} "
                "(use a bytearray or a memoryview of one)"
            )
        if not view.c_contiguous:
            raise BufferError("ipcez can only receive into C-contiguous buffers")
        n = view.nbytes
        if n == 0:
            yield None, 0
        elif _get_buffer is not None and _release_buffer is not None:
            pybuf = _PyBuffer()
            _get_buffer(view, ctypes.byref(pybuf), _PyBUF_WRITABLE)
            try:
                yield pybuf.buf, n
            finally:
                _release_buffer(ctypes.byref(pybuf))
        else:
            yield (ctypes.c_char * n).from_buffer(view.cast("B")), n
