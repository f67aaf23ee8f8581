#!/usr/bin/env python3
"""The one developer entry point, and the in-tree PEP 517 build backend.

As a script::

    python build.py            # cargo build (debug) of ipcez-ffi, copied in place as
                               # python/ipcez/_ipcez_ffi.so (.dylib / .dll)
    python build.py --release  # the same, optimized
    python build.py test       # cargo test --workspace, the in-place build, then pytest
    python build.py test --windows  # cross-compile for x86_64-pc-windows-gnu, run every Rust
                               # test binary and a C program against the DLL under Wine
    python build.py wheel      # the release artifacts in dist/: one py3-none-<platform> wheel
                               # (manylinux_2_17 with zig + cargo-zigbuild) and the sdist
    python build.py docs       # API docs into target/api-docs/: rust/ (cargo doc), python/ (pdoc)
    python build.py csharp     # Ipcez.dll and Ipcez.<version>.nupkg into dist/ (Mono's mcs)

As a build backend (``pyproject.toml``: ``build-backend = "build"``,
``backend-path = ["."]``) it re-exports ``setuptools.build_meta``; its
``build_wheel`` first runs ``cargo build --release --locked -p ipcez-ffi``, puts
the cdylib into the package, and asks setuptools for a wheel tagged with the
platform (the in-place library of a checkout is restored afterwards).  An sdist
therefore builds with nothing but Rust and pip.  Note: this file shadows
pypa/build, so ``python -m build`` run from the repository root does nothing
useful; use ``python build.py wheel``.

Environment (read by the backend, so also honoured by ``pip wheel``):

``IPCEZ_CARGO``           the cargo command (default ``cargo``); ``cargo zigbuild`` (or a
                          path to ``cargo-zigbuild``) builds with zig as the linker
``IPCEZ_CARGO_TARGET``    a target triple, with a glibc suffix for zigbuild
                          (``x86_64-unknown-linux-gnu.2.17``); the library is then taken from
                          target/<triple>/ (``CARGO_BUILD_TARGET`` is read when this is unset)
``CARGO_TARGET_DIR``      where cargo puts its output (default rust/target)
``IPCEZ_PREBUILT``        path of an already built cdylib to package instead of running cargo
``IPCEZ_BUILD_QUIET``     when set, progress lines go to stderr only, never straight to the
                          terminal (by default they also go to /dev/tty, since pip hides stderr)
``IPCEZ_PLAT_NAME``       the wheel's platform tag (default from sysconfig.get_platform(), or
                          derived from the target: ``manylinux_2_17_x86_64.manylinux2014_x86_64``
                          for ``x86_64-unknown-linux-gnu.2.17``)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent
RUST = ROOT / "rust"
PACKAGE = ROOT / "python" / "ipcez"
#: Generated API docs (git-ignored); docs/ holds the hand-written Markdown pages.
API_DOCS = ROOT / "target" / "api-docs"
# Coordinate with python/ipcez/_ffi.py (library_filename) and pyproject package-data.
LIB_NAMES = {"linux": "_ipcez_ffi.so", "darwin": "_ipcez_ffi.dylib", "windows": "_ipcez_ffi.dll"}
CARGO_NAMES = {"linux": "libipcez_ffi.so", "darwin": "libipcez_ffi.dylib", "windows": "ipcez_ffi.dll"}
#: The glibc baseline of the release wheels (manylinux2014).
GLIBC = "2.17"

try:  # the backend hooks need setuptools; the script commands do not
    from setuptools import build_meta as _setuptools_backend
    from setuptools.build_meta import *  # noqa: F401,F403 - re-exported PEP 517 hooks
except ImportError:  # pragma: no cover - only `python build.py` without setuptools
    _setuptools_backend = None  # type: ignore[assignment]


def _log(message: str) -> None:
    print(f"[build.py] {message}", file=sys.stderr, flush=True)


def _progress(message: str) -> None:
    """A line for the person waiting, even under ``pip install``.

    pip captures a build backend's stdout and stderr and shows them only with ``-v``
    or after a failure, so a long cargo build looks frozen.  When stderr is not a
    terminal, the line also goes to the controlling terminal (``/dev/tty``), if there
    is one; without one (CI, logs) stderr alone carries it."""
    line = f"ipcez: {message}"
    print(line, file=sys.stderr, flush=True)
    if sys.stderr.isatty() or os.environ.get("IPCEZ_BUILD_QUIET"):
        return
    global _tty_lines
    try:
        with open("/dev/tty", "w") as tty:  # POSIX only; absent on Windows and without a terminal
            # The first line leaves pip's "Building wheel ... |" line alone; later ones first
            # wipe the spinner character pip wrote on the empty line below ours.
            tty.write(("\r\033[K" if _tty_lines else "\n") + line + "\n")
            _tty_lines += 1
    except OSError:
        pass


_tty_lines = 0


def _target(environ: Optional[Dict[str, str]] = None) -> Optional[str]:
    env = os.environ if environ is None else environ
    return env.get("IPCEZ_CARGO_TARGET") or env.get("CARGO_BUILD_TARGET") or None


def _triple(target: str) -> str:
    """``x86_64-unknown-linux-gnu.2.17`` -> ``x86_64-unknown-linux-gnu`` (zigbuild's glibc suffix)."""
    return re.sub(r"\.\d+(\.\d+)*$", "", target)


def _glibc_suffix(target: str) -> Optional[str]:
    m = re.search(r"-gnu\w*\.(\d+\.\d+)$", target)
    return m.group(1) if m else None


def _os_family(target: Optional[str]) -> str:
    text = target if target else sys.platform
    if "windows" in text or text == "win32":
        return "windows"
    if "darwin" in text or "apple" in text:
        return "darwin"
    return "linux"


def _target_dir() -> Path:
    env = os.environ.get("CARGO_TARGET_DIR")
    return Path(env) if env else RUST / "target"


def _cargo() -> List[str]:
    """The plain cargo command (IPCEZ_CARGO without a zigbuild subcommand)."""
    words = shlex.split(os.environ.get("IPCEZ_CARGO", "cargo")) or ["cargo"]
    if _is_zigbuild(words):
        return ["cargo"]
    return words


def _is_zigbuild(words: List[str]) -> bool:
    return words[-1] == "zigbuild" or Path(words[0]).name.startswith("cargo-zigbuild")


def _cargo_build_command() -> List[str]:
    """IPCEZ_CARGO followed by its build subcommand (``build``, or ``zigbuild`` itself)."""
    words = shlex.split(os.environ.get("IPCEZ_CARGO", "cargo")) or ["cargo"]
    if words[-1] == "zigbuild":
        return words
    if Path(words[0]).name.startswith("cargo-zigbuild"):
        return words + ["zigbuild"]
    return words + ["build"]


def cargo_build(release: bool, locked: bool = False) -> Path:
    """Build the ipcez-ffi cdylib (or take IPCEZ_PREBUILT) and return its path."""
    prebuilt = os.environ.get("IPCEZ_PREBUILT")
    if prebuilt:
        path = Path(prebuilt)
        if not path.is_file():
            raise SystemExit(f"IPCEZ_PREBUILT={prebuilt} does not exist")
        return path
    target = _target()
    build = _cargo_build_command()
    cmd = build + ["-p", "ipcez-ffi", "--manifest-path", str(RUST / "Cargo.toml")]
    if release:
        cmd.append("--release")
    if locked and (RUST / "Cargo.lock").is_file():
        cmd.append("--locked")  # release artifacts are built from the lock file CI tested
    if target:
        # only zigbuild understands a glibc suffix
        cmd += ["--target", target if _is_zigbuild(build) else _triple(target)]
    _log(" ".join(cmd))
    env = dict(os.environ)
    env.pop("CARGO_BUILD_TARGET", None)  # --target says it; cargo would choke on a glibc suffix
    profile = "release" if release else "debug"
    _run_cargo_with_progress(cmd, env, profile, target)
    out = _target_dir()
    if target:
        out = out / _triple(target)  # the glibc suffix is not part of the directory name
    path = out / profile / CARGO_NAMES[_os_family(target)]
    if not path.is_file():
        raise SystemExit(f"cargo finished but {path} does not exist")
    return path


def _crate_count(target: Optional[str]) -> Optional[int]:
    """How many packages a build of ipcez-ffi compiles (from cargo tree), or None."""
    cmd = _cargo() + ["tree", "-p", "ipcez-ffi", "-e", "normal,build", "--prefix", "none",
                      "--manifest-path", str(RUST / "Cargo.toml")]
    if target:
        cmd += ["--target", _triple(target)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return len({line.split()[0] for line in out.splitlines() if line.strip()}) or None


def _run_cargo_with_progress(cmd: List[str], env: Dict[str, str], profile: str, target: Optional[str]) -> None:
    """Run cargo, passing its output on, with a progress line every ~15 s and at the end."""
    import threading
    import time

    if shutil.which(cmd[0]) is None and not Path(cmd[0]).is_file():
        raise SystemExit(
            f"{cmd[0]} not found: building ipcez needs Rust (1.93 or newer; https://rustup.rs), "
            "or a prebuilt wheel"
        )
    total = _crate_count(target)
    of_total = f" of {total}" if total else ""
    started = time.monotonic()
    crates = f", {total} crates" if total else ""
    hint = "; the first release build takes 2 to 7 minutes on 2 cores" if profile == "release" else ""
    _progress(f"compiling the Rust library ({profile}{crates}){hint}")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True, errors="replace")
    assert proc.stderr is not None
    compiled: List[str] = []
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(15):
            last = f", last started: {compiled[-1]}" if compiled else ""
            _progress(f"compiling: crate {len(compiled)}{of_total} after {time.monotonic() - started:.0f} s{last}")

    ticker = threading.Thread(target=heartbeat, daemon=True)
    ticker.start()
    try:
        for line in proc.stderr:
            sys.stderr.write(line)  # pip shows it with -v and after a failure
            words = line.split()
            if len(words) >= 2 and words[0] == "Compiling":
                compiled.append(words[1])
        rc = proc.wait()
    finally:
        done.set()
    if rc:
        raise SystemExit(f"cargo failed (exit {rc}): {' '.join(cmd)}")
    _progress(f"Rust library built in {time.monotonic() - started:.0f} s ({len(compiled)} crate(s) compiled)")


def _remove_libraries() -> None:
    for name in LIB_NAMES.values():  # never let another platform's library ride along
        stale = PACKAGE / name
        if stale.exists() or stale.is_symlink():
            stale.unlink()  # unlink, never truncate: a running process may have it mapped


def install_library(source: Path, symlink: bool = False) -> Path:
    """Put ``source`` into the package under its private name, removing any other copy."""
    family = _os_family(_target())
    dest = PACKAGE / LIB_NAMES[family]
    _remove_libraries()
    if symlink:
        dest.symlink_to(source.resolve())
    else:
        shutil.copy2(source, dest)
    _log(f"{source} -> {dest}")
    return dest


@contextlib.contextmanager
def _library_for_wheel(source: Path) -> Iterator[None]:
    """Install ``source`` in the package for the time of a wheel build, then put back
    whatever library a checkout had in place (a wheel for another target must not
    replace the developer's build)."""
    saved = tempfile.mkdtemp(prefix="ipcez-inplace-")
    kept = []
    for name in LIB_NAMES.values():
        path = PACKAGE / name
        if path.exists() or path.is_symlink():
            os.rename(path, os.path.join(saved, name))
            kept.append(name)
    try:
        install_library(source)
        yield
    finally:
        _remove_libraries()
        for name in kept:
            os.rename(os.path.join(saved, name), PACKAGE / name)
        shutil.rmtree(saved, ignore_errors=True)


_PLATS = {
    "x86_64-unknown-linux-gnu": "linux_x86_64",
    "aarch64-unknown-linux-gnu": "linux_aarch64",
    "x86_64-unknown-linux-musl": "linux_x86_64",
    "aarch64-unknown-linux-musl": "linux_aarch64",
    "x86_64-apple-darwin": "macosx_10_12_x86_64",
    "aarch64-apple-darwin": "macosx_11_0_arm64",
    "x86_64-pc-windows-msvc": "win_amd64",
    "aarch64-pc-windows-msvc": "win_arm64",
    "i686-pc-windows-msvc": "win32",
    "x86_64-pc-windows-gnu": "win_amd64",
}
# PEP 600 tags that also have a legacy alias understood by older pip
_LEGACY_MANYLINUX = {"2.17": "manylinux2014", "2.12": "manylinux2010", "2.5": "manylinux1"}


def plat_name(environ: Optional[Dict[str, str]] = None) -> str:
    """The wheel's platform tag (from ``environ``, default os.environ)."""
    explicit = (os.environ if environ is None else environ).get("IPCEZ_PLAT_NAME")
    if explicit:
        return explicit
    target = _target(environ)
    if target:
        triple = _triple(target)
        glibc = _glibc_suffix(target)
        if glibc and triple.endswith("-linux-gnu"):
            arch = triple.split("-")[0]
            tag = f"manylinux_{glibc.replace('.', '_')}_{arch}"
            legacy = _LEGACY_MANYLINUX.get(glibc)
            return f"{tag}.{legacy}_{arch}" if legacy else tag
        if triple not in _PLATS:
            raise SystemExit(f"no platform tag known for {target}; set IPCEZ_PLAT_NAME")
        return _PLATS[triple]
    return sysconfig.get_platform().replace("-", "_").replace(".", "_")


def _clean_setuptools_build_dir() -> None:
    # setuptools stages files in build/lib; a library left there by an earlier
    # build for another platform must not end up in this wheel.
    build_dir = ROOT / "build"
    if build_dir.is_dir():
        for child in build_dir.iterdir():
            if child.name.startswith(("lib", "bdist")):
                shutil.rmtree(child, ignore_errors=True)


# --------------------------------------------------------------------------
# PEP 517 hooks (the rest come from setuptools.build_meta via the * import).


def build_wheel(
    wheel_directory: str,
    config_settings: Optional[Dict[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    """Build the cdylib (release), put it into the package, build a py3-none-<platform> wheel."""
    if _setuptools_backend is None:
        raise RuntimeError("setuptools is required to build a wheel")
    library = cargo_build(release=True, locked=True)
    _clean_setuptools_build_dir()
    settings: Dict[str, Any] = dict(config_settings or {})
    extra = settings.get("--build-option", [])
    extra = [extra] if isinstance(extra, str) else list(extra)
    if "--plat-name" not in extra:
        extra += ["--plat-name", plat_name()]
    settings["--build-option"] = extra
    with _library_for_wheel(library):
        filename = _setuptools_backend.build_wheel(wheel_directory, settings, metadata_directory)
    return _finish_wheel(wheel_directory, filename, extra[extra.index("--plat-name") + 1])


def _finish_wheel(directory: str, filename: str, plat: str) -> str:
    """Fix what setuptools gets wrong for a wheel whose only binary is package data:
    it mangles a compressed tag set (``manylinux_2_17_x86_64.manylinux2014_x86_64``) into
    one bogus tag, and marks the wheel ``Root-Is-Purelib: true``.  Rewrites WHEEL (one
    ``Tag:`` per platform, purelib false), its line in RECORD and the file name (PEP 427)."""
    import base64
    import hashlib
    import zipfile

    src = Path(directory) / filename
    name, version = filename.split("-")[:2]
    new_name = f"{name}-{version}-py3-none-{plat}.whl"
    wheel_path = f"{name}-{version}.dist-info/WHEEL"
    record_path = f"{name}-{version}.dist-info/RECORD"
    with zipfile.ZipFile(src) as zin:
        entries = [(info, zin.read(info)) for info in zin.infolist()]
    contents = {info.filename: data for info, data in entries}
    lines = [
        line for line in contents[wheel_path].decode("utf-8").splitlines()
        if line.strip() and not line.startswith(("Tag:", "Root-Is-Purelib:"))
    ]
    lines.append("Root-Is-Purelib: false")
    lines += [f"Tag: py3-none-{tag}" for tag in plat.split(".")]
    wheel_data = ("\n".join(lines) + "\n\n").encode("utf-8")
    digest = base64.urlsafe_b64encode(hashlib.sha256(wheel_data).digest()).rstrip(b"=").decode("ascii")
    record = [
        f"{wheel_path},sha256={digest},{len(wheel_data)}" if line.startswith(wheel_path + ",") else line
        for line in contents[record_path].decode("utf-8").splitlines()
    ]
    record_data = ("\n".join(record) + "\n").encode("utf-8")
    tmp = Path(directory) / (new_name + ".part")
    with zipfile.ZipFile(tmp, "w") as zout:
        for info, data in entries:
            if info.filename == wheel_path:
                data = wheel_data
            elif info.filename == record_path:
                data = record_data
            zout.writestr(info, data)
    src.unlink()
    os.replace(tmp, Path(directory) / new_name)
    return new_name


def build_editable(
    wheel_directory: str,
    config_settings: Optional[Dict[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    """``pip install -e .``: build the cdylib (debug) in place, then setuptools' editable wheel."""
    if _setuptools_backend is None:
        raise RuntimeError("setuptools is required to build a wheel")
    install_library(cargo_build(release=False))
    return _setuptools_backend.build_editable(wheel_directory, config_settings, metadata_directory)


# --------------------------------------------------------------------------
# The developer commands.


def _cmd_develop(args: argparse.Namespace) -> int:
    install_library(cargo_build(release=args.release), symlink=args.symlink)
    return 0


def _missing_test_tools() -> List[str]:
    import importlib.util

    return [name for name in ("pytest",) if importlib.util.find_spec(name) is None]


def _cmd_test(args: argparse.Namespace) -> int:
    missing = _missing_test_tools()
    if missing:  # say so before a build of several minutes, not after it
        raise SystemExit(
            f"python build.py test: {', '.join(missing)} is not installed in {sys.executable}; "
            "first run: python -m pip install -r requirements-dev.txt"
        )
    if not args.no_cargo:
        cmd = _cargo() + ["test", "--workspace", "--manifest-path", str(RUST / "Cargo.toml")]
        _log(" ".join(cmd))
        env = dict(os.environ)
        env.pop("CARGO_BUILD_TARGET", None)  # tests run on this machine
        rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
        if rc:
            return rc
        install_library(cargo_build(release=args.release))
        _node_addon()
    env = dict(os.environ)
    env.pop("IPCEZ_LIBRARY", None)  # test what was just installed in place
    # A test that hangs ends the run; the stacks go to this file (see tests/conftest.py).
    watchdog_log = _target_dir() / "pytest-watchdog.log"
    watchdog_log.parent.mkdir(parents=True, exist_ok=True)
    watchdog_log.unlink(missing_ok=True)
    env["IPCEZ_TEST_WATCHDOG_LOG"] = str(watchdog_log)
    cmd = [sys.executable, "-m", "pytest", *args.pytest_args]
    _log(" ".join(cmd))
    rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
    if rc:
        hung = watchdog_log.read_text(encoding="utf-8", errors="replace") if watchdog_log.exists() else ""
        if hung.strip():
            print(f"\n{hung}", file=sys.stderr)
        return rc
    rc = _node_tests(bool(args.pytest_args))
    if rc:
        return rc
    profile = "release" if args.release else "debug"
    return _csharp().test_from_build(_target_dir() / profile / CARGO_NAMES[_os_family(sys.platform)])


# --------------------------------------------------------------------------
# The C# binding (csharp/, built with Mono): its code is in csharp/build_csharp.py.


def _csharp() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_csharp", ROOT / "csharp" / "build_csharp.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cmd_csharp(args: argparse.Namespace) -> int:
    """Ipcez.dll and Ipcez.<version>.nupkg into dist/, with the release library of this machine
    (linux-x64) and the cross-built Windows DLL (win-x64)."""
    natives = {"linux-x64": cargo_build(release=True, locked=True)}
    if not args.no_windows:
        env, missing = _windows_toolchain()
        if missing:
            raise SystemExit(f"the win-x64 DLL needs {', '.join(missing)}: apt-get install {WINDOWS_PACKAGES} "
                             "(or pass --no-windows)")
        artifacts = _windows_cargo(env, ["build", "--release", "--locked", "-p", "ipcez-ffi"])
        natives["win-x64"] = next(Path(f) for a in artifacts for f in a["filenames"] if f.endswith("ipcez_ffi.dll"))
    return _csharp().build_package(Path(args.dist), natives, check=args.check)


# --------------------------------------------------------------------------
# The Node binding (node/): its code is in node/scripts/.


def _node_addon() -> None:
    """Builds the Node addon in place when node is installed (the README's Node snippet uses it)."""
    node = shutil.which("node")
    if node:
        subprocess.run([node, str(ROOT / "node" / "scripts" / "build.js")], cwd=ROOT / "node", check=True)


def _node_tests(narrowed: bool) -> int:
    """The Node binding's tests (node/scripts/test.js builds the addon, then `npm test`)."""
    required = os.environ.get("IPCEZ_REQUIRE_BINDINGS") == "1"
    if narrowed and not required:
        return 0  # pytest was asked for some tests only
    node, npm = shutil.which("node"), shutil.which("npm")
    if not (node and npm):
        if required:
            _log("FAILED: node and npm are needed for the Node binding's tests (IPCEZ_REQUIRE_BINDINGS=1)")
            return 3
        _log("skipped: the Node binding's tests (node and npm are not installed)")
        return 0
    cmd = [node, str(ROOT / "node" / "scripts" / "test.js")]
    _log(" ".join(cmd))
    return subprocess.run(cmd, cwd=ROOT / "node").returncode


def _version() -> str:
    m = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    if not m:
        raise SystemExit("no version in pyproject.toml")
    return m.group(1)


def _host_triple() -> Optional[str]:
    try:
        out = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    m = re.search(r"^host:\s*(\S+)", out, re.M)
    return m.group(1) if m else None


def _zigbuild_env() -> Optional[Dict[str, str]]:
    """The environment that makes the backend build with cargo-zigbuild, or None when
    cargo-zigbuild or zig (a ``zig`` on PATH or the ``ziglang`` package) is missing.
    Paths are absolute so that they survive pip's isolated build environment."""
    exe = shutil.which("cargo-zigbuild")
    if not exe:
        return None
    env = {"IPCEZ_CARGO": shlex.join([exe, "zigbuild"])}
    if os.environ.get("CARGO_ZIGBUILD_ZIG_PATH"):
        return env
    zig = shutil.which("zig")
    if not zig:
        try:
            import ziglang  # type: ignore
        except ImportError:
            return None
        candidate = Path(ziglang.__file__).parent / ("zig.exe" if os.name == "nt" else "zig")
        if not candidate.is_file():
            return None
        zig = str(candidate)
    env["CARGO_ZIGBUILD_ZIG_PATH"] = zig
    return env


def _has_rust_std(triple: str) -> bool:
    """Whether this toolchain has the standard library for ``triple`` (rustup target add)."""
    try:
        out = subprocess.run(
            ["rustc", "--print", "target-libdir", "--target", triple], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return False
    return bool(out) and Path(out).is_dir() and any(Path(out).glob("libstd-*"))


def _setuptools_problem() -> Optional[str]:
    """Why this environment's setuptools cannot build the sdist, or None."""
    try:
        import setuptools
    except ImportError:
        return "setuptools is not installed"
    if int(setuptools.__version__.split(".")[0]) < 77:
        return f"setuptools {setuptools.__version__} is too old (77 or newer reads this pyproject.toml)"
    return None


def _build_sdist(dist: Path) -> Path:
    """The sdist, through this very backend (setuptools >= 77 from this environment)."""
    code = "import sys, build; print(build.build_sdist(sys.argv[1]))"
    _log(f"sdist: build.build_sdist({dist})")
    out = subprocess.run(
        [sys.executable, "-c", code, str(dist)], cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return dist / out.strip().splitlines()[-1]


def _cmd_wheel(args: argparse.Namespace) -> int:
    problem = None if args.no_sdist else _setuptools_problem()
    if problem:  # the sdist is built last: fail before the minutes of cargo, not after
        raise SystemExit(
            f"python build.py wheel: {problem} in {sys.executable}; run "
            "python -m pip install -r requirements-dev.txt (or: python -m pip install 'setuptools>=77'), "
            "or add --no-sdist for the wheel alone"
        )
    warnings: List[str] = []
    try:
        return _build_release(args, warnings)
    finally:
        for text in warnings:  # last, where the eye lands, whether the build worked or not
            _log(f"WARNING: {text}")


def _build_release(args: argparse.Namespace, warnings: List[str]) -> int:
    dist = Path(args.dist).resolve()
    dist.mkdir(parents=True, exist_ok=True)
    host = _host_triple()
    targets = args.target or ([host] if host else [None])
    zig = None if args.native else _zigbuild_env()
    built: List[Path] = []
    for triple in targets:
        env = dict(os.environ)
        env.pop("CARGO_BUILD_TARGET", None)
        env.pop("IPCEZ_CARGO_TARGET", None)
        env.pop("IPCEZ_PLAT_NAME", None)
        linux_gnu = bool(triple) and triple.endswith("-linux-gnu")
        if triple == WINDOWS_TRIPLE:
            env = _windows_wheel_env()  # builds its own standard library
        elif triple and triple != host and not _has_rust_std(triple):
            raise SystemExit(
                f"this Rust toolchain has no standard library for {triple}: rustup target add {triple}"
            )
        if linux_gnu and zig is not None:
            env.update(zig)
            env["IPCEZ_CARGO_TARGET"] = f"{triple}.{args.glibc}"
        elif linux_gnu:
            if triple != host:
                raise SystemExit(f"building for {triple} needs zig: pip install ziglang cargo-zigbuild")
            why = "--native was given" if args.native else "zig or cargo-zigbuild not found"
            warnings.append(
                f"{why}, so this is a native linux wheel: it needs this "
                "machine's glibc or newer, and PyPI refuses it. For the portable manylinux_2_17 "
                "wheel: python -m pip install ziglang cargo-zigbuild (both in requirements-dev.txt)"
            )
            _log(f"WARNING: {warnings[-1]}")
        elif triple and triple != host:
            env["IPCEZ_CARGO_TARGET"] = triple
        plat = plat_name(env)
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(ROOT)]
        if args.no_isolation:
            cmd.insert(4, "--no-build-isolation")  # use this environment's setuptools (offline builds)
        _log(f"wheel for {triple or 'this machine'} ({plat}): {' '.join(cmd)}")
        if subprocess.run(cmd, cwd=ROOT, env=env).returncode:
            return 1
        wheel = dist / f"ipcez-{_version()}-py3-none-{plat}.whl"
        if not wheel.is_file():
            raise SystemExit(f"pip finished but {wheel} does not exist")
        built.append(wheel)
    if not args.no_sdist:
        built.append(_build_sdist(dist))
    for path in built:
        _log(f"built {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def _cmd_docs(args: argparse.Namespace) -> int:
    """cargo doc (ipcez, ipcez-ffi) into target/api-docs/rust/, pdoc of the package into .../python/."""
    import importlib.util

    if importlib.util.find_spec("pdoc") is None:
        raise SystemExit("python build.py docs needs pdoc: pip install pdoc")
    env = dict(os.environ)
    env.pop("CARGO_BUILD_TARGET", None)
    if args.strict:
        env["RUSTDOCFLAGS"] = (env.get("RUSTDOCFLAGS", "") + " -D warnings").strip()
    cmd = _cargo() + ["doc", "--no-deps", "-p", "ipcez", "-p", "ipcez-ffi", "--manifest-path", str(RUST / "Cargo.toml")]
    _log(" ".join(cmd))
    if subprocess.run(cmd, cwd=ROOT, env=env).returncode:
        return 1
    API_DOCS.mkdir(parents=True, exist_ok=True)
    rust_docs = API_DOCS / "rust"
    shutil.rmtree(rust_docs, ignore_errors=True)
    shutil.copytree(_target_dir() / "doc", rust_docs)
    (rust_docs / "index.html").write_text(_redirect("ipcez/index.html"))

    # pdoc imports the package, which loads the cdylib: use the in-place one, else a debug build
    env = dict(os.environ)
    if not env.get("IPCEZ_LIBRARY") and not any((PACKAGE / n).exists() for n in LIB_NAMES.values()):
        env["IPCEZ_LIBRARY"] = str(cargo_build(release=False))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "python"), env.get("PYTHONPATH")) if p)
    python_docs = API_DOCS / "python"
    shutil.rmtree(python_docs, ignore_errors=True)
    cmd = [sys.executable, "-m", "pdoc", "-o", str(python_docs), "ipcez"]
    _log(" ".join(cmd))
    if subprocess.run(cmd, cwd=ROOT, env=env).returncode:
        return 1
    (API_DOCS / "index.html").write_text(
        "<!doctype html><meta charset=utf-8><title>ipcez API</title>\n"
        "<h1>ipcez API documentation</h1>\n<ul>\n"
        '<li><a href="python/ipcez.html">Python package <code>ipcez</code></a></li>\n'
        '<li><a href="rust/ipcez/index.html">Rust crate <code>ipcez</code></a></li>\n'
        '<li><a href="rust/ipcez_ffi/index.html">C ABI <code>ipcez-ffi</code></a></li>\n</ul>\n'
    )
    _log(f"docs: {API_DOCS / 'index.html'}")
    return 0


def _redirect(url: str) -> str:
    return f'<!doctype html><meta charset=utf-8><meta http-equiv="refresh" content="0; url={url}">\n<a href="{url}">{url}</a>\n'


# --------------------------------------------------------------------------
# Windows, cross-compiled with mingw and run under Wine (python build.py test --windows).

WINDOWS_TRIPLE = "x86_64-pc-windows-gnu"
#: Debian's packages for it, named in the message when one is missing.
WINDOWS_PACKAGES = "rustc-web cargo-web rust-web-src gcc-mingw-w64-x86-64 wine64 wine"
#: Hard limit for one test binary (or the C program) under Wine, in seconds.
WINE_TIMEOUT = 600
SHIM = RUST / "windows-shim" / "bcryptprimitives.c"
C_ABI_PROGRAM = RUST / "ipcez-ffi" / "tests" / "c" / "pipe_round_trip.c"


def _windows_target_dir() -> Path:
    # Its own directory: Debian's rustc and the usual one would keep rebuilding each other's output.
    return _target_dir() / "windows-gnu"


def _windows_toolchain() -> Tuple[Dict[str, str], List[str]]:
    """The environment that cross-compiles for Windows with Debian's Rust (the standard
    library built from rust-web-src, since rustup cannot add the target offline), and
    what is missing for it. IPCEZ_WINDOWS_CARGO / IPCEZ_WINDOWS_RUSTC pick other tools."""
    cargo = os.environ.get("IPCEZ_WINDOWS_CARGO", "/usr/bin/cargo")
    rustc = os.environ.get("IPCEZ_WINDOWS_RUSTC", "/usr/bin/rustc")
    missing = [tool for tool in (cargo, rustc) if not shutil.which(tool)]
    if not missing:
        sysroot = subprocess.run([rustc, "--print", "sysroot"], capture_output=True, text=True).stdout.strip()
        if not (Path(sysroot) / "lib" / "rustlib" / "src" / "rust" / "library" / "Cargo.lock").is_file():
            missing.append(f"the standard library sources of {rustc} (rust-web-src)")
    if not shutil.which("x86_64-w64-mingw32-gcc"):
        missing.append("x86_64-w64-mingw32-gcc")
    env = dict(os.environ)
    for name in ("CARGO_BUILD_TARGET", "IPCEZ_CARGO_TARGET", "RUSTFLAGS", "RUSTUP_TOOLCHAIN"):
        env.pop(name, None)
    env.update(
        IPCEZ_CARGO=cargo,
        RUSTC=rustc,
        RUSTDOC=str(Path(rustc).with_name("rustdoc")),
        RUSTC_BOOTSTRAP="1",  # -Zbuild-std on a stable compiler
        CARGO_UNSTABLE_BUILD_STD="std,panic_unwind",
        CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER="x86_64-w64-mingw32-gcc",
        CARGO_TARGET_DIR=str(_windows_target_dir()),
    )
    return env, missing


def _wine() -> Optional[str]:
    """wine64 itself: Debian keeps it off PATH, and `wine` would try the 32-bit loader."""
    return shutil.which("wine64") or shutil.which("/usr/lib/wine/wine64")


def _missing_windows_tools() -> List[str]:
    missing = _windows_toolchain()[1]
    if not _wine():
        missing.append("wine64")
    return missing


def _wine_prefix(wine: str) -> Dict[str, str]:
    """A Wine prefix of our own under the target directory, created on first use, with
    the ProcessPrng shim in system32; returns the environment that runs programs in it."""
    prefix = _windows_target_dir() / "wineprefix"
    env = dict(os.environ, WINEPREFIX=str(prefix), WINEDEBUG="-all", WINEDLLOVERRIDES="mscoree,mshtml=")
    env.pop("DISPLAY", None)
    system32 = prefix / "drive_c" / "windows" / "system32"
    if not system32.is_dir():
        _log(f"creating the Wine prefix {prefix}")
        subprocess.run([wine, "wineboot", "--init"], env=env, check=True, timeout=WINE_TIMEOUT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shim = _windows_target_dir() / "bcryptprimitives.dll"
    if not shim.is_file() or shim.stat().st_mtime < SHIM.stat().st_mtime:
        cmd = ["x86_64-w64-mingw32-gcc", "-shared", "-O2", "-Wall", "-o", str(shim), str(SHIM), "-ladvapi32"]
        _log(" ".join(cmd))
        subprocess.run(cmd, check=True)
    shutil.copy2(shim, system32 / "bcryptprimitives.dll")
    return env


def _windows_cargo(env: Dict[str, str], args: List[str]) -> List[Dict[str, Any]]:
    """Runs cargo for the Windows target with JSON messages; returns the artifacts."""
    import json

    cmd = [env["IPCEZ_CARGO"], *args, "--target", WINDOWS_TRIPLE, "--manifest-path", str(RUST / "Cargo.toml"),
           "--message-format", "json-render-diagnostics"]
    _log(" ".join(cmd))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    if proc.returncode:
        raise SystemExit(f"cargo for {WINDOWS_TRIPLE} failed (exit {proc.returncode})")
    messages = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return [m for m in messages if m.get("reason") == "compiler-artifact"]


def _run_under_wine(wine: str, env: Dict[str, str], exe: Path, args: List[str]) -> Tuple[int, int, int]:
    """Runs one Windows program under Wine with a hard timeout; returns (exit code, tests
    passed, tests failed) as libtest reports them (0, 0 for a program that is no test)."""
    _log(f"wine64 {exe.name} {' '.join(args)}")
    proc = subprocess.Popen([wine, str(exe), *args], cwd=exe.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=WINE_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, _ = proc.communicate()
        print(out, end="")
        _log(f"TIMEOUT: {exe.name} ran longer than {WINE_TIMEOUT} s and was killed")
        return 124, 0, 1
    print(out, end="", flush=True)
    passed = sum(int(n) for n in re.findall(r"test result: \w+\. (\d+) passed", out))
    failed = sum(int(n) for n in re.findall(r"; (\d+) failed;", out))
    return proc.returncode, passed, failed


def _windows_wheel_env() -> Dict[str, str]:
    """The environment in which the backend builds the Windows DLL (release) for a wheel."""
    env, missing = _windows_toolchain()
    if missing:
        raise SystemExit(f"a {WINDOWS_TRIPLE} wheel needs {', '.join(missing)}: apt-get install {WINDOWS_PACKAGES}")
    env.pop("IPCEZ_PLAT_NAME", None)
    env["IPCEZ_CARGO_TARGET"] = WINDOWS_TRIPLE
    return env


def _cmd_test_windows(args: argparse.Namespace) -> int:
    """Cross-compiles the workspace's tests for Windows and runs every test binary, and a
    C program against the DLL, under Wine."""
    missing = _missing_windows_tools()
    if missing:
        what = "SKIPPED the Windows tests" if args.allow_missing else "cannot run the Windows tests"
        _log(f"{what}: missing {', '.join(missing)}; install them with "
             f"`apt-get install {WINDOWS_PACKAGES}` (Debian 12, bookworm-security)")
        return 0 if args.allow_missing else 3
    env = _windows_toolchain()[0]
    wine = _wine()
    assert wine is not None
    started = time.monotonic()
    # The DLL comes out of the same build (the tests link the library crate), so the C
    # program tests exactly the code the Rust tests ran.
    # The Node addon is excluded: napi links against node, which is not here for Windows.
    artifacts = _windows_cargo(
        env, ["test", "--no-run", "--workspace", "--exclude", "ipcez-node", "--locked"]
    )
    tests = [Path(a["executable"]) for a in artifacts if a.get("executable") and a["profile"]["test"]]
    dlls = [Path(f) for a in artifacts for f in a["filenames"] if f.endswith("ipcez_ffi.dll")]
    wine_env = _wine_prefix(wine)
    _log(f"cross-compiled and Wine prefix ready in {time.monotonic() - started:.0f} s")
    failures: List[str] = []
    passed = failed = 0
    for exe in sorted(tests, key=lambda p: p.name):
        rc, p, f = _run_under_wine(wine, wine_env, exe, list(args.test_args))
        passed, failed = passed + p, failed + f
        if rc:
            failures.append(exe.name)
    if dlls:
        exe = _build_c_abi_program(dlls[0])
        rc, _, _ = _run_under_wine(wine, wine_env, exe, [])
        if rc:
            failures.append(exe.name)
    else:
        failures.append("ipcez_ffi.dll (cargo built no such file)")
    server = Path(wine).with_name("wineserver")
    if server.exists():  # this prefix's server only; it would linger a few seconds otherwise
        subprocess.run([str(server), "-k"], env=wine_env)
    c_abi = "failed" if failures and failures[-1].startswith(C_ABI_PROGRAM.stem) else "passed"
    _log(f"under Wine: {len(tests)} test binaries, {passed} tests passed, {failed} failed; "
         f"C ABI program {c_abi}; {time.monotonic() - started:.0f} s in all")
    if failures:
        _log(f"FAILED under Wine: {', '.join(failures)}")
        return 1
    return 0


def _build_c_abi_program(dll: Path) -> Path:
    """The C program, compiled with mingw against ipcez.h and linked with the DLL's import
    library, next to a copy of the DLL (Windows looks for it beside the program first)."""
    out = _windows_target_dir() / "c-abi"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(dll, out / dll.name)
    exe = out / (C_ABI_PROGRAM.stem + ".exe")
    cmd = ["x86_64-w64-mingw32-gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-O1",
           "-I", str(RUST / "ipcez-ffi" / "include"), "-o", str(exe), str(C_ABI_PROGRAM), str(out / dll.name)]
    _log(" ".join(cmd))
    subprocess.run(cmd, check=True)
    return exe


def main(argv: Optional[List[str]] = None) -> int:
    """Parse ``argv`` and run one developer command."""
    parser = argparse.ArgumentParser(prog="python build.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--release", action="store_true", help="build optimized (default: debug)")
    parser.add_argument(
        "--symlink", action="store_true", help="symlink the library into the package instead of copying"
    )
    sub = parser.add_subparsers(dest="command")
    test = sub.add_parser("test", help="cargo test --workspace, in-place build, then pytest")
    test.add_argument("--no-cargo", action="store_true", help="only run pytest")
    test.add_argument(
        "--windows", action="store_true",
        help=f"instead: cross-compile for {WINDOWS_TRIPLE} and run every Rust test binary and the C ABI "
        "program under Wine (extra arguments go to each test binary)",
    )
    test.add_argument(
        "--allow-missing", action="store_true", help="with --windows: exit 0 when the tools are missing (skip)"
    )
    test.add_argument("pytest_args", nargs="*", help="passed on to pytest (options too)")
    wheel = sub.add_parser(
        "wheel",
        help="the release artifacts in dist/: a wheel (manylinux_2_17 when zig and cargo-zigbuild "
        "are installed, else a native one) and the sdist",
    )
    wheel.add_argument("--dist", default=str(ROOT / "dist"), help="output directory")
    wheel.add_argument(
        "--no-isolation", action="store_true", help="build with this environment's setuptools (>=77)"
    )
    wheel.add_argument(
        "--target", action="append", metavar="TRIPLE",
        help="Rust target to build for, repeatable (default: this machine), e.g. aarch64-unknown-linux-gnu",
    )
    wheel.add_argument("--glibc", default=GLIBC, help=f"glibc baseline with zigbuild (default {GLIBC})")
    wheel.add_argument("--native", action="store_true", help="plain cargo, native platform tag (no zig)")
    wheel.add_argument("--no-sdist", action="store_true", help="only the wheel(s)")
    docs = sub.add_parser(
        "docs", help="API docs into target/api-docs/: cargo doc (rust/) and pdoc (python/); "
        "docs/*.md are the hand-written guides"
    )
    docs.add_argument("--strict", action="store_true", help="RUSTDOCFLAGS=-D warnings (missing docs fail)")
    csharp = sub.add_parser("csharp", help="Ipcez.dll and the .nupkg (linux-x64 and win-x64 libraries) into dist/, with Mono")
    csharp.add_argument("--dist", default=str(ROOT / "dist"), help="output directory")
    csharp.add_argument("--no-windows", action="store_true", help="without the cross-built win-x64 DLL")
    csharp.add_argument("--check", action="store_true", help="then unpack the .nupkg and run a program against it")
    args, unknown = parser.parse_known_args(argv)
    if args.command == "test":
        # everything the parser does not know goes to pytest (e.g. -q -k name, or after --)
        args.pytest_args = [a for a in unknown + list(args.pytest_args) if a != "--"]
        if args.windows:
            args.test_args = args.pytest_args
            return _cmd_test_windows(args)
        return _cmd_test(args)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "wheel":
        return _cmd_wheel(args)
    if args.command == "docs":
        return _cmd_docs(args)
    if args.command == "csharp":
        return _cmd_csharp(args)
    return _cmd_develop(args)


if __name__ == "__main__":
    sys.exit(main())
