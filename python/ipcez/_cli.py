"""The ``ipcez`` command line (SPEC §7): ``which``, ``listen``, ``send`` and ``demo``.

Exit status: 0 ok, 1 runtime failure, 2 usage or detection error, 130 interrupted
(Ctrl-C during ``send`` or ``demo``; Ctrl-C is the normal way to stop ``listen``,
which then exits 0).  Errors go to stderr as one line, ``ipcez: error: ...``;
``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import signal
import stat
import statistics
import sys
import tempfile
import threading
import time
import traceback
from typing import Any, Callable, Dict, Iterable, Iterator, List, NoReturn, Optional, Sequence, Tuple

import ipcez

__all__ = ["main", "build_parser"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: The environment variables that decide a local endpoint's transport: (preferred, bare name).
ENV_VARS = (("IPCEZ_TARGET", "target"), ("IPCEZ_OS", "os"))

TRANSPORT_NAMES = {
    "unix": "Unix domain socket",
    "websocket": "WebSocket",
    "named_pipe": "Windows named pipe",
}

PROG = "ipcez"

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

WHICH_EPILOG = """\
examples:
  target=local os=linux ipcez which /tmp/app.sock
  ipcez which ws://example.org:8765/app
  ipcez which --json /tmp/app.sock

Nothing is connected to: this only answers which transport and address
ipcez.connect() would use, and which environment variables decided it.
"""

LISTEN_EPILOG = """\
examples:
  ipcez listen /tmp/app.sock                  print every message that arrives
  ipcez listen /tmp/app.sock --echo           ... and send each one back
  ipcez listen /tmp/app.sock --count 3        exit after three messages
  ipcez listen ws://127.0.0.1:0/app           a WebSocket on a free port (printed)

Several clients may be connected at once.  Text messages are printed as text,
others as a hex preview with their length.  Ctrl-C (or SIGTERM) stops the
listener and removes its socket file.
"""

SEND_EPILOG = """\
examples:
  ipcez send /tmp/app.sock hello              one message
  ipcez send /tmp/app.sock a b c --wait 2     three messages; print replies for 2 s
  ipcez send --hex /tmp/app.sock 00ff10       a binary message
  seq 3 | ipcez send /tmp/app.sock            stdin lines (without their newline)

On local transports each send waits until the recipient has acknowledged it.
Replies are printed to stdout as they arrive; progress goes to stderr.
"""

DEMO_EPILOG = """\
The demo needs no environment: it sets target/os for its own process only.
It starts a listener on a temporary Unix socket and one on ws://127.0.0.1:0/demo,
connects to each, exchanges a few messages (one of 1 MiB), measures round trips
and removes everything it created.
"""


class CliError(Exception):
    """A failure to report as ``ipcez: error: <message>`` with exit status ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


# -- output helpers ---------------------------------------------------------------

_print_lock = threading.Lock()


def _out(line: str = "") -> None:
    """Print one line to stdout (thread-safe, flushed at once)."""
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _note(line: str) -> None:
    """Print one ``ipcez: ...`` progress line to stderr."""
    with _print_lock:
        sys.stderr.write(f"{PROG}: {line}\n")
        sys.stderr.flush()


def _timestamp() -> str:
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"


def _size(n: int) -> str:
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MiB"
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} B"


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms"


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}

#: Characters of text shown before a long message is cut; bytes of a hex preview.
TEXT_PREVIEW = 200
HEX_PREVIEW = 32


