"""Run the demo as a user does (``launch.py`` in a child process) and look at it with Chromium.

Used by the demo's tests and by ``scripts/demo-screenshot``. Chromium is Debian's package
(``apt-get install chromium``; ``scripts/services`` installs it), run headless with a fresh
profile and everything that would phone home switched off.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, final

import httpx

from tcpworkers.errors import ServerNotFoundError

HERE = Path(__file__).resolve().parent
_OPEN = re.compile(r"^\s*open (http://\S+?)/?\s")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # root in a container has no user namespaces for the sandbox
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


@final
@dataclass
class RunningDemo:
    """A demo started by :func:`run_demo`: its URL, process and everything it printed."""

    url: str
    process: subprocess.Popen[bytes]
    output: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(self.output)


@contextlib.contextmanager
def run_demo(
    args: Sequence[str] = ("--port", "0", "--no-reload"),
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    stop_signal: signal.Signals = signal.SIGINT,
    as_background_job: bool = False,
) -> Iterator[RunningDemo]:
    """Start ``launch.py`` with ``args``; yield once it printed where to open it; stop it with
    ``stop_signal`` (Ctrl-C by default) and wait for it on exit. Raises ``RuntimeError`` with its
    output if it never got there. ``as_background_job`` starts it with SIGINT ignored, as a
    shell does for ``scripts/demo &``."""
    argv = [sys.executable, str(HERE / "launch.py"), *args]
    if as_background_job:
        argv = ["sh", "-c", 'trap "" INT; exec "$0" "$@"', *argv]
    proc = subprocess.Popen(
        argv,
        env=dict(env if env is not None else os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    output: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            output.append(line)
            if not url and (match := _OPEN.match(line)):
                url.append(match.group(1))
                found.set()
        found.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        found.wait(timeout)
        if not url:
            raise RuntimeError("the demo did not start:\n" + "\n".join(output))
        yield RunningDemo(url[0], proc, output)
    finally:
        if proc.poll() is None:
            proc.send_signal(stop_signal)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(5)


def chromium() -> str:
    """The Chromium binary; raises ``ServerNotFoundError`` saying how to install it when missing
    (the project's tests skip on it, naming the reason)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise ServerNotFoundError(
        "Chromium not found (chromium): apt-get install chromium, or scripts/services"
    )


def _run_chromium(args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    with tempfile.TemporaryDirectory(prefix="tcpw-chromium-") as profile:
        argv = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        return subprocess.run(argv, capture_output=True, timeout=timeout, check=False)


def dump_dom(url: str, *, budget_ms: int = 4000, timeout: float = 60.0) -> str:
    """The page's DOM after ``budget_ms`` of (virtual) time: what its scripts rendered."""
    result = _run_chromium([f"--virtual-time-budget={budget_ms}", "--dump-dom", url], timeout)
    if result.returncode != 0 or not result.stdout:
        raise RuntimeError(f"chromium --dump-dom failed: {result.stderr.decode()[-2000:]}")
    return result.stdout.decode("utf-8", "replace")


def screenshot(
    url: str,
    path: Path,
    *,
    size: tuple[int, int] = (1280, 860),
    budget_ms: int = 6000,
    timeout: float = 60.0,
) -> Path:
    """Save a PNG of the page after ``budget_ms`` of (virtual) time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    args = [f"--window-size={size[0]},{size[1]}", f"--virtual-time-budget={budget_ms}"]
    result = _run_chromium([*args, f"--screenshot={path}", url], timeout)
    if result.returncode != 0 or not path.exists():
        raise RuntimeError(f"chromium --screenshot failed: {result.stderr.decode()[-2000:]}")
    return path


@final
class Browser:
    """A real-time headless Chromium session driven through chromedriver (WebDriver over HTTP).

    ``--dump-dom`` and ``--screenshot`` run on virtual time, in which a page that measures rates
    (requests per second) sees no real second pass; a WebDriver session runs in real time.
    """

    def __init__(self, driver: subprocess.Popen[bytes], base: str, session: str) -> None:
        self._driver, self._base, self._session = driver, base, session
        self._http = httpx.Client(base_url=f"{base}/session/{session}", timeout=60)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._http.request(method, path, json=body)
        value = response.json().get("value")
        if response.status_code != 200:
            raise RuntimeError(f"webdriver {method} {path}: {value}")
        return value

    def open(self, url: str) -> None:
        self._call("POST", "/url", {"url": url})

    def run(self, script: str, *args: object) -> Any:
        """Run JavaScript in the page (``return ...`` gives a value back)."""
        return self._call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def text(self, element_id: str) -> str:
        return str(self.run("return document.getElementById(arguments[0]).textContent", element_id))

    def quit(self) -> None:
        """End the session (Chromium exits); never raises."""
        with contextlib.suppress(httpx.HTTPError):
            httpx.delete(f"{self._base}/session/{self._session}", timeout=30)
        self._http.close()

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self._call("GET", "/screenshot")))
        return path


def chromedriver() -> str:
    for name in ("chromedriver", "chromium.chromedriver"):
        if path := shutil.which(name):
            return path
    raise ServerNotFoundError(
        "chromedriver not found (chromedriver): apt-get install chromium-driver, or "
        "scripts/services"
    )


@contextlib.contextmanager
def browser(size: tuple[int, int] = (1280, 1000)) -> Iterator[Browser]:
    """A fresh headless Chromium (own profile, no background networking) in real time."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    driver = subprocess.Popen(
        [chromedriver(), f"--port={port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: Chromium included, ended together
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with tempfile.TemporaryDirectory(prefix="tcpw-chromium-") as profile:
            args = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
            args.append(f"--window-size={size[0]},{size[1]}")
            options = {"binary": chromium(), "args": args}
            capabilities = {"alwaysMatch": {"goog:chromeOptions": options}}
            session = _new_session(base, {"capabilities": capabilities})
            session_browser = Browser(driver, base, session)
            try:
                yield session_browser
            finally:
                session_browser.quit()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGTERM)
        driver.wait(10)


def _new_session(base: str, body: dict[str, Any]) -> str:
    deadline = time.monotonic() + 20
    while True:
        try:
            response = httpx.post(f"{base}/session", json=body, timeout=60)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    value = response.json()["value"]
    if response.status_code != 200:
        raise RuntimeError(f"chromedriver could not start Chromium: {value}")
    return str(value["sessionId"])
