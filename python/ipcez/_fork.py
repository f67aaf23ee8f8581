"""What ``fork()`` leaves behind, and how objects tell that they were inherited.

A forked child gets a copy of the parent's memory but none of its threads, while the
sockets, socket files and semaphores it inherits are still the parent's.  So an object
made before the fork is *detached* in the child: using it raises :class:`ForkedError`,
closing or collecting it does nothing, and the exit hooks skip it.  The child's own new
connections work normally (the library builds a runtime of its own in the child).

:data:`epoch` grows by one in every child (``os.register_at_fork``); an object records
it at creation and compares on use: one attribute read, no system call.  The library
makes the same check natively, which also covers a ``fork()`` made by C code.  Module
state of the package (locks a parent thread may have held at the fork, registries of
threads that do not exist in the child) is reset by the hooks registered with
:func:`in_child`.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, List

from ._errors import ForkedError

#: Which process an object belongs to: changes in every forked child.
epoch = 0

_child_hooks: List[Callable[[], None]] = []
_log = logging.getLogger("ipcez")


def in_child(hook: Callable[[], None]) -> Callable[[], None]:
    """Run ``hook`` in every child right after a fork (registration order; use as a decorator)."""
    _child_hooks.append(hook)
    return hook


def _after_fork_in_child() -> None:
    global epoch
    epoch += 1
    for hook in _child_hooks:
        try:
            hook()
        except Exception:  # noqa: BLE001 - the child must come up whatever happens
            _log.exception("ipcez: resetting state after fork failed")


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


def detached(obj: Any) -> ForkedError:
    """The error for using ``obj`` in a child forked after ``obj`` was made (also logged)."""
    what = type(obj).__name__
    error = ForkedError(f"this {what} was created before fork; connect again in the child")
    _log.warning("ipcez: %s used in pid %d: %s", what, os.getpid(), error)
    return error
