"""The front door's bounds against ``tcpworkers serve`` as a real process: memory and fds.

What the in-process tests (test_front_door.py) cannot see: the server's resident memory after
a huge header (issue 8: one 229 MiB header grew a server from 49 to 483 MB) and its open file
descriptors under a slowloris crowd (900 connections trickling a byte a second all stayed open).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from .cli_harness import Running, tcpworkers, worker

pytestmark = pytest.mark.slow  # subprocesses

HELLO = worker("hello.py")
MIB = 1024 * 1024


def rss(pid: int) -> int:
    """Resident memory of ``pid`` in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None
    return int(match.group(1)) * 1024


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def address(server: Running) -> tuple[str, int]:
    port = int(server.url.rsplit(":", 1)[1])
    return "127.0.0.1", port


def read_status(sock: socket.socket) -> int:
    """The status code of the response on ``sock`` (reads until the status line is in)."""
    data = b""
    sock.settimeout(10)
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


def test_a_huge_header_does_not_grow_the_server() -> None:
    with tcpworkers("serve", HELLO, "--port", "0", "--log-format", "text") as server:
        assert httpx.get(server.url, trust_env=False).status_code == 200  # warm
        pid = server.process.pid
        before = rss(pid)
        sock = socket.create_connection(address(server))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nX-Huge: ")
        sent = 0
        try:
            while sent < 64 * MIB:
                sock.sendall(b"a" * MIB)
                sent += MIB
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and stopped taking it
        try:
            status = read_status(sock)
        finally:
            sock.close()
        after = rss(pid)
        assert status == 431
        # Before the bound the server held the whole header (64 MiB, and more in copies).
        assert after - before < 16 * MIB, (before, after)
        assert httpx.get(server.url, trust_env=False).status_code == 200  # still serving


def test_slowloris_connections_are_closed_and_their_fds_freed(tmp_path: Path) -> None:
    config = tmp_path / "tcpworkers.toml"
    config.write_text("[limits]\nheader_timeout = 1\n")
    with tcpworkers(
        "serve", HELLO, "--config", str(config), "--port", "0", "--log-format", "text"
    ) as server:
        assert httpx.get(server.url, trust_env=False).status_code == 200
        pid = server.process.pid
        baseline = open_fds(pid)
        crowd = [socket.create_connection(address(server)) for _ in range(200)]
        stop = threading.Event()

        def trickle() -> None:  # one byte per connection every 0.2 s, as the attack does
            request = b"GET / HTTP/1.1\r\nHost: test\r\nX-Slow: " + b"z" * 10_000
            for i in range(len(request)):
                for sock in crowd:
                    with contextlib.suppress(OSError):  # closed by the server: expected
                        sock.send(request[i : i + 1])
                if stop.wait(0.2):
                    return

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()
        try:
            # All of them get their 408 about a second in, long before the head could be done.
            statuses = [read_status(sock) for sock in crowd]
            assert statuses == [408] * len(crowd)
            deadline = time.monotonic() + 10
            while open_fds(pid) > baseline and time.monotonic() < deadline:
                time.sleep(0.05)
            assert open_fds(pid) <= baseline
        finally:
            stop.set()
            sender.join(5)
            for sock in crowd:
                sock.close()
        assert httpx.get(server.url, trust_env=False).status_code == 200
