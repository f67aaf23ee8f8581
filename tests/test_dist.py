"""Release artifacts: the manylinux tag set and wheel metadata that build.py
writes, what the sdist carries (and never carries), the zigbuild plumbing of build.py,
and Python 3.9 compatibility of the package (vermin).  No cargo: a prebuilt library
(IPCEZ_PREBUILT) stands in for the release build; .ci/run does the real thing."""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.util
import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List

import pytest

from conftest import ROOT

VERSION = "0.1.0"


def _load_build_py() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ipcez_build_backend", ROOT / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_py: Any = _load_build_py()


def _setuptools_77() -> None:
    try:
        import setuptools
    except ImportError:
        pytest.skip("setuptools not installed")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools.__version__} < 77 (pyproject's build requirement)")


def _copy_tree(dest: Path) -> Path:
    """The files an sdist or wheel build reads, without cargo output, git or caches."""
    ignore = shutil.ignore_patterns(
        "target", ".git", "__pycache__", ".hypothesis", ".pytest_cache", ".mypy_cache",
        "build", "dist", "docs", "*.egg-info", "_ipcez_ffi.*", "corpus", "artifacts",
    )
    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)
    return dest


@pytest.mark.parametrize(
    "target, tag",
    [
        ("x86_64-unknown-linux-gnu.2.17", "manylinux_2_17_x86_64.manylinux2014_x86_64"),
        ("aarch64-unknown-linux-gnu.2.17", "manylinux_2_17_aarch64.manylinux2014_aarch64"),
        ("x86_64-unknown-linux-gnu.2.28", "manylinux_2_28_x86_64"),
        ("x86_64-unknown-linux-gnu", "linux_x86_64"),
        ("aarch64-apple-darwin", "macosx_11_0_arm64"),
        ("x86_64-pc-windows-msvc", "win_amd64"),
    ],
)
def test_platform_tag_from_target(target: str, tag: str) -> None:
    assert build_py.plat_name({"IPCEZ_CARGO_TARGET": target}) == tag
    assert build_py.plat_name({"CARGO_BUILD_TARGET": target}) == tag
    assert build_py.plat_name({"IPCEZ_CARGO_TARGET": target, "IPCEZ_PLAT_NAME": "x"}) == "x"


@pytest.mark.parametrize(
    "cargo, build, plain",
    [
        ("cargo", ["cargo", "build"], ["cargo"]),
        ("cargo zigbuild", ["cargo", "zigbuild"], ["cargo"]),
        ("/opt/bin/cargo-zigbuild zigbuild", ["/opt/bin/cargo-zigbuild", "zigbuild"], ["cargo"]),
        ("/opt/bin/cargo-zigbuild", ["/opt/bin/cargo-zigbuild", "zigbuild"], ["cargo"]),
        ("cargo +nightly", ["cargo", "+nightly", "build"], ["cargo", "+nightly"]),
    ],
)
def test_cargo_commands(monkeypatch: pytest.MonkeyPatch, cargo: str, build: List[str], plain: List[str]) -> None:
    # zigbuild is a build subcommand: `cargo zigbuild build` would be an error, and
    # `cargo test` / `cargo doc` must not go through it.
    monkeypatch.setenv("IPCEZ_CARGO", cargo)
    assert build_py._cargo_build_command() == build
    assert build_py._cargo() == plain


def test_glibc_suffix_is_not_a_directory() -> None:
    assert build_py._triple("x86_64-unknown-linux-gnu.2.17") == "x86_64-unknown-linux-gnu"
    assert build_py._triple("aarch64-apple-darwin") == "aarch64-apple-darwin"
    assert build_py._glibc_suffix("x86_64-unknown-linux-gnu.2.17") == "2.17"
    assert build_py._glibc_suffix("x86_64-unknown-linux-gnu") is None


def _record_ok(wheel: zipfile.ZipFile, record_name: str) -> None:
    rows = list(csv.reader(io.StringIO(wheel.read(record_name).decode())))
    listed = {row[0] for row in rows}
    assert listed == set(wheel.namelist()), set(wheel.namelist()) ^ listed
    for name, digest, size in rows:
        if name == record_name:
            continue
        data = wheel.read(name)
        expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert digest == f"sha256={expected}", name
        assert int(size) == len(data), name


