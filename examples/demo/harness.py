"""Run the demo as a user does (``launch.py`` in a child process) and look at it with Chromium.

Used by the demo's tests and by ``scripts/demo-screenshot``. Chromium is Debian's package
(``apt-get install chromium``; ``scripts/services`` installs it), run headless with a fresh
profile and everything that would phone home switched off.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import final

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
) -> Iterator[RunningDemo]:
    """Start ``launch.py`` with ``args``; yield once it printed where to open it; stop it with
    ``stop_signal`` (Ctrl-C by default) and wait for it on exit. Raises ``RuntimeError`` with its
    output if it never got there."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "launch.py"), *args],
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
    """The Chromium binary; raises ``RuntimeError`` saying how to install it when missing."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise RuntimeError(
        "Chromium is not installed: apt-get install chromium (scripts/services does it)"
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
