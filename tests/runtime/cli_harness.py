"""Run ``tcpworkers`` as a real subprocess and talk to it: the CLI and serving tests' harness.

Every server binds 127.0.0.1 with ``--port 0`` and the test reads the real URL from the startup
line. The process runs in its own session (process group), so ``--workers`` and reloader
children are killed with it when a test ends, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

WORKERS = Path(__file__).parent / "cli_workers"
# A startup line, text or JSON: "tcpworkers dev: serving hello.py on http://127.0.0.1:PORT (".
URL_RE = re.compile(r"tcpworkers (?:dev|serve): serving \S+ on (http://127\.0\.0\.1:(\d+)) \(")
STARTUP_TIMEOUT = 15.0


def worker(name: str) -> str:
    return str(WORKERS / name)


class Running:
    """A ``tcpworkers`` process and everything it printed (stdout and stderr, merged)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = ""

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))
            self._new.put(line.rstrip("\n"))
        self._new.put(None)

    @property
    def output(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float = 10.0) -> re.Match[str]:
        """The first line (already printed or to come) that matches ``pattern``."""
        regex = re.compile(pattern)
        with self._lock:
            seen = list(self.lines)
        for line in seen:
            match = regex.search(line)
            if match:
                return match
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                line = self._new.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                break
            match = regex.search(line)
            if match:
                return match
        raise AssertionError(f"no line matching {regex.pattern!r}; output:\n{self.output}")

    def wait_ready(self) -> str:
        self.url = self.wait_for(URL_RE, STARTUP_TIMEOUT).group(1)
        return self.url

    def wait(self, timeout: float = 15.0) -> int:
        """Wait for the process to exit; its exit status."""
        status = self.process.wait(timeout)
        self._reader.join(5)
        return status

    def kill_all(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self._reader.join(5)


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tcpworkers.cli", *args]


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # No .pyc files next to test workers (and none stale after an edit in the reload test).
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    for name in ("TCPWORKERS_MODE", "TCPWORKERS_WORKER", "TCPWORKERS_CONFIG"):
        env.pop(name, None)
    env.update(extra or {})
    return env


@contextlib.contextmanager
def tcpworkers(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    ready: bool = True,
) -> Iterator[Running]:
    """Start ``tcpworkers ARGS``; wait for its URL unless ``ready=False``; kill it at the end."""
    process = subprocess.Popen(
        command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment(env),
        cwd=cwd,
        start_new_session=True,
    )
    running = Running(process)
    try:
        if ready:
            running.wait_ready()
        yield running
    finally:
        running.kill_all()


def run(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    """Run ``tcpworkers ARGS`` to completion (check, errors, --help)."""
    return subprocess.run(
        command(*args),
        capture_output=True,
        text=True,
        env=environment(env),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