def _as_text(data: bytes) -> Optional[str]:
    """The message as text when it is UTF-8 without control characters (tab, CR, LF allowed)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(not (c.isprintable() or c in "\n\r\t") for c in text):
        return None
    return text


def _hex_preview(data: bytes) -> str:
    shown = data[:HEX_PREVIEW].hex(" ")
    return shown + (" ..." if len(data) > HEX_PREVIEW else "")


def describe(data: bytes) -> str:
    """One line for a message: ``text (5 B): hello`` or ``binary (3 B): 00 ff 10``."""
    text = _as_text(data)
    if not data:
        return "empty message (0 B)"
    if text is None:
        return f"binary ({_size(len(data))}): {_hex_preview(data)}"
    shown = "".join(_ESCAPES.get(c, c) for c in text[:TEXT_PREVIEW])
    if len(text) > TEXT_PREVIEW:
        shown += " ..."
    return f"text ({_size(len(data))}): {shown}"


def _error_text(exc: BaseException) -> str:
    """A readable one-line description of an exception."""
    if isinstance(exc, OSError) and exc.strerror:
        text = str(exc.strerror)
        if exc.filename is not None:
            text += f": {exc.filename}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


# -- resolution -----------------------------------------------------------------------


def _env_decision() -> List[Dict[str, Any]]:
    """For each of target/os: the variables as set, and which one the library reads."""
    rows = []
    for preferred, bare in ENV_VARS:
        values = {name: os.environ.get(name) for name in (preferred, bare)}
        used = next((name for name in (preferred, bare) if values[name] is not None), None)
        rows.append({"setting": bare, "variables": values, "used": used})
    return rows


def _is_url(endpoint: str) -> bool:
    return endpoint[:6].lower().startswith(("ws://", "wss://"))


def _resolve(endpoint: str) -> "ipcez.Resolution":
    """``ipcez.which(endpoint)``; a problem with the endpoint or environment is exit 2."""
    try:
        return ipcez.which(endpoint)
    except (ipcez.DetectionError, ipcez.UnsupportedCombination, ipcez.WsError) as exc:
        raise CliError(_error_text(exc), EXIT_USAGE) from exc
    except ipcez.IoError as exc:
        if exc.errno == errno.EINVAL:  # empty endpoint, NUL byte, malformed URL
            raise CliError(_error_text(exc), EXIT_USAGE) from exc
        raise


def _absolute(path: str) -> str:
    """``path`` made absolute like Rust's ``std::path::absolute`` on POSIX (``..`` kept)."""
    if not os.path.isabs(path):
        path = os.path.join(os.getcwd(), path)
    lead = "//" if path.startswith("//") and not path.startswith("///") else "/"
    parts = [part for part in path.split("/") if part not in ("", ".")]
    return lead + "/".join(parts)


def _socket_file_state(path: str) -> str:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "no such file yet (nothing listens here)"
    except OSError as exc:
        return f"cannot inspect it: {_error_text(exc)}"
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
    value = variables[used]
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
    resolution = _resolve(endpoint)
    url = _is_url(endpoint)
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
        if resolution.transport == "unix":
            info["absolute_path"] = _absolute(resolution.address)
        _out(json.dumps(info, indent=2))
        return EXIT_OK
    label = TRANSPORT_NAMES.get(resolution.transport, resolution.transport)
    _out(f"endpoint:   {endpoint}")
    _out(f"transport:  {resolution.transport} ({label})")
    _out(f"address:    {resolution.address}")
    if resolution.transport == "unix" and not os.path.isabs(resolution.address):
        _out(f"            (relative to the current directory: {_absolute(resolution.address)})")
    if url:
        _out("decided by: the ws:// / wss:// scheme; no environment variable is read")
    else:
        for index, row in enumerate(rows):
            prefix = "decided by: " if index == 0 else "            "
            _out(prefix + _describe_env_row(row))
    if acks:
        _out(f"ack names:  {acks[0]}")
        _out(f"            {acks[1]}")
    if resolution.transport == "unix":
        _out(f"socket:     {_socket_file_state(resolution.address)}")
    return EXIT_OK


# -- listen ---------------------------------------------------------------------------


class _SignalsToInterrupt:
    """While active, SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt (even if SIGINT was ignored)."""

    def __init__(self) -> None:
        self._saved: List[Tuple[int, Any]] = []

    def __enter__(self) -> "_SignalsToInterrupt":
        if threading.current_thread() is not threading.main_thread():
            return self
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            signum = getattr(signal, name, None)
            if signum is None:
                continue
            try:
                self._saved.append((signum, signal.signal(signum, self._raise)))
            except (OSError, ValueError):
                pass
        return self

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def shield(self) -> None:
        """From now on ignore these signals (a second Ctrl-C must not interrupt the cleanup)."""
        for signum, _ in self._saved:
            signal.signal(signum, signal.SIG_IGN)

    def __exit__(self, *exc_info: Any) -> None:
        for signum, handler in self._saved:
            signal.signal(signum, handler)