def test_manylinux_wheel_has_both_tags_and_is_platlib(tmp_path: Path) -> None:
    """setuptools alone would write one mangled tag and Root-Is-Purelib: true."""
    _setuptools_77()
    from ipcez import _ffi

    tree = _copy_tree(tmp_path / "tree")
    out = tmp_path / "dist"
    out.mkdir()
    arch = platform.machine() or "x86_64"
    plat = f"manylinux_2_17_{arch}.manylinux2014_{arch}"
    env = dict(os.environ, IPCEZ_PREBUILT=str(_ffi.library_path), IPCEZ_PLAT_NAME=plat)
    result = subprocess.run(
        [sys.executable, "-c", "import sys, build; print(build.build_wheel(sys.argv[1]))", str(out)],
        cwd=tree, capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    name = result.stdout.strip().splitlines()[-1]
    assert name == f"ipcez-{VERSION}-py3-none-{plat}.whl"
    assert sorted(p.name for p in out.iterdir()) == [name]
    with zipfile.ZipFile(out / name) as wheel:
        meta = wheel.read(f"ipcez-{VERSION}.dist-info/WHEEL").decode()
        tags = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Tag:")]
        assert tags == [f"py3-none-manylinux_2_17_{arch}", f"py3-none-manylinux2014_{arch}"]
        assert "Root-Is-Purelib: false" in meta and "Root-Is-Purelib: true" not in meta
        _record_ok(wheel, f"ipcez-{VERSION}.dist-info/RECORD")
        info = wheel.getinfo(f"ipcez/{_ffi.library_filename()}")
        assert info.file_size == Path(_ffi.library_path).stat().st_size


def _sdist_names(tmp_path: Path) -> Dict[str, int]:
    _setuptools_77()
    tree = _copy_tree(tmp_path / "tree")
    # planted build output that must never reach the sdist
    (tree / "python" / "ipcez" / "_ipcez_ffi.so").write_bytes(b"\x7fELF")
    for rel in ("rust/target/release/libipcez_ffi.so", "rust/fuzz/target/x", "rust/ipcez/target/y.rlib"):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(b"x")
    out = tmp_path / "dist"
    out.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", "import sys, build; print(build.build_sdist(sys.argv[1]))", str(out)],
        cwd=tree, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    name = result.stdout.strip().splitlines()[-1]
    assert name == f"ipcez-{VERSION}.tar.gz"
    prefix = f"ipcez-{VERSION}/"
    with tarfile.open(out / name) as tar:
        return {m.name[len(prefix):]: m.size for m in tar.getmembers() if m.isfile()}


def test_sdist_carries_the_rust_workspace_and_no_binaries(tmp_path: Path) -> None:
    names = _sdist_names(tmp_path)
    for required in (
        "build.py", "pyproject.toml", "README.md", "LICENSE-MIT", "LICENSE-APACHE",
        "rust/Cargo.toml", "rust/Cargo.lock",
        "rust/ipcez/Cargo.toml", "rust/ipcez/src/lib.rs",
        "rust/ipcez-ffi/Cargo.toml", "rust/ipcez-ffi/cbindgen.toml",
        "rust/ipcez-ffi/src/lib.rs", "rust/ipcez-ffi/include/ipcez.h",
        "python/ipcez/__init__.py", "python/ipcez/py.typed",
    ):
        assert required in names, required
    # every Rust source file of the two crates (modules, tests, examples cargo discovers)
    for crate in ("rust/ipcez", "rust/ipcez-ffi"):
        for path in (ROOT / crate).rglob("*"):
            rel = path.relative_to(ROOT).as_posix()
            if path.is_file() and "/target/" not in rel:
                assert rel in names, rel
    for name in names:
        assert not name.startswith(("rust/target/", "rust/fuzz/", "rust/ipcez/target/")), name
        assert not name.endswith((".so", ".dylib", ".dll", ".pyd", ".pyc", ".rlib")), name
        assert "_ipcez_ffi" not in name, name


def test_vermin_python_39() -> None:
    vermin = shutil.which("vermin")
    if vermin is None:
        pytest.skip("vermin not installed (pip install vermin)")
    result = subprocess.run(
        [vermin, "--target=3.9-", "--no-tips", "--violations", "python/", "build.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_build_py_has_release_commands() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "build.py"), "wheel", "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    for option in ("--target", "--native", "--no-sdist", "--glibc"):
        assert option in result.stdout
    result = subprocess.run([sys.executable, str(ROOT / "build.py"), "docs", "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "--strict" in result.stdout
