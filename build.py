#!/usr/bin/env python3
"""The one developer entry point, and the in-tree PEP 517 build backend.

As a script::

    python build.py            # cargo build (debug) of ipcez-ffi, copied in place as
                               # python/ipcez/_ipcez_ffi.so (.dylib / .dll)
    python build.py --release  # the same, optimized
    python build.py test       # cargo test --workspace, the in-place build, then pytest
    python build.py wheel      # pip wheel --no-deps -w dist .  (a py3-none-<platform> wheel)

As a build backend (``pyproject.toml``: ``build-backend = "build"``,
``backend-path = ["."]``) it re-exports ``setuptools.build_meta``; its
``build_wheel`` first runs ``cargo build --release -p ipcez-ffi``, copies the
cdylib into the package, and asks setuptools for a wheel tagged with the
platform.  Note: this file shadows pypa/build, so ``python -m build`` run from
the repository root does nothing useful; use ``python build.py wheel``.

Environment:

``IPCEZ_CARGO``           the cargo command (default ``cargo``; e.g. ``cargo zigbuild``)
``CARGO_BUILD_TARGET``    a target triple; the library is then taken from target/<triple>/
``CARGO_TARGET_DIR``      where cargo puts its output (default rust/target)
``IPCEZ_PREBUILT``        path of an already built cdylib to package instead of running cargo
``IPCEZ_PLAT_NAME``       the wheel's platform tag (default from sysconfig.get_platform(),
                          or derived from CARGO_BUILD_TARGET)
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent
RUST = ROOT / "rust"
PACKAGE = ROOT / "python" / "ipcez"
# Coordinate with python/ipcez/_ffi.py (library_filename) and pyproject package-data.
LIB_NAMES = {"linux": "_ipcez_ffi.so", "darwin": "_ipcez_ffi.dylib", "windows": "_ipcez_ffi.dll"}
CARGO_NAMES = {"linux": "libipcez_ffi.so", "darwin": "libipcez_ffi.dylib", "windows": "ipcez_ffi.dll"}

try:  # the backend hooks need setuptools; the script commands do not
    from setuptools import build_meta as _setuptools_backend
    from setuptools.build_meta import *  # noqa: F401,F403 - re-exported PEP 517 hooks
except ImportError:  # pragma: no cover - only `python build.py` without setuptools
    _setuptools_backend = None  # type: ignore[assignment]


def _log(message: str) -> None:
    print(f"[build.py] {message}", file=sys.stderr, flush=True)


def _target() -> Optional[str]:
    return os.environ.get("CARGO_BUILD_TARGET") or None


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


def cargo_build(release: bool) -> Path:
    """Build the ipcez-ffi cdylib (or take IPCEZ_PREBUILT) and return its path."""
    prebuilt = os.environ.get("IPCEZ_PREBUILT")
    if prebuilt:
        path = Path(prebuilt)
        if not path.is_file():
            raise SystemExit(f"IPCEZ_PREBUILT={prebuilt} does not exist")
        return path
    target = _target()
    cargo = shlex.split(os.environ.get("IPCEZ_CARGO", "cargo"))
    cmd = cargo + ["build", "-p", "ipcez-ffi", "--manifest-path", str(RUST / "Cargo.toml")]
    if release:
        cmd.append("--release")
    if target:
        cmd += ["--target", target.split(".")[0] if "zigbuild" not in " ".join(cargo) else target]
    _log(" ".join(cmd))
    subprocess.run(cmd, check=True, cwd=ROOT)
    profile = "release" if release else "debug"
    out = _target_dir()
    if target:
        out = out / target.split(".")[0]  # zigbuild's glibc suffix (x86_64-…-gnu.2.17) is not a dir
    path = out / profile / CARGO_NAMES[_os_family(target)]
    if not path.is_file():
        raise SystemExit(f"cargo finished but {path} does not exist")
    return path


def install_library(source: Path, symlink: bool = False) -> Path:
    """Put ``source`` into the package under its private name, removing any other copy."""
    family = _os_family(_target())
    dest = PACKAGE / LIB_NAMES[family]
    for name in LIB_NAMES.values():  # never let another platform's library ride along
        stale = PACKAGE / name
        if stale.exists() or stale.is_symlink():
            stale.unlink()
    if symlink:
        dest.symlink_to(source.resolve())
    else:
        shutil.copy2(source, dest)
    _log(f"{source} -> {dest}")
    return dest


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
}


def plat_name() -> str:
    """The wheel's platform tag."""
    env = os.environ.get("IPCEZ_PLAT_NAME")
    if env:
        return env
    target = _target()
    if target:
        triple = target.split(".")[0]
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
    install_library(cargo_build(release=True))
    _clean_setuptools_build_dir()
    settings: Dict[str, Any] = dict(config_settings or {})
    extra = settings.get("--build-option", [])
    extra = [extra] if isinstance(extra, str) else list(extra)
    if "--plat-name" not in extra:
        extra += ["--plat-name", plat_name()]
    settings["--build-option"] = extra
    return _setuptools_backend.build_wheel(wheel_directory, settings, metadata_directory)


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


def _cmd_test(args: argparse.Namespace) -> int:
    if not args.no_cargo:
        cargo = shlex.split(os.environ.get("IPCEZ_CARGO", "cargo"))
        cmd = cargo + ["test", "--workspace", "--manifest-path", str(RUST / "Cargo.toml")]
        _log(" ".join(cmd))
        rc = subprocess.run(cmd, cwd=ROOT).returncode
        if rc:
            return rc
        install_library(cargo_build(release=args.release))
    env = dict(os.environ)
    env.pop("IPCEZ_LIBRARY", None)  # test what was just installed in place
    cmd = [sys.executable, "-m", "pytest", *args.pytest_args]
    _log(" ".join(cmd))
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


def _cmd_wheel(args: argparse.Namespace) -> int:
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", args.dist, str(ROOT)]
    if args.no_isolation:
        cmd.insert(4, "--no-build-isolation")  # use this environment's setuptools (offline builds)
    _log(" ".join(cmd))
    return subprocess.run(cmd, cwd=ROOT).returncode


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
    test.add_argument("pytest_args", nargs="*", help="passed on to pytest (options too)")
    wheel = sub.add_parser("wheel", help="build a wheel into dist/")
    wheel.add_argument("--dist", default=str(ROOT / "dist"), help="output directory")
    wheel.add_argument(
        "--no-isolation", action="store_true", help="build with this environment's setuptools (>=77)"
    )
    args, unknown = parser.parse_known_args(argv)
    if args.command == "test":
        # everything the parser does not know goes to pytest (e.g. -q -k name, or after --)
        args.pytest_args = [a for a in unknown + list(args.pytest_args) if a != "--"]
        return _cmd_test(args)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "wheel":
        return _cmd_wheel(args)
    return _cmd_develop(args)


if __name__ == "__main__":
    sys.exit(main())
