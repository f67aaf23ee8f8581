"""Builds, tests and packs the C# binding with Mono (``mcs``, ``mono``); used by build.py.

``python build.py csharp`` calls :func:`pack` and ``python build.py test`` calls
:func:`test` after pytest. Everything here runs offline: the ``.nupkg`` is a zip with
NuGet's layout, written with :mod:`zipfile`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SOURCES = sorted((HERE / "src").glob("*.cs"))
TESTS = sorted(p for p in (HERE / "tests").glob("*.cs") if p.name != "OneUsing.cs")
ONE_USING = HERE / "tests" / "OneUsing.cs"
NUSPEC = HERE / "Ipcez.nuspec"
#: Hard limit for the whole C# test run, in seconds.
TEST_TIMEOUT = 900
#: What a fresh Debian machine installs for these tests.
APT_PACKAGES = "mono-devel"


def missing_tools() -> List[str]:
    """The Mono tools that are not on PATH."""
    return [tool for tool in ("mcs", "mono") if shutil.which(tool) is None]


def version() -> str:
    """The version Ipcez.cs declares (:func:`test` checks it against pyproject.toml's)."""
    for line in (HERE / "src" / "Ipcez.cs").read_text().splitlines():
        if "const string Version" in line:
            return line.split('"')[1]
    raise SystemExit("csharp/src/Ipcez.cs: no Version constant")


def _run(cmd: List[str], **kwargs: object) -> None:
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]


def compile_library(out: Path) -> Path:
    """Ipcez.dll (netstandard2.0-compatible, C# 7) and its XML docs into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    dll = out / "Ipcez.dll"
    _run(["mcs", "-target:library", "-unsafe", "-langversion:7", "-optimize+", "-warnaserror+",
          "-nowarn:1591", f"-doc:{out / 'Ipcez.xml'}", f"-out:{dll}", *map(str, SOURCES)])
    return dll


def compile_program(dll: Path, sources: List[Path], out: Path, extra: Optional[List[str]] = None) -> Path:
    """An .exe from ``sources`` against ``dll``, written beside it."""
    _run(["mcs", "-langversion:7", "-warnaserror+", f"-r:{dll}", "-r:System.Core", *(extra or []),
          f"-out:{out}", *map(str, sources)])
    return out


def _test_env(library: Path) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(
        IPCEZ_LIBRARY=str(library),
        IPCEZ_PYTHON=sys.executable,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "python"), env.get("PYTHONPATH", "")])),
        target="local",
        os="linux",
    )
    env.pop("IPCEZ_TARGET", None)
    env.pop("IPCEZ_OS", None)
    return env


def nupkg_name() -> str:
    return f"Ipcez.{version()}.nupkg"


def pack(dll: Path, natives: Dict[str, Path], dist: Path) -> Path:
    """Writes dist/Ipcez.<version>.nupkg: the nuspec, lib/netstandard2.0/Ipcez.dll (+ docs)
    and each native library under runtimes/<rid>/native/."""
    dist.mkdir(parents=True, exist_ok=True)
    target = dist / nupkg_name()
    nuspec = NUSPEC.read_text().replace("$version$", version())
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("Ipcez.nuspec", nuspec)
        z.writestr("[Content_Types].xml", _CONTENT_TYPES)
        z.writestr("_rels/.rels", _RELS)
        z.write(dll, "lib/netstandard2.0/Ipcez.dll")
        docs = dll.with_name("Ipcez.xml")
        if docs.is_file():
            z.write(docs, "lib/netstandard2.0/Ipcez.xml")
        for rid, native in sorted(natives.items()):
            z.write(native, f"runtimes/{rid}/native/{native.name}")
        for name in ("LICENSE-MIT", "LICENSE-APACHE"):
            z.write(ROOT / name, name)
        z.write(HERE / "README.md", "README.md")
    print(f"wrote {target} ({', '.join(sorted(natives)) or 'no native library'})", flush=True)
    return target


_CONTENT_TYPES = """<?xml version="1.0" encoding="utf-8"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
  <Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml" />
  <Default Extension="nuspec" ContentType="application/octet" />
  <Default Extension="dll" ContentType="application/octet" />
  <Default Extension="xml" ContentType="application/octet" />
  <Default Extension="so" ContentType="application/octet" />
  <Default Extension="md" ContentType="application/octet" />
  <Override PartName="/LICENSE-MIT" ContentType="application/octet" />
  <Override PartName="/LICENSE-APACHE" ContentType="application/octet" />
</Types>
"""

_RELS = """<?xml version="1.0" encoding="utf-8"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
  <Relationship Type="http://schemas.microsoft.com/packaging/2010/07/manifest" Target="/Ipcez.nuspec" Id="R1" />
