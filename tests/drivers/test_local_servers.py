"""The test kit's server launchers themselves: they start, serve and leave nothing behind."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tcpworkers.localpg._proc import alive
from tcpworkers.testing import LocalMariaDB, LocalRedis, TestCA


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_local_redis_serves_plain_tls_and_unix_then_leaves_nothing() -> None:
    server = LocalRedis(ca=TestCA())
    with server:
        assert _listening(server.port)
        assert _listening(server.tls_port)
        assert Path(server.unix_socket).exists()
        assert server.tls_url == f"rediss://localhost:{server.tls_port}/0"
        directory = Path(server.unix_socket).parent
        with pytest.raises(RuntimeError, match="already started"):
            server.start()
    assert not directory.exists()
    assert not _listening(server.port)
    server.stop()  # idempotent


def test_local_redis_without_a_ca_has_no_tls_url() -> None:
    with LocalRedis() as server, pytest.raises(RuntimeError, match="pass ca=TestCA"):
        _ = server.tls_url


def test_local_mariadb_data_is_gone_after_stop() -> None:
    with LocalMariaDB() as db:
        assert db.execute("SELECT 6 * 7").strip() == "42"
        assert db.version.split("-")[0].count(".") == 2
        directory = Path(db.unix_socket).parent
        port = db.port
    assert not directory.exists()
    assert not _listening(port)
    with pytest.raises(RuntimeError, match="start the LocalMariaDB first"):
        db.execute("SELECT 1")


# A parent that starts a server and prints its pid, then is SIGKILLed: no atexit, no finally,
# no fixture tear-down runs; only the kernel's parent-death signal can stop the server.
_ORPHAN = """
import sys
from tcpworkers.errors import ServerNotFoundError
from tcpworkers.testing import LocalMariaDB, LocalRedis
try:
    server = {launcher}().__enter__()
except ServerNotFoundError as exc:
    print("missing", exc, flush=True)
    sys.exit(3)
print(server.pid, server.port, server.unix_socket, flush=True)
sys.stdin.read()  # until killed
"""


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["LocalRedis", "LocalMariaDB"])
def test_the_server_stops_when_its_parent_is_killed(launcher: str) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN.format(launcher=launcher)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    directory, pid = None, 0
    try:
        line = parent.stdout.readline()
        if line.startswith("missing "):
            pytest.skip(line.removeprefix("missing ").strip())
        pid_text, port_text, unix_socket = line.split()
        pid, port, directory = int(pid_text), int(port_text), Path(unix_socket).parent
        assert alive(pid)
        assert _listening(port)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 15
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid), f"{launcher}'s server {pid} on port {port} outlived its parent"
        assert not _listening(port)
    finally:
        parent.kill()
        parent.wait()
        if pid and alive(pid):  # the guard failed: do not leak the server too
            os.kill(pid, signal.SIGKILL)
        if directory is not None:  # the killed parent could not delete it
            shutil.rmtree(directory, ignore_errors=True)
