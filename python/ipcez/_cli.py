"""The ``ipcez`` command line: ``which``, ``listen``, ``send`` and ``demo``.

Exit status: 0 ok, 1 runtime failure, 2 usage or detection error, 130 interrupted
(Ctrl-C during ``send`` or ``demo``; Ctrl-C is the normal way to stop ``listen``,
which then exits 0).  Errors go to stderr as one line, ``ipcez: error: ...``;
``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import List, NoReturn, Optional

import ipcez

from ._cli_common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, PROG, CliError, error_text
from ._cli_demo import DEMO_EPILOG, cmd_demo
from ._cli_listen import LISTEN_EPILOG, cmd_listen
from ._cli_send import SEND_EPILOG, cmd_send
from ._cli_which import WHICH_EPILOG, cmd_which

__all__ = ["main", "build_parser"]

MAIN_EPILOG = """\
examples:
  ipcez demo                                  both transports at work, no setup needed
  export target=local os=linux                local endpoints need these two variables
  ipcez which /tmp/app.sock                   the transport connect() would pick, and why
  ipcez listen /tmp/app.sock --echo           serve: print and echo every message
  ipcez send /tmp/app.sock hello world        send two messages, print the replies
  printf 'a\\nb\\n' | ipcez send /tmp/app.sock  send each stdin line as a message
  ipcez listen ws://127.0.0.1:8765/app        a WebSocket listener (URLs need no environment)

environment (local endpoints only; ws:// and wss:// URLs read nothing):
  target, os               target=local|remote, os=linux|windows (case-insensitive)
  IPCEZ_TARGET, IPCEZ_OS   take precedence over target and os when set

exit status: 0 ok, 1 runtime failure, 2 usage or detection error, 130 interrupted
"""


def _octal(text: str) -> int:
    try:
        value = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an octal mode: {text!r}") from None
    if not 0 <= value <= 0o7777:
        raise argparse.ArgumentTypeError(f"mode out of range: {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, with every usage error as ``ipcez: error: ...`` (also for subcommands)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``ipcez`` command."""
    common = _Parser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS,
        help="show the traceback when something fails",
    )
    parser = _Parser(
        prog=PROG,
        description="Inter-process messaging: Unix sockets, named pipes or WebSockets, "
        "picked from the endpoint.",
        epilog=MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {ipcez.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, helptext: str, epilog: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".",
            epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common],
        )

    p = add("which", "show the transport and address connect() would use, and why", WHICH_EPILOG)
    p.add_argument("endpoint", metavar="ENDPOINT", help="a socket path, pipe name or ws:// URL")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.set_defaults(func=cmd_which)

    p = add("listen", "accept connections and print every message that arrives", LISTEN_EPILOG)
    p.add_argument("endpoint", metavar="ENDPOINT", help="a socket path, pipe name or ws:// URL")
    p.add_argument("--echo", action="store_true", help="send every message back to its sender")
    p.add_argument("--count", type=int, metavar="N", help="exit after N messages (all clients together)")
    p.add_argument("--mode", type=_octal, metavar="OCTAL", help="permission bits of the socket file (default 600)")
    p.add_argument("--certfile", metavar="PEM", help="certificate chain for a wss:// listener")
    p.add_argument("--keyfile", metavar="PEM", help="private key for a wss:// listener")
    p.add_argument("--max-connections", type=int, metavar="N",
                   help="open connections at most; more are closed at once "
                        "(default 1024, or fewer to fit under ulimit -n)")
    p.add_argument("--origin", action="append", metavar="ORIGIN", dest="origins",
                   help="a WebSocket Origin to allow besides the listener's own (repeatable; * for any)")
    p.add_argument("--subprotocol", action="append", metavar="NAME", dest="subprotocols",
                   help="a WebSocket subprotocol this listener speaks (repeatable)")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                   help="what ipcez logs to stderr: refused handshakes, disconnected peers, ... "
                   "(default warning)")
    p.set_defaults(func=cmd_listen)

    p = add("send", "send messages and print the replies", SEND_EPILOG)
    p.add_argument("endpoint", metavar="ENDPOINT", help="a socket path, pipe name or ws:// URL")
    p.add_argument("messages", metavar="MESSAGE", nargs="*", help="messages to send (default: stdin lines)")
    p.add_argument("--wait", type=float, default=0.5, metavar="SECONDS",
                   help="print replies that arrive up to SECONDS after the last send (default 0.5)")
    p.add_argument("--ack-timeout", type=float, default=5.0, metavar="SECONDS",
                   help="how long a local send waits for the recipient's ack (default 5)")
    p.add_argument("--hex", action="store_true", help="messages are hex strings (binary data)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--subprotocol", action="append", metavar="NAME", dest="subprotocols",
                   help="a WebSocket subprotocol to offer (repeatable, in order of preference)")
    p.set_defaults(func=cmd_send)

    p = add("demo", "a self-contained demonstration of both transports (no setup)", DEMO_EPILOG)
    p.add_argument("--rounds", type=int, default=200, metavar="N",
                   help="small round trips per transport for the latency summary (default 200)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the ``ipcez`` command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_USAGE)
    if getattr(args, "func", None) is None:
        parser.print_usage(sys.stderr)
        sys.stderr.write(f"{PROG}: error: a command is required (try `{PROG} demo` or `{PROG} --help`)\n")
        return EXIT_USAGE
    debug = getattr(args, "debug", False)
    error: Optional[BaseException] = None
    try:
        return int(args.func(args))
    except CliError as exc:
        error, code, message = exc, exc.code, str(exc)
    except KeyboardInterrupt as exc:
        error, code, message = exc, EXIT_INTERRUPTED, "interrupted"
    except BrokenPipeError:
        # stdout went away (`ipcez listen ... | head`): stop quietly.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_FAILURE
    except (ipcez.DetectionError, ipcez.UnsupportedCombination) as exc:
        error, code, message = exc, EXIT_USAGE, error_text(exc)
    except (ipcez.SocketError, OSError) as exc:
        error, code, message = exc, EXIT_FAILURE, error_text(exc)
    except Exception as exc:  # noqa: BLE001 - a bug: still one line unless --debug
        error, code = exc, EXIT_FAILURE
        message = f"unexpected {type(exc).__name__}: {error_text(exc)}"
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    if debug:
        traceback.print_exception(type(error), error, error.__traceback__)
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()
    return code