class _Server:
    """State shared by the connection threads of ``ipcez listen``."""

    def __init__(self, echo: bool, count: Optional[int]) -> None:
        self.echo = echo
        self.count = count
        self.received = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.sockets: Dict[int, "ipcez.Socket"] = {}
        self.threads: List[threading.Thread] = []

    def serve(self, sock: "ipcez.Socket", conn_id: int) -> None:
        tag = f"#{conn_id}"
        try:
            while not self.done.is_set():
                try:
                    message = sock.recv(timeout=0.2)
                except TimeoutError:
                    continue
                with self.lock:
                    if self.count is not None and self.received >= self.count:
                        break
                    self.received += 1
                    last = self.count is not None and self.received >= self.count
                _out(f"{_timestamp()} {tag} {describe(message)}")
                if self.echo:
                    try:
                        sock.send(message)
                    except ipcez.SocketError as exc:
                        _note(f"{tag}: could not echo: {_error_text(exc)}")
                if last:
                    self.done.set()
        except ipcez.ConnectionLost:
            if not self.done.is_set():
                _out(f"{_timestamp()} {tag} disconnected")
        except ipcez.SocketError as exc:
            if not self.done.is_set():
                _out(f"{_timestamp()} {tag} closed after an error: {_error_text(exc)}")
        except BrokenPipeError:  # stdout went away (`ipcez listen ... | head`): stop
            self.done.set()
        finally:
            sock.close()
            with self.lock:
                self.sockets.pop(conn_id, None)


def cmd_listen(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        raise CliError("--count must be at least 1", EXIT_USAGE)
    resolution = _resolve(args.endpoint)
    kwargs: Dict[str, Any] = {}
    if args.certfile or args.keyfile:
        kwargs.update(certfile=args.certfile, keyfile=args.keyfile)
    if args.mode is not None:
        kwargs["mode"] = args.mode
    server = _Server(args.echo, args.count)
    with _SignalsToInterrupt() as signals:
        listener = ipcez.listen(args.endpoint, **kwargs)
        try:
            what = "echoing" if args.echo else "printing"
            until = f"exits after {args.count} message(s) or Ctrl-C" if args.count else "Ctrl-C stops"
            _out(
                f"listening on {listener.address} "
                f"({TRANSPORT_NAMES.get(resolution.transport, resolution.transport)}); "
                f"{what} messages; {until}"
            )
            conn_id = 0
            while not server.done.is_set():
                try:
                    sock = listener.accept(timeout=0.2)
                except TimeoutError:
                    continue
                conn_id += 1
                _out(f"{_timestamp()} #{conn_id} connected ({sock.transport})")
                with server.lock:
                    server.sockets[conn_id] = sock
                thread = threading.Thread(
                    target=server.serve, args=(sock, conn_id), name=f"ipcez-listen-{conn_id}", daemon=True
                )
                thread.start()
                server.threads.append(thread)
            _out(f"{_timestamp()} received {server.received} message(s); stopping")
        except KeyboardInterrupt:
            _out(f"{_timestamp()} interrupted; stopping")
        finally:
            signals.shield()
            # The connection threads notice `done` within 0.2 s and close their own
            # sockets; only one stuck in an echo (waiting for an ack) is closed from here.
            server.done.set()
            deadline = time.monotonic() + 1.0
            for thread in server.threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
            with server.lock:
                open_sockets = list(server.sockets.values())
            for sock in open_sockets:
                sock.close()
            listener.close()
    if resolution.transport == "unix":
        _out(f"removed {resolution.address}" if not os.path.exists(resolution.address)
             else f"warning: {resolution.address} still exists")
    return EXIT_OK


# -- send -----------------------------------------------------------------------------


def _stdin_messages() -> Iterator[bytes]:
    stream = sys.stdin.buffer
    while True:
        line = stream.readline()
        if not line:
            return
        if line.endswith(b"\n"):
            line = line[:-1]
            if line.endswith(b"\r"):
                line = line[:-1]
        yield line


def _arg_messages(messages: Sequence[str], as_hex: bool) -> Iterator[bytes]:
    for text in messages:
        if as_hex:
            try:
                yield bytes.fromhex(text)
            except ValueError as exc:
                raise CliError(f"not a hex string: {text!r} ({exc})", EXIT_USAGE) from exc
        else:
            yield os.fsencode(text)  # the exact bytes of the argument


def _print_reply(data: bytes) -> None:
    text = _as_text(data)
    if text is not None and data:
        _out(text)
    else:
        _out(describe(data))


def cmd_send(args: argparse.Namespace) -> int:
    if args.wait < 0:
        raise CliError("--wait must be >= 0", EXIT_USAGE)
    if args.ack_timeout <= 0:
        raise CliError("--ack-timeout must be > 0", EXIT_USAGE)
    resolution = _resolve(args.endpoint)
    if args.messages:
        messages: Iterable[bytes] = list(_arg_messages(args.messages, args.hex))  # validate first
    else:
        if args.hex:
            messages = (_parse_hex_line(line) for line in _stdin_messages())
        else:
            messages = _stdin_messages()
        if sys.stdin.isatty() and not args.quiet:
            _note("reading messages from stdin, one per line (Ctrl-D ends)")
    try:
        sock = ipcez.connect(args.endpoint, ack_timeout=args.ack_timeout)
    except ipcez.IoError as exc:
        raise CliError(_error_text(exc)) from exc
    replies = [0]
    reader_error: List[BaseException] = []
    stop_reading = threading.Event()

    def read_replies() -> None:
        # Short waits and a stop flag, so that the socket is never closed while this
        # thread is inside recv (the main thread joins it first).
        try:
            while not stop_reading.is_set():
                try:
                    reply = sock.recv(timeout=0.05)
                except TimeoutError:
                    continue
                replies[0] += 1
                _print_reply(reply)
        except ipcez.ConnectionLost:
            pass
        except ipcez.SocketError as exc:
            reader_error.append(exc)

    reader = threading.Thread(target=read_replies, name="ipcez-send-replies", daemon=True)
    reader.start()
    local = resolution.transport != "websocket"
    sent = 0
    try:
        for data in messages:
            started = time.perf_counter()
            sock.send(data)
            took = time.perf_counter() - started
            sent += 1
            if not args.quiet:
                how = f"acked in {_ms(took)}" if local else "sent (WebSocket sends are not acked)"
                _note(f"message {sent}: {_size(len(data))} {how}")
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline and not sock.closed:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    except ipcez.RecipientAckTimeout as exc:
        raise CliError(f"message {sent + 1}: {_error_text(exc)}") from exc
    except ipcez.ConnectionLost as exc:
        raise CliError(f"message {sent + 1}: the connection was lost ({_error_text(exc)})") from exc
    finally:
        stop_reading.set()
        reader.join(timeout=2.0)
        sock.close()
    if reader_error:
        raise CliError(f"while reading replies: {_error_text(reader_error[0])}")
    if not args.quiet:
        _note(f"sent {sent} message(s), received {replies[0]} repl{'y' if replies[0] == 1 else 'ies'}")
    return EXIT_OK


def _parse_hex_line(line: bytes) -> bytes:
    try:
        return bytes.fromhex(line.decode("ascii"))
    except ValueError as exc:
        raise CliError(f"not a hex string: {line!r}", EXIT_USAGE) from exc


# -- demo -----------------------------------------------------------------------------


def _percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, int(round(fraction * (len(ordered) - 1)))))
    return ordered[index]


