"""The package surface and packaging: versions in sync, public names documented and
typed, Python 3.9 compatibility, the loader's error, and a py3-none-<platform> wheel."""

from __future__ import annotations

import ast
import inspect
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import List

import pytest

import ipcez
import ipcez.aio

from conftest import PYTHON_DIR, ROOT, child_env

PACKAGE = PYTHON_DIR / "ipcez"

try:
    import tomllib  # type: ignore[import-not-found]
except ImportError:  # Python < 3.11
    tomllib = None  # type: ignore[assignment]


def _toml_version(path: Path, section: str) -> str:
    text = path.read_text()
    if tomllib is not None:
        data = tomllib.loads(text)
        for key in section.split("."):
            data = data[key]
        return str(data["version"])
    m = re.search(r"^\[" + re.escape(section) + r"\][^\[]*?^version\s*=\s*\"([^\"]+)\"", text, re.M | re.S)
    assert m, f"no version in [{section}] of {path}"
    return m.group(1)


def test_versions_agree() -> None:
    assert ipcez.__version__ == "0.1.0"
    assert _toml_version(ROOT / "pyproject.toml", "project") == ipcez.__version__
    assert _toml_version(ROOT / "rust" / "Cargo.toml", "workspace.package") == ipcez.__version__


def test_all_is_explicit_and_complete() -> None:
    expected = {
        "__version__", "connect", "listen", "which", "ack_names", "Socket", "Listener",
        "Resolution", "SocketError", "IoError", "ConnectionLost", "MessageTooLarge",
        "WsError", "UnsupportedCombination", "DetectionError", "RecipientAckTimeout",
    }
    assert expected <= set(ipcez.__all__)
    for name in ipcez.__all__:
        assert hasattr(ipcez, name), name
    for name in ipcez.aio.__all__:
        assert hasattr(ipcez.aio, name), name


def _public_members(obj: object) -> List[str]:
    return [n for n in vars(obj) if not n.startswith("_")]


def test_every_public_name_has_a_docstring() -> None:
    missing = []
    for module in (ipcez, ipcez.aio):
        assert module.__doc__, module.__name__
        for name in module.__all__:
            if name.startswith("__") or name.isupper():
                continue
            obj = getattr(module, name)
            if not inspect.getdoc(obj):
                missing.append(f"{module.__name__}.{name}")
            if inspect.isclass(obj):
                for member in _public_members(obj):
                    attr = getattr(obj, member)
                    if callable(attr) or isinstance(attr, property):
                        if not inspect.getdoc(attr):
                            missing.append(f"{module.__name__}.{name}.{member}")
    assert not missing, missing


def test_every_public_function_is_annotated() -> None:
    missing = []
    for module in (ipcez, ipcez.aio):
        for name in module.__all__:
            obj = getattr(module, name)
            targets = [obj]
            if inspect.isclass(obj):
                targets = [getattr(obj, m) for m in _public_members(obj) if inspect.isfunction(getattr(obj, m))]
            for fn in targets:
                if inspect.isfunction(fn) and "return" not in fn.__annotations__:
                    missing.append(f"{name}.{fn.__name__}")
    assert not missing, missing


def test_py_typed_ships() -> None:
    assert (PACKAGE / "py.typed").is_file()


def test_sources_parse_as_python_39() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        ast.parse(source, filename=str(path), feature_version=(3, 9))
        if path.name not in ("_version.py",):
            assert "from __future__ import annotations" in source, f"{path.name}: needed for 3.9"


def _python39() -> List[str]:
    exe = shutil.which("python3.9")
    if exe:
        probe = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True)
        if probe.returncode == 0 and "(3, 9)" in probe.stdout:
            return [exe]
    if shutil.which("pyenv"):
        versions = subprocess.run(["pyenv", "versions", "--bare"], capture_output=True, text=True).stdout.split()
        for v in versions:
            if v.startswith("3.9"):
                prefix = subprocess.run(["pyenv", "prefix", v], capture_output=True, text=True).stdout.strip()
                exe = os.path.join(prefix, "bin", "python3.9")
                if prefix and os.path.exists(exe):
                    return [exe]
    return []


