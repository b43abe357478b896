"""psycopg 3 (async) without a binding: refused inside a request, with the fix in the message.

libpq opens and connects its own socket; the gated loop sees it only when psycopg waits on it
(``loop.add_reader``/``add_writer``) and refuses that inside a request scope, before libpq has
sent anything (see ``tcpworkers.drivers._unmanaged``). Outside a scope psycopg works as usual,
and a socket connected to an endpoint the runtime registered (the pool binding's listener) is
allowed. Against the session's shared PostgreSQL (tests/pgserver.py: TCP and its Unix socket).
"""

from __future__ import annotations

import asyncio
import re
import socket
import uuid

import psycopg
import pytest

from tcpworkers.egress._local import register_local_endpoint, unregister_local_endpoint
from tcpworkers.errors import UnmanagedSocketError
from tcpworkers.scope import request_scope
from tcpworkers.scope._trust import trusted_connections

from ..pgserver import shared


def dsn() -> str:
    server = shared()
    return (
        f"host={server.host} port={server.port} user={server.user} dbname={server.database} "
        "sslmode=disable"
    )


def socket_dir() -> str:
    """The shared server's Unix socket directory (the machine's, or the local cluster's)."""
    server = shared()
    if server.socket_dir is None:
        pytest.fail(f"no Unix socket for PostgreSQL on port {server.port} (scripts/services)")
    return str(server.socket_dir)


def unix_dsn() -> str:
    return f"host={socket_dir()} port={shared().port} user=postgres dbname=test"


async def backends(application_name: str) -> int:
    """Server connections carrying ``application_name`` (asked outside any scope)."""
    with trusted_connections():
        async with await psycopg.AsyncConnection.connect(dsn()) as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (application_name,),
            )
            row = await cur.fetchone()
    assert row is not None
    count: int = row[0]
    return count


async def test_psycopg_outside_a_request_works_as_usual() -> None:
    async with await psycopg.AsyncConnection.connect(dsn()) as conn:
        cur = await conn.execute("SELECT 40 + 2")
        assert await cur.fetchone() == (42,)


@pytest.mark.parametrize("spelling", ["keywords", "url"])
async def test_psycopg_inside_a_request_is_refused_before_it_logs_in(spelling: str) -> None:
    port = shared().port
    name = f"tcpw-{uuid.uuid4().hex[:12]}"
    url = f"postgresql://postgres@localhost:{port}/test?sslmode=prefer"
    async with request_scope(label="GET /report") as scope:
        with pytest.raises(UnmanagedSocketError) as info:
            await psycopg.AsyncConnection.connect(
                dsn() if spelling == "keywords" else url, application_name=name
            )
        assert scope.stats.sockets_denied == 1
    message = str(info.value)
    assert "GET /report" in message
    assert f":{port}" in message
    assert "env.DB.connection_string" in message
    assert "asyncpg" in message
    assert scope.open_resources == ()
    assert scope.stats.sockets_opened == 0
    # libpq had not sent its start-up packet: the server never had a session for it.
    assert await backends(name) == 0


async def test_psycopg_over_a_unix_socket_is_refused_too() -> None:
    async with request_scope():
        with pytest.raises(UnmanagedSocketError, match=f"unix:{re.escape(socket_dir())}"):
            await psycopg.AsyncConnection.connect(unix_dsn())


async def test_psycopg_connection_made_outside_cannot_be_used_inside() -> None:
    conn = await psycopg.AsyncConnection.connect(dsn())
    try:
        async with request_scope():
            with pytest.raises(UnmanagedSocketError):
                # A query that has to wait for the server registers the socket with the loop.
                await conn.execute("SELECT pg_sleep(0.05)")
    finally:
        await conn.close()


async def test_a_registered_local_endpoint_is_allowed() -> None:
    """What the pool binding's Unix socket is: psycopg may connect to it inside a request."""
    pg_socket = f"{socket_dir()}/.s.PGSQL.{shared().port}"
    register_local_endpoint(pg_socket)
    try:
        async with (
            request_scope() as scope,
            await psycopg.AsyncConnection.connect(unix_dsn()) as conn,
        ):
            await conn.execute("SELECT pg_sleep(0.01)")
            cur = await conn.execute("SELECT 7")
            assert await cur.fetchone() == (7,)
        assert scope.stats.sockets_denied == 0
    finally:
        unregister_local_endpoint(pg_socket)
    async with request_scope():
        with pytest.raises(UnmanagedSocketError):
            await psycopg.AsyncConnection.connect(unix_dsn())


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
