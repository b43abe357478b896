"""The test kit's server launchers themselves: they start, serve and leave nothing behind."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

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