def test_imports_on_python_39() -> None:
    cmd = _python39()
    if not cmd:
        pytest.skip("no Python 3.9 interpreter found")
    result = subprocess.run(
        cmd + ["-c", "import sys, ipcez, ipcez.aio; assert sys.version_info[:2] == (3, 9); "
               "print(ipcez.which(sys.argv[1]).transport)", "/tmp/x.sock"],
        capture_output=True, text=True, timeout=60, env=child_env(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "unix"


def test_missing_library_import_error_names_paths(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "libipcez_ffi.so"
    result = subprocess.run(
        [sys.executable, "-c", "import ipcez"],
        capture_output=True, text=True, timeout=30,
        env=child_env({"IPCEZ_LIBRARY": str(missing)}),
    )
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert str(missing) in result.stderr


def test_wrong_library_is_refused(tmp_path: Path) -> None:
    # A real shared library that is not ipcez-ffi (libc) must be rejected at import.
    import ctypes.util

    libc = ctypes.util.find_library("c")
    if not libc:
        pytest.skip("no libc found")
    result = subprocess.run(
        [sys.executable, "-c", "import ipcez"],
        capture_output=True, text=True, timeout=30,
        env=child_env({"IPCEZ_LIBRARY": libc if os.path.isabs(libc) else "/lib/x86_64-linux-gnu/" + libc}),
    )
    assert result.returncode != 0
    assert "ImportError" in result.stderr and "ipcez" in result.stderr


def test_loader_uses_private_name_inside_package() -> None:
    from ipcez import _ffi

    name = _ffi.library_filename()
    assert name.startswith("_ipcez_ffi.")
    saved = os.environ.pop("IPCEZ_LIBRARY", None)
    try:
        assert _ffi.library_candidates() == [PACKAGE.resolve() / name]
    finally:
        if saved is not None:
            os.environ["IPCEZ_LIBRARY"] = saved


def test_wheel_is_py3_none_platform(tmp_path: Path) -> None:
    """build.py as a PEP 517 backend, with IPCEZ_PREBUILT instead of cargo, in a copy of the tree."""
    try:
        import setuptools
    except ImportError:
        pytest.skip("setuptools not installed")
    major = int(setuptools.__version__.split(".")[0])
    if major < 77:
        pytest.skip(f"setuptools {setuptools.__version__} < 77 (pyproject's build requirement)")
    from ipcez import _ffi

    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "build.py", "MANIFEST.in", "README.md"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, tree / name)
    if not (tree / "README.md").exists():
        (tree / "README.md").write_text("ipcez\n")
    shutil.copytree(PACKAGE, tree / "python" / "ipcez", ignore=shutil.ignore_patterns("_ipcez_ffi.*", "__pycache__"))
    out = tmp_path / "dist"
    out.mkdir()
    env = dict(os.environ, IPCEZ_PREBUILT=str(_ffi.library_path))
    env.pop("IPCEZ_PLAT_NAME", None)
    env.pop("CARGO_BUILD_TARGET", None)
    result = subprocess.run(
        [sys.executable, "-c", "import sys, build; print(build.build_wheel(sys.argv[1]))", str(out)],
        cwd=tree, capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    wheel_name = result.stdout.strip().splitlines()[-1]
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    assert wheel_name == f"ipcez-0.1.0-py3-none-{plat}.whl"
    with zipfile.ZipFile(out / wheel_name) as wheel:
        names = set(wheel.namelist())
        assert f"ipcez/{_ffi.library_filename()}" in names
        assert "ipcez/py.typed" in names
        assert "ipcez/__init__.py" in names and "ipcez/aio.py" in names
        metadata = wheel.read("ipcez-0.1.0.dist-info/METADATA").decode()
        assert "Requires-Python: >=3.9" in metadata
        entry_points = wheel.read("ipcez-0.1.0.dist-info/entry_points.txt").decode()
        assert "ipcez = ipcez.__main__:main" in entry_points
        wheel_meta = wheel.read("ipcez-0.1.0.dist-info/WHEEL").decode()
        assert f"Tag: py3-none-{plat}" in wheel_meta


def test_build_py_cli_help() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "build.py"), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    for word in ("test", "wheel"):
        assert word in result.stdout
