"""How ``ipcez.aio`` opens sockets, listeners and servers: a blocking open on the helper
pool, wrapped in an awaitable that is also an async context manager."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Generator, Generic, Optional, TypeVar

from ._aio_hub import run_blocking

_R = TypeVar("_R")


class Opening(Generic[_R]):
    """What :func:`connect`/:func:`listen`/:func:`serve` return: await it, or use
    ``async with`` on it (closed on exit)."""

    def __init__(self, make: Callable[[], Awaitable[_R]]) -> None:
        self._make: Callable[[], Awaitable[_R]] = make
        self._value: Optional[_R] = None

    def __await__(self) -> Generator[Any, None, _R]:
        result: _R = yield from self._make().__await__()
        return result

    async def __aenter__(self) -> _R:
        self._value = await self._make()
        return self._value

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._value is not None:
            await self._value.__aexit__(*exc_info)  # type: ignore[attr-defined]


async def open_in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    future = asyncio.ensure_future(run_blocking(fn, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        # The call may still succeed in its thread: close what nobody will get.
        def close_orphan(done: "asyncio.Future[Any]") -> None:
            if not done.cancelled() and done.exception() is None:
                done.result().close()

        future.add_done_callback(close_orphan)
        raise
