"""psycopg 3 (async) without a binding: refused inside a request, with the fix in the message.

libpq opens and connects its own socket; the gated loop sees it only when psycopg waits on it
(``loop.add_reader``/``add_writer``) and refuses that inside a request scope, before libpq has
sent anything (see ``tcpworkers.drivers._unmanaged``). Outside a scope psycopg works as usual,
and a socket connected to an endpoint the runtime registered (the pool binding's listener) is
allowed. Against the machine's PostgreSQL (127.0.0.1:5432 and its Unix socket).
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid

import psycopg
import pytest

from tcpworkers.egress._local import register_local_endpoint, unregister_local_endpoint
from tcpworkers.errors import UnmanagedSocketError
from tcpworkers.scope import request_scope
from tcpworkers.scope._trust import trusted_connections

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable"
PG_SOCKET = "/var/run/postgresql/.s.PGSQL.5432"


async def backends(application_name: str) -> int:
    """Server connections carrying ``application_name`` (asked outside any scope)."""
    with trusted_connections():
        async with await psycopg.AsyncConnection.connect(DSN) as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (application_name,),
            )
            row = await cur.fetchone()
    assert row is not None
    count: int = row[0]
    return count


async def test_psycopg_outside_a_request_works_as_usual() -> None:
    async with await psycopg.AsyncConnection.connect(DSN) as conn:
        cur = await conn.execute("SELECT 40 + 2")
        assert await cur.fetchone() == (42,)


@pytest.mark.parametrize("dsn", [DSN, "postgresql://postgres@localhost:5432/test?sslmode=prefer"])
async def test_psycopg_inside_a_request_is_refused_before_it_logs_in(dsn: str) -> None:
    name = f"tcpw-{uuid.uuid4().hex[:12]}"
    async with request_scope(label="GET /report") as scope:
        with pytest.raises(UnmanagedSocketError) as info:
            await psycopg.AsyncConnection.connect(dsn, application_name=name)
        assert scope.stats.sockets_denied == 1
    message = str(info.value)
    assert "GET /report" in message
    assert ":5432" in message
    assert "env.DB.connection_string" in message
    assert "asyncpg" in message
    assert scope.open_resources == ()
    assert scope.stats.sockets_opened == 0
    # libpq had not sent its start-up packet: the server never had a session for it.
    assert await backends(name) == 0


async def test_psycopg_over_a_unix_socket_is_refused_too() -> None:
    if not os.path.exists(PG_SOCKET):  # noqa: ASYNC240 - a one-off check before the test
        pytest.fail(f"PostgreSQL's Unix socket {PG_SOCKET} is missing (scripts/services)")
    async with request_scope():
        with pytest.raises(UnmanagedSocketError, match=r"unix:/var/run/postgresql"):
            await psycopg.AsyncConnection.connect(
                "host=/var/run/postgresql user=postgres dbname=test"
            )


async def test_psycopg_connection_made_outside_cannot_be_used_inside() -> None:
    conn = await psycopg.AsyncConnection.connect(DSN)
    try:
        async with request_scope():
            with pytest.raises(UnmanagedSocketError):
                # A query that has to wait for the server registers the socket with the loop.
                await conn.execute("SELECT pg_sleep(0.05)")
    finally:
        await conn.close()


async def test_a_registered_local_endpoint_is_allowed() -> None:
    """What the pool binding's Unix socket is: psycopg may connect to it inside a request."""
    if not os.path.exists(PG_SOCKET):  # noqa: ASYNC240 - a one-off check before the test
        pytest.fail(f"PostgreSQL's Unix socket {PG_SOCKET} is missing (scripts/services)")
    unix_dsn = "host=/var/run/postgresql user=postgres dbname=test"
    register_local_endpoint(PG_SOCKET)
    try:
        async with (
            request_scope() as scope,
            await psycopg.AsyncConnection.connect(unix_dsn) as conn,
        ):
            await conn.execute("SELECT pg_sleep(0.01)")
            cur = await conn.execute("SELECT 7")
            assert await cur.fetchone() == (7,)
        assert scope.stats.sockets_denied == 0
    finally:
        unregister_local_endpoint(PG_SOCKET)
    async with request_scope():
        with pytest.raises(UnmanagedSocketError):
            await psycopg.AsyncConnection.connect(unix_dsn)


async def test_in_process_and_non_stream_sockets_are_not_refused() -> None:
    loop = asyncio.get_running_loop()
    left, right = socket.socketpair()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.connect(("127.0.0.1", 9))
    readable = asyncio.Event()
    try:
        async with request_scope():
            loop.add_reader(left.fileno(), readable.set)
            loop.add_writer(udp.fileno(), lambda: None)
            right.send(b"x")
            async with asyncio.timeout(5):
                await readable.wait()
            loop.remove_reader(left.fileno())
            loop.remove_writer(udp.fileno())
    finally:
        left.close()
        right.close()
        udp.close()