class _DemoResult:
    def __init__(self, transport: str) -> None:
        self.transport = transport
        self.big_seconds = 0.0
        self.rtts: List[float] = []
        self.acks: List[float] = []


def _demo_unix_endpoint() -> Tuple[str, Callable[[], None]]:
    if sys.platform == "win32":
        return f"ipcez-demo-{os.getpid()}", lambda: None
    base = tempfile.gettempdir()
    if len(base) > 60:  # AF_UNIX paths are limited to ~107 bytes
        base = "/tmp"
    directory = tempfile.mkdtemp(prefix="ipcez-demo-", dir=base)
    return os.path.join(directory, "demo.sock"), lambda: shutil.rmtree(directory, ignore_errors=True)


def _demo_transport(title: str, endpoint: str, rounds: int) -> _DemoResult:
    """Run the demo against one endpoint; prints as it goes."""
    timeout = 10.0
    resolution = ipcez.which(endpoint)
    result = _DemoResult(resolution.transport)
    local = resolution.transport != "websocket"
    _out(f"{title}")
    _out(f"  which({endpoint!r})")
    _out(f"    -> transport {resolution.transport} ({TRANSPORT_NAMES.get(resolution.transport)}), "
         f"address {resolution.address}")
    with ipcez.listen(endpoint) as listener:
        real = " (port 0 asked, the listener reports the real port)" if listener.address != endpoint else ""
        _out(f"  listening on {listener.address}{real}")
        with ipcez.connect(listener.address) as client, listener.accept(timeout=timeout) as server:
            _out(f"  connected: client.transport = {client.transport!r}")
            # hello, both ways
            for sender, receiver, text, arrow in (
                (client, server, b"hello from the client", "client -> server"),
                (server, client, b"hello back from the server", "server -> client"),
            ):
                started = time.perf_counter()
                sender.send(text)
                acked = time.perf_counter() - started
                got = receiver.recv(timeout=timeout)
                arrived = time.perf_counter() - started
                if got != text:
                    raise CliError(f"demo: {arrow} delivered {got!r} instead of {text!r}")
                how = f"acked after {_ms(acked)}, " if local else ""
                tail = "" if local or sender is server else " (WebSocket sends wait for no ack)"
                _out(f"  {arrow}: {text.decode()!r}: {how}received after {_ms(arrived)}{tail}")
            # a 1 MiB message
            big = bytes(range(256)) * 4096
            started = time.perf_counter()
            client.send(big)
            got = server.recv(timeout=timeout)
            took = time.perf_counter() - started
            if got != big:
                raise CliError(f"demo: the 1 MiB message arrived damaged ({len(got)} bytes)")
            result.big_seconds = took
            ack_note = ", send returned once the server had acked it" if local else ""
            _out(f"  1 MiB message: delivered intact in {_ms(took)} "
                 f"({len(big) / took / 2**20:.0f} MiB/s{ack_note})")
            # the size limit
            try:
                client.send(bytes(ipcez.MAX_MESSAGE_SIZE + 1))
            except ipcez.MessageTooLarge:
                client.send(b"still usable")
                server.recv(timeout=timeout)
                _out("  4 MiB + 1 byte: refused before sending (MessageTooLarge); connection still usable")
            else:
                raise CliError("demo: a message over 4 MiB was not refused")
            # latency
            payload = b"ping"
            for _ in range(rounds):
                started = time.perf_counter()
                client.send(payload)
                sent = time.perf_counter()
                server.send(server.recv(timeout=timeout))
                client.recv(timeout=timeout)
                done = time.perf_counter()
                result.acks.append(sent - started)
                result.rtts.append(done - started)
            ack_part = f"; send+ack p50 {_ms(statistics.median(result.acks))}" if local else ""
            _out(f"  {rounds} round trips of {len(payload)} B: p50 {_ms(statistics.median(result.rtts))}, "
                 f"p99 {_ms(_percentile(result.rtts, 0.99))}{ack_part}")
    if resolution.transport == "unix":
        gone = not os.path.exists(resolution.address)
        _out(f"  closed; socket file {'removed' if gone else 'STILL PRESENT'}")
        if not gone:
            raise CliError(f"demo: the listener left {resolution.address} behind")
    else:
        _out("  closed")
    return result


