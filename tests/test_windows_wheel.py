"""The Windows wheel, checked without Windows: the loader's choice of file name on
win32, the wheel the build backend makes for x86_64-pc-windows-gnu, and (when one was
built, e.g. by CI) the real release wheel's DLL."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import List, Set

import pytest

from conftest import PYTHON_DIR, ROOT

PACKAGE = PYTHON_DIR / "ipcez"
VERSION = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)  # type: ignore[union-attr]
WHEEL_NAME = f"ipcez-{VERSION}-py3-none-win_amd64.whl"
#: DLLs every Windows has; anything else (a mingw runtime DLL) would not load there.
SYSTEM_DLLS = {
    "kernel32.dll", "ntdll.dll", "advapi32.dll", "ws2_32.dll", "bcrypt.dll", "bcryptprimitives.dll",
    "userenv.dll", "msvcrt.dll", "ucrtbase.dll", "crypt32.dll", "secur32.dll", "ncrypt.dll", "shell32.dll",
    "ole32.dll", "oleaut32.dll", "user32.dll", "synchronization.dll", "iphlpapi.dll", "dbghelp.dll",
}  # plus the api-ms-win-* API sets


def test_loader_looks_for_the_dll_name_the_wheel_ships_on_win32(monkeypatch: pytest.MonkeyPatch) -> None:
    from ipcez import _ffi

    sys.path.insert(0, str(ROOT))
    try:
        import build
    finally:
        sys.path.remove(str(ROOT))
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.delenv("IPCEZ_LIBRARY", raising=False)
    assert _ffi.library_filename() == "_ipcez_ffi.dll"
    assert _ffi.library_candidates() == [PACKAGE.resolve() / "_ipcez_ffi.dll"]
    assert build.LIB_NAMES["windows"] == _ffi.library_filename(), "build.py packs what the loader looks for"
    assert build.CARGO_NAMES["windows"] == "ipcez_ffi.dll", "what cargo names the cdylib for Windows"
    monkeypatch.setattr(sys, "platform", "linux")
    assert _ffi.library_filename() == "_ipcez_ffi.so", "the choice follows sys.platform"


def test_backend_makes_a_win_amd64_wheel_with_the_dll_under_the_loaders_name(tmp_path: Path) -> None:
    """build.py as a PEP 517 backend for the Windows target, with a stand-in DLL instead of
    cargo, in a copy of the tree."""
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools.__version__} < 77 (pyproject's build requirement)")
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "build.py", "MANIFEST.in", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(PACKAGE, tree / "python" / "ipcez", ignore=shutil.ignore_patterns("_ipcez_ffi.*", "__pycache__"))
    # A leftover Linux library in the tree must not ride along into the Windows wheel.
    (tree / "python" / "ipcez" / "_ipcez_ffi.so").write_bytes(b"\x7fELF not for windows")
    dll = tmp_path / "ipcez_ffi.dll"
    dll.write_bytes(b"MZ stand-in for the cross-compiled DLL")
    out = tmp_path / "dist"
    out.mkdir()
    env = dict(os.environ, IPCEZ_PREBUILT=str(dll), IPCEZ_CARGO_TARGET="x86_64-pc-windows-gnu")
    env.pop("IPCEZ_PLAT_NAME", None)
    env.pop("CARGO_BUILD_TARGET", None)
    result = subprocess.run(
        [sys.executable, "-c", "import sys, build; print(build.build_wheel(sys.argv[1]))", str(out)],
        cwd=tree, capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == WHEEL_NAME
    with zipfile.ZipFile(out / WHEEL_NAME) as wheel:
        names = set(wheel.namelist())
        assert wheel.read("ipcez/_ipcez_ffi.dll") == dll.read_bytes()
        assert not {n for n in names if n.startswith("ipcez/_ipcez_ffi.") and n != "ipcez/_ipcez_ffi.dll"}
        assert {"ipcez/__init__.py", "ipcez/_ffi.py", "ipcez/py.typed"} <= names
        wheel_meta = wheel.read(f"ipcez-{VERSION}.dist-info/WHEEL").decode()
        assert "Tag: py3-none-win_amd64" in wheel_meta
        assert "Root-Is-Purelib: false" in wheel_meta


def _release_wheel() -> Path:
    explicit = os.environ.get("IPCEZ_WINDOWS_WHEEL")
    path = Path(explicit) if explicit else ROOT / "dist" / WHEEL_NAME
    if not path.is_file():
        if explicit:
            pytest.fail(f"IPCEZ_WINDOWS_WHEEL={explicit} does not exist")
        pytest.skip(f"no {path} (python build.py wheel --target x86_64-pc-windows-gnu builds it)")
    return path


def _objdump(dll: Path) -> str:
    tool = shutil.which("x86_64-w64-mingw32-objdump") or shutil.which("objdump")
    if not tool:
        pytest.skip("no objdump to read the DLL's tables (apt-get install gcc-mingw-w64-x86-64)")
    return subprocess.run([tool, "-p", str(dll)], capture_output=True, text=True, check=True, timeout=60).stdout


def _exports(dump: str) -> Set[str]:
    table = dump.split("[Ordinal/Name Pointer] Table", 1)[-1]
    return set(re.findall(r"^\s*\[\s*\d+\]\s+(\w+)$", table, re.M))


def _imports(dump: str) -> List[str]:
    return [name.lower() for name in re.findall(r"DLL Name:\s*(\S+)", dump)]


def test_release_windows_wheel_holds_a_self_contained_x64_dll(tmp_path: Path) -> None:
    wheel = _release_wheel()
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert "ipcez/_ipcez_ffi.dll" in names, sorted(names)
        assert not {n for n in names if n.endswith((".so", ".dylib"))}
        data = zf.read("ipcez/_ipcez_ffi.dll")
    assert data[:2] == b"MZ"
    pe = int.from_bytes(data[0x3C:0x40], "little")
    assert data[pe:pe + 4] == b"PE\0\0"
    assert int.from_bytes(data[pe + 4:pe + 6], "little") == 0x8664, "x86-64"
    assert int.from_bytes(data[pe + 22:pe + 24], "little") & 0x2000, "a DLL"
    dll = tmp_path / "_ipcez_ffi.dll"
    dll.write_bytes(data)
    dump = _objdump(dll)
    header = (ROOT / "rust" / "ipcez-ffi" / "include" / "ipcez.h").read_text()
    declared = set(re.findall(r"\b(ipcez_\w+)\(", header))
    assert declared and declared <= _exports(dump), declared - _exports(dump)
    foreign = [d for d in _imports(dump) if d not in SYSTEM_DLLS and not d.startswith("api-ms-win-")]
    assert not foreign, f"the DLL needs {foreign}, which Windows does not have"
