"""The orchestrator's process plumbing: child processes with a deadline, their READY line
and JSON result, the time budget, the build of the measured artifacts, and the cleanup."""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .common import MANIFEST, RELEASE_LIB, ROOT, RUST_BENCH

#: the script every child process runs (with ``_child ROLE ARGS``)
ENTRY = ROOT / "bench" / "compare.py"


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM if the orchestrator dies (even by SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class LineReader:
    """Reads lines from a child's stdout with a timeout (no buffering surprises)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.buf = b""
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.fd, selectors.EVENT_READ)

    def readline(self, timeout: float) -> Optional[str]:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace")

    def close(self) -> None:
        self.sel.close()


class Orchestrator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick: bool = args.quick
        self.rounds: int = args.rounds or (300 if self.quick else 5000)
        self.repeat: int = args.repeat or (1 if self.quick else 3)
        self.tmp = Path(tempfile.mkdtemp(prefix="ipcez-bench-"))
        self.children: List[subprocess.Popen] = []
        self.notes: List[str] = []
        self.anomalies: List[str] = []
        self.socket_paths: List[str] = []
        self.library = Path(args.library).resolve() if args.library else RELEASE_LIB
        self.start = time.monotonic()
        self.budget = 55.0 if self.quick else 900.0
        env = dict(os.environ)
        env.update(
            {
                "IPCEZ_LIBRARY": str(self.library),
                "PYTHONPATH": str(Path(args.package).resolve() if args.package else ROOT / "python")
                + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
                "target": "local",
                "os": "linux",
                "IPCEZ_TARGET": "local",
                "IPCEZ_OS": "linux",
            }
        )
        env.pop("PYTHONSTARTUP", None)
        self.env = env

    # -- process plumbing -------------------------------------------------

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start)

    def child_cmd(self, *args: str) -> List[str]:
        return [sys.executable, str(ENTRY), "_child", *args]

    def sock_path(self, name: str) -> str:
        p = str(self.tmp / f"{name}.sock")
        self.socket_paths.append(p)
        return p

    def popen(self, cmd: List[str], stdin: bool = False, tag: str = "child") -> subprocess.Popen:
        err = open(self.tmp / f"{tag}.{len(self.children)}.stderr", "wb")
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                env=self.env,
                cwd=str(self.tmp),
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        finally:
            err.close()
        proc._bench_stderr = err.name  # type: ignore[attr-defined]
        self.children.append(proc)
        return proc

    @staticmethod
    def stderr_tail(proc: subprocess.Popen, lines: int = 4) -> str:
        try:
            text = Path(proc._bench_stderr).read_text(errors="replace")  # type: ignore[attr-defined]
        except OSError:
            return ""
        tail = [x for x in text.strip().splitlines() if x.strip()][-lines:]
        return " | ".join(tail)

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            try:
                if proc.stdin:
                    proc.stdin.close()
            except OSError:
                pass
            proc.terminate()
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                try:
                    proc.wait(3)
                except subprocess.TimeoutExpired:
                    pass
        for f in (proc.stdout, proc.stdin):
            try:
                if f:
                    f.close()
            except OSError:
                pass

    def start_server(self, cmd: List[str], tag: str) -> Tuple[subprocess.Popen, str]:
        proc = self.popen(cmd, tag=tag)
        reader = LineReader(proc)
        line = reader.readline(20.0)
        reader.close()
        if line is None:
            self.stop(proc)
            raise RuntimeError(f"server did not start: {self.stderr_tail(proc) or 'no output'}")
        return proc, line[len("READY ") :] if line.startswith("READY ") else line.strip()

    def run_json(self, cmd: List[str], timeout: float, tag: str) -> Dict[str, Any]:
        proc = self.popen(cmd, tag=tag)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc)
            raise RuntimeError(f"timed out after {timeout:.0f} s")
        finally:
            self.stop(proc)
        lines = [x for x in out.decode(errors="replace").splitlines() if x.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(
                f"exit {proc.returncode}: {self.stderr_tail(proc) or 'no output'}"
            )
        return json.loads(lines[-1])

    # -- building -----------------------------------------------------------

    def ensure_built(self) -> Dict[str, Any]:
        """Builds the library and the Rust example with cargo when missing or older than the
        Rust sources (a stale library measures, and may hang on, code since fixed)."""
        built: Dict[str, Any] = {}
        newest = 0.0
        for sub in ("ipcez/src", "ipcez-ffi/src", "ipcez/examples"):
            for p in (ROOT / "rust" / sub).rglob("*.rs"):
                newest = max(newest, p.stat().st_mtime)
        wanted = [("ipcez-ffi", None, self.library), ("ipcez", "bench", RUST_BENCH)]
        for package, example, artifact in wanted:
            chosen = artifact == self.library and bool(self.args.library)
            stale = artifact.exists() and artifact.stat().st_mtime < newest
            if artifact.exists() and (chosen or not stale):
                continue
            if chosen:
                self.notes.append(f"--library {artifact} does not exist")
                continue
            cargo = shutil.which("cargo")
            what = f"{package}" + (f" --example {example}" if example else "")
            if not cargo:
                self.notes.append(f"{artifact.name} missing or stale and cargo not found")
                continue
            cmd = [cargo, "build", "--release", "-p", package, "--manifest-path", str(MANIFEST)]
            if example:
                cmd += ["--example", example]
            why = "older than the Rust sources" if stale else "missing"
            print(f"[build] {artifact} is {why}; running: {' '.join(cmd[1:])}", flush=True)
            t = time.monotonic()
            r = subprocess.run(cmd, cwd=str(ROOT), capture_output=True, text=True)
            if r.returncode != 0:
                tail = " | ".join(r.stderr.strip().splitlines()[-3:])
                self.notes.append(f"cargo build of {what} failed: {tail}")
            else:
                msg = f"built {artifact.name} with cargo ({time.monotonic() - t:.0f} s)"
                self.notes.append(msg)
                built[artifact.name] = True
        for artifact in (self.library, RUST_BENCH):
            if artifact.exists() and artifact.stat().st_mtime < newest:
                self.notes.append(
                    f"{artifact.relative_to(ROOT) if ROOT in artifact.parents else artifact} "
                    "is older than the Rust sources: figures may be for older code"
                )
        return built

    # -- the measurements ---------------------------------------------------
    def have_module(self, name: str) -> bool:
        r = subprocess.run(
            [sys.executable, "-c", f"import {name}"], env=self.env, capture_output=True
        )
        return r.returncode == 0

    # -- cleanup ----------------------------------------------------------------

    def ack_names(self, paths: List[str]) -> List[str]:
        """The semaphore names of these Unix endpoints, as the library derives them
        (asked in a child process, which loads the library the benchmark measures)."""
        if not paths:
            return []
        code = (
            "import ipcez, json, sys; "
            "print(json.dumps([n for p in sys.argv[1:] for n in ipcez.ack_names(p)]))"
        )
        try:
            r = subprocess.run([sys.executable, "-c", code, *paths], env=self.env,
                               capture_output=True, text=True, timeout=30)
            names: List[str] = json.loads(r.stdout)
        except (subprocess.SubprocessError, ValueError) as exc:
            self.notes.append(f"could not ask ipcez for the ack names to clean up: {exc}")
            return []
        return names

    def cleanup(self) -> None:
        for proc in self.children:
            self.stop(proc)
        leaked_files = [p for p in self.socket_paths if os.path.exists(p)]
        leaked_sems = []
        for name in self.ack_names(self.socket_paths):
            f = "/dev/shm/sem." + name.lstrip("/")
            if os.path.exists(f):
                leaked_sems.append(f)
                try:
                    os.unlink(f)
                except OSError:
                    pass
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.leftovers = (leaked_files, leaked_sems)