</Relationships>
"""


def check_package(nupkg: Path) -> int:
    """Unpacks ``nupkg`` into a fresh directory, lays it out as a built application (Ipcez.dll
    beside the program, runtimes/ below it) and runs OneUsing.exe there with no Rust on PATH
    and no IPCEZ_LIBRARY: the library must come from the package."""
    with tempfile.TemporaryDirectory(prefix="ipcez-nupkg-") as tmp:
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(nupkg) as z:
            z.extractall(unpacked)
        app = Path(tmp) / "app"
        app.mkdir()
        shutil.copy2(unpacked / "lib" / "netstandard2.0" / "Ipcez.dll", app / "Ipcez.dll")
        shutil.copytree(unpacked / "runtimes", app / "runtimes")
        exe = compile_program(app / "Ipcez.dll", [ONE_USING], app / "OneUsing.exe")
        bare = Path(tmp) / "bin"  # only mono on PATH: no cargo, no rustc
        bare.mkdir()
        os.symlink(shutil.which("mono") or "mono", bare / "mono")
        env = {k: v for k, v in os.environ.items() if k not in ("IPCEZ_LIBRARY", "LD_LIBRARY_PATH", "CARGO_HOME", "RUSTUP_HOME")}
        env.update(PATH=str(bare), target="local", os="linux")
        assert shutil.which("cargo", path=env["PATH"]) is None and shutil.which("rustc", path=env["PATH"]) is None
        proc = subprocess.run(["mono", str(exe)], cwd=tmp, env=env, capture_output=True, text=True, timeout=120)
        print(proc.stdout + proc.stderr, end="", flush=True)
        expected = str(app / "runtimes" / "linux-x64" / "native" / "libipcez_ffi.so")
        if proc.returncode or expected not in proc.stdout:
            print(f"FAILED: the packaged program did not run on the packaged library ({expected})", flush=True)
            return 1
        print("package check: passed (unpacked, compiled and run with no Rust on PATH)", flush=True)
        return 0


def doc_snippets() -> List[str]:
    """The ```csharp blocks of docs/csharp.md and csharp/README.md, each as a program: its
    `using` lines on top, the rest as the body of Main."""
    programs = []
    for doc in (ROOT / "docs" / "csharp.md", HERE / "README.md"):
        for block in re.findall(r"```csharp\n(.*?)```", doc.read_text(), re.S):
            lines = block.splitlines()
            head = [line for line in lines if re.match(r"using [A-Za-z.]+;$", line)]
            body = [line for line in lines if line not in head]
            programs.append("\n".join(head) + "\nstatic class Snippet\n{\n    static void Main()\n    {\n"
                            + "\n".join(body) + "\n    }\n}\n")
    return programs


def check_doc_snippets(dll: Path, library: Path) -> int:
    """Compiles every C# snippet of the docs; runs those that need no other process."""
    for n, program in enumerate(doc_snippets()):
        source = dll.with_name(f"Snippet{n}.cs")
        source.write_text(program)
        exe = compile_program(dll, [source], source.with_suffix(".exe"))
        if "Ipcez.Listen" in program:
            proc = subprocess.run(["mono", str(exe)], env=_test_env(library), capture_output=True, text=True, timeout=60)
            if proc.returncode:
                print(f"FAILED: the snippet {source.name} of the docs exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
                return 1
    print("doc snippets: compiled (and the self-contained ones run)", flush=True)
    return 0


def check_missing_library(one_using: Path) -> int:
    """Runs ``one_using`` where no native library is: one message must list every place tried
    (IPCEZ_LIBRARY unset, or set to "", which counts as unset)."""
    here = one_using.parent
    expected = (f"ipcez: cannot load its native library libipcez_ffi.so; looked in: {here}/libipcez_ffi.so "
                f"(not found); {here}/runtimes/linux-x64/native/libipcez_ffi.so (not found). Install the Ipcez package")
    for variable in ({}, {"IPCEZ_LIBRARY": ""}):
        env = {k: v for k, v in _test_env(Path("/nonexistent")).items() if k != "IPCEZ_LIBRARY"}
        proc = subprocess.run(["mono", str(one_using)], env={**env, **variable}, capture_output=True, text=True, timeout=60)
        if proc.returncode == 0 or "DllNotFoundException" not in proc.stderr or expected not in proc.stderr:
            print(f"FAILED: without a native library ({variable}), expected a DllNotFoundException saying\n"
                  f"  {expected}\ngot:\n{proc.stderr}")
            return 1
    print("missing native library: one message lists where it looked", flush=True)
    return 0


def check_bad_libraries(one_using: Path, library: Path) -> int:
    """IPCEZ_LIBRARY naming a library of another architecture, a directory or a missing file:
    each time one DllNotFoundException naming the path and what is wrong with it."""
    wrong_arch = one_using.with_name("wrong-arch.so")
    data = bytearray(library.read_bytes())
    data[4] = 1  # EI_CLASS: a 32-bit library
    wrong_arch.write_bytes(bytes(data))
    cases = {
        wrong_arch: "wrong ELF class: ELFCLASS32; this process needs a linux-x64 library)",
        one_using.parent: "(a directory: name the libipcez_ffi.so in it)",
        one_using.with_name("missing.so"): "(not found)",
    }
    for path, reason in cases.items():
        env = dict(_test_env(library), IPCEZ_LIBRARY=str(path))
        proc = subprocess.run(["mono", str(one_using)], env=env, capture_output=True, text=True, timeout=60)
        expected = f"ipcez: cannot load its native library libipcez_ffi.so; looked in: {path} "
        if proc.returncode == 0 or "DllNotFoundException" not in proc.stderr or expected not in proc.stderr \
                or reason not in proc.stderr or "IPCEZ_LIBRARY is set" not in proc.stderr:
            print(f"FAILED: IPCEZ_LIBRARY={path}: expected a DllNotFoundException saying\n  {expected}...{reason}\n"
                  f"got:\n{proc.stderr}")
            return 1
    print("a bad IPCEZ_LIBRARY (other architecture, directory, missing): the message says which and why", flush=True)
    return 0


def test(library: Path, args: List[str]) -> int:
    """Compiles Ipcez.dll and the tests, runs them under mono against ``library``, then
    packs a test .nupkg with ``library`` and runs a program against it unpacked."""
    project = (ROOT / "pyproject.toml").read_text().split('version = "', 1)[1].split('"', 1)[0]
    if version() != project:
        print(f"FAILED: csharp/src/Ipcez.cs says version {version()}, pyproject.toml {project}", flush=True)
        return 1
    with tempfile.TemporaryDirectory(prefix="ipcez-csharp-") as tmp:
        out = Path(tmp)
        dll = compile_library(out)
        one_using = compile_program(dll, [ONE_USING], out / "OneUsing.exe")  # one `using` is enough
        exe = compile_program(dll, TESTS, out / "IpcezTests.exe")
        cmd = ["mono", "--debug", str(exe), *args]
        print("+ " + " ".join(cmd), flush=True)
        try:
            rc = subprocess.run(cmd, cwd=out, env=_test_env(library), timeout=TEST_TIMEOUT).returncode
        except subprocess.TimeoutExpired:
            print(f"FAILED: the C# tests ran longer than {TEST_TIMEOUT} s", flush=True)
            return 1
        if rc or args:
            return rc
        if check_doc_snippets(dll, library) or check_missing_library(one_using) \
                or check_bad_libraries(one_using, library):
            return 1
        nupkg = pack(dll, {"linux-x64": library}, out / "dist")
        return check_package(nupkg)


def test_from_build(library: Path) -> int:
    """The C# step of ``python build.py test``: skipped, with one line saying why, when Mono is
    missing, unless IPCEZ_REQUIRE_BINDINGS=1 (CI), which makes that a failure."""
    missing = missing_tools()
    if missing:
        why = f"{', '.join(missing)} not found; install them with `apt-get install {APT_PACKAGES}`"
        if os.environ.get("IPCEZ_REQUIRE_BINDINGS") == "1":
            print(f"FAILED: the C# tests cannot run ({why}) and IPCEZ_REQUIRE_BINDINGS=1", flush=True)
            return 1
        print(f"C# tests skipped: {why}", flush=True)
        return 0
    if not library.is_file():
        print(f"FAILED: the C# tests need {library} (cargo build -p ipcez-ffi)", flush=True)
        return 1
    return test(library.resolve(), [])


def build_package(dist: Path, natives: Dict[str, Path], check: bool = False) -> int:
    """``python build.py csharp``: Ipcez.dll (and its XML docs) and the .nupkg into ``dist``."""
    missing = missing_tools()
    if missing:
        raise SystemExit(f"python build.py csharp needs {', '.join(missing)}: apt-get install {APT_PACKAGES}")
    dll = compile_library(dist)
    nupkg = pack(dll, natives, dist)
    return check_package(nupkg) if check else 0


if __name__ == "__main__":
    # python csharp/build_csharp.py [NAME ...]: the C# tests alone (those whose names contain a
    # NAME), against IPCEZ_LIBRARY or the debug library `cargo build -p ipcez-ffi` makes.
    default = ROOT / "rust" / "target" / "debug" / "libipcez_ffi.so"
    sys.exit(test(Path(os.environ.get("IPCEZ_LIBRARY") or default).resolve(), sys.argv[1:]))