def cmd_demo(args: argparse.Namespace) -> int:
    if args.rounds < 1:
        raise CliError("--rounds must be at least 1", EXIT_USAGE)
    local_os = "windows" if sys.platform == "win32" else "linux"
    saved = {name: os.environ.get(name) for name in ("IPCEZ_TARGET", "IPCEZ_OS")}
    endpoint, cleanup = _demo_unix_endpoint()
    results: List[_DemoResult] = []
    _out(f"ipcez {ipcez.__version__} demo: this process talks to itself over both transports.")
    _out(f"(For local endpoints ipcez reads target/os from the environment; the demo sets "
         f"target=local os={local_os} for itself only.)")
    _out()
    try:
        os.environ["IPCEZ_TARGET"] = "local"
        os.environ["IPCEZ_OS"] = local_os
        local_title = "Windows named pipe" if local_os == "windows" else "Unix domain socket"
        results.append(_demo_transport(f"[1/2] {local_title}", endpoint, args.rounds))
        _out()
        results.append(_demo_transport("[2/2] WebSocket", "ws://127.0.0.1:0/demo", args.rounds))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        cleanup()
    _out()
    _out(f"{'transport':<11} {'1 MiB':>9} {'rtt p50':>9} {'rtt p99':>9}   (rtt: a 4 B message there and back)")
    for r in results:
        _out(f"{r.transport:<11} {_ms(r.big_seconds):>9} {_ms(statistics.median(r.rtts)):>9} "
             f"{_ms(_percentile(r.rtts, 0.99)):>9}")
    _out()
    _out("Everything the demo created is gone. Next: `ipcez listen /tmp/app.sock --echo` in one")
    _out("terminal, `ipcez send /tmp/app.sock hello` in another (after `export target=local os=linux`).")
    return EXIT_OK


# -- parser and entry point -------------------------------------------------------------


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
        error, code, message = exc, EXIT_USAGE, _error_text(exc)
    except (ipcez.SocketError, OSError) as exc:
        error, code, message = exc, EXIT_FAILURE, _error_text(exc)
    except Exception as exc:  # noqa: BLE001 - a bug: still one line unless --debug
        error, code = exc, EXIT_FAILURE
        message = f"unexpected {type(exc).__name__}: {_error_text(exc)}"
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    if debug:
        traceback.print_exception(type(error), error, error.__traceback__)
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()
    return code
