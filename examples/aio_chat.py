"""An asyncio chat between two processes, with ``ipcez.aio``.

Run (one command; it starts its chat partner itself)::

    python examples/aio_chat.py                      # a Unix socket in the temp directory
    python examples/aio_chat.py ws://127.0.0.1:0/chat

Alice (this process) listens and starts Bob (``aio_chat.py --bob ADDRESS``, a
second Python process).  Each side runs two tasks at once on its event loop:
one speaks its lines, one prints what the other says, so messages cross in
both directions while neither side blocks.  Each says "bye" last; a side is
done once it has said and heard "bye".
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from typing import List

import ipcez.aio

# Local endpoints read `target` and `os` from the environment.  A deployment sets
# them once (`export target=local os=linux`); the example defaults them so it runs as is.
# (Bob inherits them.)
os.environ.setdefault("target", "local")
os.environ.setdefault("os", "windows" if sys.platform == "win32" else "linux")

LINES = {
    "alice": ["hi Bob, it's Alice", "ipcez picked the transport for us", "bye"],
    "bob": ["hello Alice!", "and neither of us blocked the event loop", "bye"],
}


async def chat(name: str, sock: ipcez.aio.AsyncSocket) -> None:
    """Speak and listen at the same time until both sides said bye."""
    other = "bob" if name == "alice" else "alice"

    async def speak() -> None:
        for line in LINES[name]:
            await asyncio.sleep(0.05)  # typing...
            await sock.send(line.encode())  # local: returns once the other side acked it

    async def hear() -> List[str]:
        heard = []
        async for raw in sock:  # ends if the connection goes away
            line = raw.decode()
            heard.append(line)
            print(f"[{name}] {other} says: {line}", flush=True)
            if line == "bye":
                break
        return heard

    _, heard = await asyncio.gather(speak(), asyncio.wait_for(hear(), timeout=10))
    assert heard == LINES[other], heard


async def alice(endpoint: str) -> int:
    async with ipcez.aio.listen(endpoint) as server:
        print(f"[alice] listening on {server.address}; starting Bob", flush=True)
        bob = await asyncio.create_subprocess_exec(
            sys.executable, os.path.abspath(__file__), "--bob", server.address
        )
        try:
            async with await server.accept(timeout=10) as sock:
                print(f"[alice] Bob connected over {sock.transport}", flush=True)
                await chat("alice", sock)
            return await asyncio.wait_for(bob.wait(), timeout=10)
        finally:
            if bob.returncode is None:
                bob.kill()
                await bob.wait()


async def bob(address: str) -> int:
    async with ipcez.aio.connect(address) as sock:
        await chat("bob", sock)
    return 0


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--bob":
        return asyncio.run(bob(sys.argv[2]))
    endpoint = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        tempfile.gettempdir(), f"ipcez-chat-{os.getpid()}.sock"
    )
    status = asyncio.run(alice(endpoint))
    print("[alice] chat over; Bob exited with status", status, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
