"""docs/deployment.md's rolling restart: SIGHUP to `serve --workers N` replaces the server
processes one at a time, each new one serving before the old one stops, so requests made all
along succeed. A real subprocess on loopback."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from tests.runtime.cli_harness import tcpworkers, worker

pytestmark = pytest.mark.slow


def _pids(url: str, tries: int = 40) -> set[str]:
    # Connections are spread by the kernel; fresh connections reach both processes.
    return {httpx.get(url + "/pid", timeout=10).text for _ in range(tries)}


def test_sighup_replaces_every_process_without_failing_a_request() -> None:
    with tcpworkers("serve", worker("hello.py"), "--port", "0", "--workers", "2") as server:
        before = _pids(server.url)
        assert len(before) == 2
        failures: list[str] = []
        done = threading.Event()

        def load() -> None:
            while not done.is_set():
                try:
                    response = httpx.get(server.url + "/", timeout=10)
                    if response.status_code != 200:
                        failures.append(str(response.status_code))
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

        thread = threading.Thread(target=load)
        thread.start()
        try:
            server.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 60
            after = _pids(server.url)
            while after & before and time.monotonic() < deadline:
                time.sleep(0.2)
                after = _pids(server.url)
        finally:
            done.set()
            thread.join(15)
        assert not after & before, (before, after)
        assert len(after) == 2
        assert failures == []
