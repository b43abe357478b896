"""Server connections against the machine's PostgreSQL (trust) and a real PgBouncer (which
asks for SCRAM, MD5 or a cleartext password): startup, auth, TLS refusals, clear errors."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from tcpworkers.egress import EgressPolicy
from tcpworkers.errors import UpstreamAuthError, UpstreamConnectError, UpstreamServerError
from tcpworkers.pool._dsn import parse_dsn
from tcpworkers.pool._upstream import cancel_query, open_server_connection
from tcpworkers.scope import request_scope
from tcpworkers.testing import PgBouncer

from ..pgserver import shared
from ._pg import simple_query


def pg() -> str:
    """The session's shared PostgreSQL (trust; tests/pgserver.py)."""
    return shared().dsn()


async def test_trust_startup_collects_parameters_and_key() -> None:
    conn = await open_server_connection(parse_dsn(pg() + "?application_name=pool-binding-t"))
    try:
        assert conn.auth_method == "trust"
        assert conn.tls is None  # the machine's PostgreSQL has no TLS: prefer fell back
        assert conn.server_version.split(".")[0].isdigit()
        assert conn.parameters["client_encoding"] == "UTF8"
        assert conn.parameters["application_name"] == "pool-binding-t"
        assert conn.backend_pid > 0
        assert await simple_query(conn, "select 41 + 1") == [["42"]]
    finally:
        await conn.close()
    assert conn.writer.is_closing()


async def test_close_never_raises_twice() -> None:
    conn = await open_server_connection(parse_dsn(pg()))
    await conn.close()
    await conn.close()


async def test_require_on_a_server_without_tls() -> None:
    with pytest.raises(UpstreamConnectError) as info:
        await open_server_connection(parse_dsn(pg() + "?sslmode=require"))
    message = str(info.value)
    assert f"127.0.0.1:{shared().port}" in message
    assert "'postgres'" in message
    assert "does not support TLS" in message
    assert "sslmode=require" in message


async def test_unknown_database_carries_sqlstate() -> None:
    with pytest.raises(UpstreamServerError) as info:
        await open_server_connection(parse_dsn(shared().dsn("nope_pb")))
    assert info.value.sqlstate == "3D000"
    assert "'nope_pb'" in str(info.value)


async def test_refused_names_the_address() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UpstreamConnectError, match=rf"127\.0\.0\.1:{port} .*could not connect"):
        await open_server_connection(parse_dsn(f"postgresql://u@127.0.0.1:{port}/d"))


async def test_silent_server_times_out() -> None:
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(UpstreamConnectError, match="timed out after 2 s"):
            await open_server_connection(
                parse_dsn(f"postgresql://u@127.0.0.1:{port}/d?connect_timeout=1&sslmode=disable")
            )
    finally:
        server.close()
        await server.wait_closed()


async def test_not_postgres() -> None:
    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(UpstreamConnectError, match="is this a PostgreSQL server"):
            await open_server_connection(parse_dsn(f"postgresql://u@127.0.0.1:{port}/d"))
    finally:
        server.close()
        await server.wait_closed()


async def test_opened_outside_the_request_scope() -> None:
    # A request whose policy allows nothing local: the pool's server connection is the
    # operator's configuration, so it opens anyway and the request does not account for it.
    policy = EgressPolicy.from_config({"preset": "serve"})
    async with request_scope(policy, max_sockets=1, label="t") as scope:
        conn = await open_server_connection(parse_dsn(pg()))
        await conn.close()
        assert scope.stats.sockets_opened == 0


@pytest.fixture
async def bouncer() -> AsyncIterator[PgBouncer]:
    # PgBouncer checks its clients' passwords itself (SCRAM here) and logs in to the
    # machine's PostgreSQL (trust) for them.
    async with PgBouncer(
        shared().host, shared().port, users={"postgres": "pb-secret"}, auth_type="scram-sha-256"
    ) as b:
        yield b


async def test_scram_through_pgbouncer(bouncer: PgBouncer) -> None:
    params = parse_dsn(bouncer.dsn("postgres", "test"))
    conn = await open_server_connection(params)
    try:
        assert conn.auth_method == "scram-sha-256"
        assert await simple_query(conn, "select 1") == [["1"]]
    finally:
        await conn.close()


async def test_wrong_password_through_pgbouncer(bouncer: PgBouncer) -> None:
    with pytest.raises(UpstreamAuthError) as info:
        await open_server_connection(parse_dsn(bouncer.dsn("postgres", "test", password="bad")))
    assert info.value.sqlstate in ("28P01", "08P01")  # PgBouncer says 08P01 for SCRAM
    assert "bad" not in str(info.value)
    assert "'postgres'" in str(info.value)


async def test_missing_password_says_where_to_put_it(bouncer: PgBouncer) -> None:
    dsn = f"postgresql://postgres@{bouncer.host}:{bouncer.port}/test"
    with pytest.raises(UpstreamAuthError, match="url has none"):
        await open_server_connection(parse_dsn(dsn))


@pytest.mark.parametrize(("auth_type", "method"), [("md5", "md5"), ("plain", "password")])
async def test_md5_and_cleartext(auth_type: str, method: str) -> None:
    async with PgBouncer(
        shared().host, shared().port, users={"postgres": "pb-secret"}, auth_type=auth_type
    ) as b:
        conn = await open_server_connection(parse_dsn(b.dsn("postgres", "test")))
        try:
            assert conn.auth_method == method
            assert await simple_query(conn, "select 2") == [["2"]]
        finally:
            await conn.close()


async def test_cancel_query_stops_a_running_statement() -> None:
    params = parse_dsn(pg())
    conn = await open_server_connection(params)
    try:
        running = asyncio.ensure_future(simple_query(conn, "select pg_sleep(30)"))
        await asyncio.sleep(0.3)
        await cancel_query(params, conn.backend_pid, conn.backend_secret)
        with pytest.raises(AssertionError, match="57014"):  # query_canceled
            await asyncio.wait_for(running, 10)
    finally:
        await conn.close()
