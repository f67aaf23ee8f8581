"""Every ```python block in README.md and docs/*.md runs as pasted, and every ```js block
(an ES module, with the Node package of node/ as `ipcez`).

Each block runs as its own script in a fresh interpreter, with ``target=local os=linux``
set and a hard timeout. A block that needs a server says so in the line before it::

    <!-- needs: echo-listener /tmp/ipcez-demo.sock -->

and the test starts that server (``ipcez listen PATH --echo``, as the README tells a reader
to) before the block runs. Socket paths under /tmp/ are moved into a directory of the test's
own, so parallel runs do not meet. A ``print(...)  # expected`` line must print ``expected``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

import pytest

from conftest import ROOT, child_env

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the snippets use Unix socket paths")

DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SNIPPET_TIMEOUT = 30.0
_BLOCK = re.compile(r"^```(?P<lang>python|js)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
_NEEDS = re.compile(r"<!--\s*needs:\s*(?P<kind>[\w-]+)\s+(?P<arg>\S+)\s*-->\s*$")
_EXPECTED = re.compile(r"^\s*print\(.*\)\s+#\s*(?P<expected>\S.*?)\s*$")
_JS_EXPECTED = re.compile(r"console\.log\(.*//\s*(?P<expected>\S.*?)\s*$")
NODE_ADDON = ROOT / "node" / "ipcez.linux-x64-gnu.node"
KNOWN_NEEDS = {"echo-listener"}


class Snippet(NamedTuple):
    doc: Path
    line: int
    code: str
    needs: Optional[str]
    needs_arg: Optional[str]
    lang: str = "python"

    @property
    def name(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def _snippets() -> List[Snippet]:
    found = []
    for doc in DOC_FILES:
        text = doc.read_text(encoding="utf-8")
        for m in _BLOCK.finditer(text):
            before = text[: m.start()].rstrip("\n").splitlines()
            needs = _NEEDS.search(before[-1]) if before else None
            line = text.count("\n", 0, m.start()) + 1
            found.append(
                Snippet(doc, line, m.group(2), needs and needs["kind"], needs and needs["arg"], m["lang"])
            )
    return found


SNIPPETS = _snippets()


def test_the_readme_has_runnable_snippets() -> None:
    readme = [s for s in SNIPPETS if s.doc.name == "README.md"]
    assert len(readme) >= 4, [s.name for s in readme]
    assert any(s.needs for s in readme), "the client-only snippets need a listener"


def _start_echo_listener(path: str, env: Dict[str, str]) -> "subprocess.Popen[str]":
    proc = subprocess.Popen(
        [sys.executable, "-m", "ipcez", "listen", path, "--echo"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 15
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _, err = proc.communicate(timeout=5)
            raise AssertionError(f"ipcez listen {path} --echo did not start: {err}")
        time.sleep(0.02)
    return proc


def _stop(proc: "subprocess.Popen[str]") -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _command(snippet: Snippet, code: str, work: str) -> List[str]:
    """The command that runs `code`: Python, or node with the package of node/ as `ipcez`."""
    if snippet.lang == "python":
        script = Path(work) / "snippet.py"
        script.write_text(code, encoding="utf-8")
        return [sys.executable, str(script)]
    node = shutil.which("node")
    missing = "node" if node is None else None if NODE_ADDON.exists() else "the Node addon"
    if missing:
        if os.environ.get("IPCEZ_REQUIRE_BINDINGS") == "1":
            pytest.fail(f"{snippet.name}: {missing} is missing (python build.py test builds the addon)")
        pytest.skip(f"{missing} is missing (python build.py test builds the addon when node is installed)")
    (Path(work) / "node_modules").mkdir()
    (Path(work) / "node_modules" / "ipcez").symlink_to(ROOT / "node")
    script = Path(work) / "snippet.mjs"
    script.write_text(code, encoding="utf-8")
    return [str(node), str(script)]


@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda s: s.name)
def test_snippet_runs_as_pasted(snippet: Snippet) -> None:
    if snippet.needs is not None:
        assert snippet.needs in KNOWN_NEEDS, f"{snippet.name}: unknown needs {snippet.needs!r}"
    work = tempfile.mkdtemp(prefix="ipz-doc-", dir="/tmp")
    try:
        code = snippet.code.replace("/tmp/", work + "/")
        env = child_env({"target": "local", "os": "linux"})
        server = None
        if snippet.needs == "echo-listener":
            assert snippet.needs_arg is not None
            server = _start_echo_listener(snippet.needs_arg.replace("/tmp/", work + "/"), env)
        try:
            result = subprocess.run(
                _command(snippet, code, work), cwd=work, env=env,
                capture_output=True, text=True, timeout=SNIPPET_TIMEOUT,
            )
        finally:
            if server is not None:
                _stop(server)
        assert result.returncode == 0, (
            f"{snippet.name} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
        for line in snippet.code.splitlines():
            m = (_EXPECTED.match if snippet.lang == "python" else _JS_EXPECTED.search)(line)
            if m:
                assert m["expected"] in result.stdout, (
                    f"{snippet.name}: expected {m['expected']!r} in the output:\n{result.stdout}"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


_LINK = re.compile(r"\]\((?!https?://|#)([^)#\s]+)")
#: Pages another part of the project writes; they exist once every part is merged.
_WRITTEN_ELSEWHERE = {"docs/architecture.md", "docs/platforms.md"}


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files(doc: Path) -> None:
    broken = []
    for target in _LINK.findall(doc.read_text(encoding="utf-8")):
        path = (doc.parent / target).resolve()
        relative = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
        if not path.exists() and relative not in _WRITTEN_ELSEWHERE:
            broken.append(target)
    assert not broken, f"{doc.name} links to missing files: {broken}"


_JARGON = re.compile(r"\b(seed|SPEC|contract)\b|\bissue\s+#?\d+|§", re.I)


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_speak_of_this_project_only(doc: Path) -> None:
    hits = [
        f"{n}: {line.strip()}"
        for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1)
        if _JARGON.search(line)
    ]
    assert not hits, "words a reader cannot look up:\n" + "\n".join(hits)


def test_readme_stays_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 300, f"README.md has {lines} lines; move detail into docs/"
