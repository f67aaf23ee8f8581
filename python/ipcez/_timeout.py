"""Timeouts as the user gives them, and the short slices every blocking wait is cut into.

No native call waits longer than :data:`SLICE_SECONDS`: between slices Python runs its
signal handlers, so Ctrl-C interrupts any wait within 100 ms.
"""

from __future__ import annotations

import math
import numbers
import time
from typing import Any, Optional

#: Longest single wait inside the library: Ctrl-C is noticed at least this often.
SLICE_SECONDS = 0.1
SLICE_MS = 100


def check_timeout(timeout: Any, what: str = "timeout") -> Optional[float]:
    """``timeout`` as float seconds (None stays None).

    Raises TypeError for anything that is not a real number (a string, a bool) and
    ValueError for a negative number or NaN.
    """
    if timeout is None:
        return None
    if type(timeout) is not float and type(timeout) is not int:
        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
            raise TypeError(
                f"{what} must be None or a number of seconds (int or float), "
                f"not {type(timeout).__name__} {timeout!r}"
            )
    seconds = float(timeout)
    if not seconds >= 0:  # also rejects NaN
        raise ValueError(f"{what} must be None or a number >= 0, not {timeout!r}")
    return seconds


def deadline_after(timeout: Optional[float]) -> Optional[float]:
    """The ``time.monotonic()`` value at which ``timeout`` runs out (None: never)."""
    return None if timeout is None else time.monotonic() + timeout


def slice_ms(deadline: Optional[float]) -> int:
    """The next wait in milliseconds: one slice, or what is left before ``deadline``."""
    if deadline is None:
        return SLICE_MS
    return ms(min(SLICE_SECONDS, max(deadline - time.monotonic(), 0.0)))


def expired(deadline: Optional[float]) -> bool:
    """True once ``deadline`` has passed (never for None)."""
    return deadline is not None and time.monotonic() >= deadline


def ms(seconds: float) -> int:
    """Seconds as whole milliseconds for a ``uint32_t`` (rounded up, clamped)."""
    if seconds != seconds or seconds <= 0:  # NaN or not positive
        return 0
    if seconds == math.inf:
        return 0xFFFFFFFF
    return max(0, min(math.ceil(seconds * 1000), 0xFFFFFFFF))
