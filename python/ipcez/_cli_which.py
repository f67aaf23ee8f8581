"""``ipcez which``: the transport and address ``connect()`` would use, and why."""

from __future__ import annotations

import argparse
import json
import os
import stat
from typing import Any, Dict, List, Optional, Tuple

import ipcez

from ._cli_common import EXIT_OK, TRANSPORT_NAMES, error_text, out, resolve_endpoint
from ._resolve import env_source

WHICH_EPILOG = """\
examples:
  target=local os=linux ipcez which /tmp/app.sock
  ipcez which ws://example.org:8765/app
  ipcez which --json /tmp/app.sock

Nothing is connected to: this only answers which transport and address
ipcez.connect() would use, and which environment variables decided it.
"""

#: The variables behind a local endpoint's transport, shown side by side: (preferred, bare
#: name). Which one decides is the library's answer (``env_source``).
ENV_VARS = (("IPCEZ_TARGET", "target"), ("IPCEZ_OS", "os"))


def _env_decision() -> List[Dict[str, Any]]:
    """For each of target/os: the variables as set, and which one the library reads."""
    rows = []
    for preferred, bare in ENV_VARS:
        values = {name: os.environ.get(name) for name in (preferred, bare)}
        source = env_source(bare)  # the name and value the library read
        used, value = source if source else (None, None)
        rows.append({"setting": bare, "variables": values, "used": used, "value": value})
    return rows


def _socket_file_state(path: str) -> str:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "no such file yet (nothing listens here)"
    except OSError as exc:
        return f"cannot inspect it: {error_text(exc)}"
    if stat.S_ISSOCK(st.st_mode):
        return f"a socket file exists (mode {stat.S_IMODE(st.st_mode):04o})"
    if stat.S_ISDIR(st.st_mode):
        return "a directory is in the way: a listener cannot bind here"
    return "a file that is not a socket is in the way: a listener cannot bind here"


def _describe_env_row(row: Dict[str, Any]) -> str:
    """``target=local  (from `target`; IPCEZ_TARGET is unset)`` and the like."""
    setting, used, variables = row["setting"], row["used"], row["variables"]
    preferred = next(name for name in variables if name != setting)
    if used is None:
        return f"{setting} is not set (neither {preferred} nor {setting})"
    value = row["value"]
    head = f"{setting}={value.strip().lower()}"
    if used == preferred:
        other = variables[setting]
        rest = f"; it wins over {setting}={other!r}" if other is not None else ""
        why = f"from {preferred}={value!r}{rest}"
    else:
        why = f"from {setting}={value!r}; {preferred} is unset"
    return f"{head:<14} ({why})"


def cmd_which(args: argparse.Namespace) -> int:
    endpoint: str = args.endpoint
    resolution = resolve_endpoint(endpoint)
    url = resolution.transport == "websocket"
    rows = [] if url else _env_decision()
    try:
        acks: Optional[Tuple[str, str]] = None if url else ipcez.ack_names(endpoint)
    except ipcez.SocketError:
        acks = None
    if args.json:
        info: Dict[str, Any] = {
            "endpoint": endpoint,
            "transport": resolution.transport,
            "address": resolution.address,
            "environment": {
                row["setting"]: {"read_from": row["used"], **row["variables"]} for row in rows
            },
            "ack_names": list(acks) if acks else None,
        }
        if resolution.transport == "unix" and not os.path.isabs(resolution.address):
            info["relative_to"] = os.getcwd()
        out(json.dumps(info, indent=2))
        return EXIT_OK
    label = TRANSPORT_NAMES.get(resolution.transport, resolution.transport)
    out(f"endpoint:   {endpoint}")
    out(f"transport:  {resolution.transport} ({label})")
    out(f"address:    {resolution.address}")
    if resolution.transport == "unix" and not os.path.isabs(resolution.address):
        out(f"            (relative to the current directory, {os.getcwd()})")
    if url:
        out("decided by: the ws:// / wss:// scheme; no environment variable is read")
    else:
        for index, row in enumerate(rows):
            prefix = "decided by: " if index == 0 else "            "
            out(prefix + _describe_env_row(row))
    if acks:
        out(f"ack names:  {acks[0]}")
        out(f"            {acks[1]}")
    if resolution.transport == "unix":
        out(f"socket:     {_socket_file_state(resolution.address)}")
    return EXIT_OK
