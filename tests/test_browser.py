"""A real browser against a ws listener: headless Chromium loads a page from a local HTTP
server (another origin than the listener's) that opens ``new WebSocket(url, ["proto"])``
and reports what happened back to that HTTP server.

- With the default origins the page's origin is foreign: the handshake is refused (403) and
  the application never sees a connection.
- With the page's origin allowed and ``subprotocols=["proto"]``, the browser connects,
  ``ws.protocol`` is ``"proto"`` on both ends, and a message makes the round trip.
"""

from __future__ import annotations

import http.server
import logging
import queue
import shutil
import subprocess
import tempfile
import threading
import urllib.parse
from typing import Iterator, List, Optional

import pytest

import ipcez

PAGE = """<!doctype html><title>ipcez test</title><script>
const report = (what) => fetch("/report?" + encodeURIComponent(what));
const ws = new WebSocket(%(url)r, ["proto"]);
ws.binaryType = "arraybuffer";  // ipcez sends binary messages
ws.onopen = () => ws.send("hello from the browser");
ws.onmessage = (e) => {
  report("open:" + ws.protocol + ":" + new TextDecoder().decode(e.data));
  ws.close(1000);
};
ws.onclose = (e) => report("closed:" + e.code);
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("needs headless Chromium (apt-get install chromium)")
    raise AssertionError("unreachable")


class PageServer:
    """Serves the test page; collects what the page reports."""

    def __init__(self) -> None:
        self.reports: "queue.Queue[str]" = queue.Queue()
        #: The listener the page connects to (set before the browser loads the page).
        self.ws_url = ""
        reports = self.reports
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                if self.path.startswith("/report?"):
                    reports.put(urllib.parse.unquote(self.path.split("?", 1)[1]))
                    body = b""
                else:
                    body = (PAGE % {"url": server.ws_url}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def browser() -> Iterator[str]:
    path = chromium()
    with tempfile.TemporaryDirectory(prefix="ipcez-chromium-") as profile:
        yield path + "\0" + profile


def run_page(browser: str, page_url: str, reports: "queue.Queue[str]", want: str) -> List[str]:
    """Opens the page in headless Chromium until it reports something starting with
    ``want`` (or 30 s pass); returns every report."""
    exe, profile = browser.split("\0")
    proc = subprocess.Popen(
        [
            exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-extensions", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
            page_url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen: List[str] = []
    try:
        wait = 30.0
        while True:
            try:
                seen.append(reports.get(timeout=wait))
            except queue.Empty:
                break
            if seen[-1].startswith(want):
                break
            if seen[-1].startswith("closed:"):
                # The page reports with concurrent fetches: a report sent before the close
                # may still arrive after it.
                wait = 2.0
    finally:
        proc.kill()
        proc.wait(10)
    return seen


@pytest.fixture
def page() -> Iterator[PageServer]:
    server = PageServer()
    yield server
    server.close()


def test_a_page_of_another_origin_is_refused(
    browser: str, page: PageServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ipcez")
    with ipcez.listen("ws://127.0.0.1:0/chat", subprotocols=["proto"]) as listener:
        page.ws_url = listener.address
        seen = run_page(browser, page.origin + "/", page.reports, "closed:")
        assert seen and seen[-1] == "closed:1006", seen  # what a browser shows for a refusal
        refusals = [r.getMessage() for r in caplog.records if "403" in r.getMessage()]
        assert any(page.origin in m for m in refusals), refusals
        with pytest.raises(TimeoutError):
            listener.accept(timeout=0.3)


def test_an_allowed_page_connects_with_its_subprotocol(browser: str, page: PageServer) -> None:
    got: List[Optional[str]] = []
    with ipcez.listen(
        "ws://127.0.0.1:0/chat", origins=[page.origin], subprotocols=["proto"]
    ) as listener:
        page.ws_url = listener.address

        def echo() -> None:
            sock = listener.accept(timeout=30)
            got.append(sock.subprotocol)
            sock.send(sock.recv(timeout=10))
            try:
                sock.recv(timeout=10)  # until the browser closes
            except ipcez.ConnectionLost as e:
                got.append(str(e.code))

        server = threading.Thread(target=echo, daemon=True)
        server.start()
        seen = run_page(browser, page.origin + "/", page.reports, "open:")
        server.join(15)
    assert "open:proto:hello from the browser" in seen, seen
    assert got == ["proto", "1000"], got
