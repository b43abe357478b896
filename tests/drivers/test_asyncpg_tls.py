"""asyncpg over TLS through the gate, against a PostgreSQL cluster that requires TLS and a SCRAM
password (the ``tls_postgres`` fixture: ``tcpworkers.localpg`` with a trustme certificate).

PostgreSQL negotiates TLS in-band: asyncpg sends an SSLRequest on the plain connection and, on
``S``, upgrades it with ``loop.start_tls`` (the gate's STARTTLS path): the same connection, the
same slot. A query cancellation over TLS does the same on its second connection.
"""

from __future__ import annotations

import asyncio
import ssl
import time

import asyncpg
import pytest

from tcpworkers.egress import EgressPolicy
from tcpworkers.errors import EgressDeniedError
from tcpworkers.scope import request_scope
from tcpworkers.testing import untrusted_ca

from ..pgserver import PgServer

NO_LOOPBACK = EgressPolicy.from_config({"preset": "dev", "deny": ["loopback"]})
ON_TLS = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_verify_full_with_a_custom_ca(tls_postgres: PgServer, host: str) -> None:
    dsn = tls_postgres.dsn(sslmode="verify-full").replace(f"@{tls_postgres.host}:", f"@{host}:")
    async with request_scope(max_sockets=1, slot_timeout=2) as scope:
        conn = await asyncpg.connect(dsn)
        assert await conn.fetchval(ON_TLS) is True
        (resource,) = scope.open_resources  # upgraded in place: one connection, one slot
        assert f":{tls_postgres.port}" in resource.describe()
    assert scope.stats.sockets_opened == 1
    assert scope.stats.closed_at_end == 1
    assert conn.is_closed()


async def test_verify_full_with_an_ssl_context(tls_postgres: PgServer) -> None:
    context = ssl.create_default_context(cafile=str(tls_postgres.ca_path))
    async with request_scope() as scope:
        conn = await asyncpg.connect(
            host="localhost",
            port=tls_postgres.port,
            user=tls_postgres.user,
            password=tls_postgres.password,
            database=tls_postgres.database,
            ssl=context,
        )
        assert await conn.fetchval(ON_TLS) is True
        await conn.close()
        assert scope.open_resources == ()
    assert scope.stats.closed_at_end == 0


async def test_sslmode_require(tls_postgres: PgServer) -> None:
    """Encrypted, certificate not checked (libpq's ``require`` without a root certificate)."""
    dsn = tls_postgres.dsn().rstrip("/") + "?sslmode=require"
    async with request_scope() as scope:
        conn = await asyncpg.connect(dsn)
        assert await conn.fetchval(ON_TLS) is True
    assert scope.stats.sockets_opened == 1
    assert scope.stats.closed_at_end == 1


async def test_verify_full_with_an_unknown_ca_fails_and_leaks_nothing(
    tls_postgres: PgServer,
) -> None:
    context = untrusted_ca().client_context()
    async with request_scope() as scope:
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncpg.connect(
                host="localhost",
                port=tls_postgres.port,
                user=tls_postgres.user,
                password=tls_postgres.password,
                database=tls_postgres.database,
                ssl=context,
            )
        assert scope.open_resources == ()
    assert scope.stats.closed_at_end == 0


async def test_cancel_over_tls_at_the_socket_limit(tls_postgres: PgServer) -> None:
    async with request_scope(max_sockets=1, slot_timeout=5) as scope:
        conn = await asyncpg.connect(tls_postgres.dsn(sslmode="verify-full"))
        started = time.perf_counter()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(conn.fetchval("SELECT pg_sleep(30)"), 0.2)
        assert await conn.fetchval("SELECT 42") == 42
        assert time.perf_counter() - started < 2
    assert scope.stats.sockets_opened == 2
    assert scope.stats.closed_at_end == 1


async def test_tls_to_a_denied_host(tls_postgres: PgServer) -> None:
    async with request_scope(NO_LOOPBACK) as scope:
        with pytest.raises(EgressDeniedError):
            await asyncpg.connect(tls_postgres.dsn(sslmode="verify-full"))
    assert scope.stats.sockets_denied == 1
    assert scope.open_resources == ()
