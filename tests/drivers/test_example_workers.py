"""examples/mysql_worker.py served over real HTTP (``serve_worker``): asyncmy inside a worker,
against the session's MariaDB, plaintext and TLS (verify-full)."""

from __future__ import annotations

from pathlib import Path

from tcpworkers.egress import EgressPolicy
from tcpworkers.runtime import RuntimeSettings
from tcpworkers.testing import serve_worker

from ..runtime.worker_helpers import Recorder
from .conftest import MySQLServer

MYSQL_WORKER = str(Path(__file__).resolve().parents[2] / "examples" / "mysql_worker.py")
NO_LOOPBACK = EgressPolicy.from_config({"preset": "dev", "deny": ["loopback"]})


async def test_mysql_worker_in_plaintext(mysql_server: MySQLServer) -> None:
    recorder = Recorder()
    password = mysql_server.password("tcpw_native")
    url = f"mysql://tcpw_native:{password}@127.0.0.1:{mysql_server.port}/test"
    settings = RuntimeSettings(vars={"MYSQL_URL": url})
    async with serve_worker(MYSQL_WORKER, settings, observers=[recorder]) as server:
        squares = await server.client.get("/squares", params={"n": 4})
        assert squares.status_code == 200
        assert squares.json() == [{"n": i, "square": i * i} for i in range(1, 5)]
        root = (await server.client.get("/")).json()
        assert "MariaDB" in root["version"]
        assert root["tls"] == ""
        assert (await server.client.get("/squares?n=0")).status_code == 400
        records = await recorder.wait_for(3)
    served = [r for r in records if r.status == 200]
    assert len(served) == 2
    for record in served:
        assert record.stats.sockets_opened == 1
        assert record.stats.closed_at_end == 0  # closed in the handler's finally
        assert record.stats.bytes_in > 0


async def test_mysql_worker_over_tls(mysql_server: MySQLServer) -> None:
    recorder = Recorder()
    url = f"mysql://tcpw_tls:{mysql_server.password('tcpw_tls')}@localhost:{mysql_server.port}/test"
    settings = RuntimeSettings(vars={"MYSQL_URL": url, "MYSQL_CA_FILE": mysql_server.db.ca_file})
    async with serve_worker(MYSQL_WORKER, settings, observers=[recorder]) as server:
        root = (await server.client.get("/")).json()
        records = await recorder.wait_for(1)
    assert root["user"] == "tcpw_tls@%"
    assert root["tls"].startswith("TLSv1.")
    (record,) = records
    assert record.stats.sockets_opened == 1  # the TLS upgrade is the same connection


async def test_mysql_worker_is_subject_to_the_egress_policy() -> None:
    settings = RuntimeSettings(
        vars={"MYSQL_URL": "mysql://root@127.0.0.1:3306/test"}, policy=NO_LOOPBACK
    )
    async with serve_worker(MYSQL_WORKER, settings) as server:
        response = await server.client.get("/")
    assert response.status_code == 500
    assert "EgressDeniedError" in response.text
