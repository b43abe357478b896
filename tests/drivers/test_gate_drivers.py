"""Existing drivers through the gate: real PostgreSQL (asyncpg), real Redis (redis.asyncio) and a
local STARTTLS SMTP server (aiosmtplib against aiosmtpd), on the gated stdlib loop and uvloop.

Uses the session's shared PostgreSQL (tests/pgserver.py: trust auth, database "test") and its own
Redis (the ``redis_plain`` fixture).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import asyncpg
import pytest
import redis.asyncio as aioredis
from aiosmtpd.smtp import SMTP as SMTPServerProtocol
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tcpworkers.egress import EgressPolicy
from tcpworkers.errors import EgressDeniedError, SocketLimitError
from tcpworkers.scope import request_scope
from tcpworkers.scope._trust import trusted_connections
from tcpworkers.testing import LocalRedis, TestCA

from ..pgserver import pg, shared
from ..waiting import eventually

# redis-py retries connection errors with backoff by default; a denial is final.
NO_RETRY = Retry(NoBackoff(), 0)
NO_LOOPBACK = EgressPolicy.from_config({"preset": "dev", "deny": ["loopback"]})


async def pg_backends(application_name: str) -> int:
    """How many server connections carry ``application_name`` (seen from outside any scope)."""
    with trusted_connections():
        conn = await asyncpg.connect(**pg())
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", application_name
        )
        return count
    finally:
        await conn.close()


async def wait_for_backends(application_name: str, expected: int) -> None:
    async with asyncio.timeout(5):
        # The server is another process: polling is the only way to watch it.
        while await pg_backends(application_name) != expected:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_asyncpg_inside_a_scope_is_counted_and_closed_at_the_end() -> None:
    name = f"tcpw-{uuid.uuid4().hex[:12]}"
    async with request_scope() as scope:
        conn = await asyncpg.connect(**pg(), server_settings={"application_name": name})
        assert await conn.fetchval("SELECT 40 + 2") == 42
        assert len(scope.open_resources) == 1
        assert f"127.0.0.1:{shared().port}" in scope.open_resources[0].describe()
        assert await pg_backends(name) == 1
    assert scope.stats.sockets_opened == 1
    assert scope.stats.closed_at_end == 1
    assert scope.stats.bytes_in > 0
    assert conn.is_closed()
    await wait_for_backends(name, 0)  # the server saw the connection go


async def test_asyncpg_closed_by_the_handler_frees_its_slot() -> None:
    async with request_scope(max_sockets=1) as scope:
        for _ in range(3):  # would wait forever if the slot were not freed
            conn = await asyncpg.connect(**pg())
            await conn.fetchval("SELECT 1")
            await conn.close()
            assert scope.open_resources == ()
    assert scope.stats.sockets_opened == 3
    assert scope.stats.closed_at_end == 0


async def test_asyncpg_to_a_denied_host_raises_egress_denied() -> None:
    async with request_scope(NO_LOOPBACK) as scope:
        with pytest.raises(EgressDeniedError, match="loopback"):
            await asyncpg.connect(**pg())
    assert scope.stats.sockets_denied >= 1
    assert scope.stats.sockets_opened >= 1  # the slot was taken, then given back
    assert scope.open_resources == ()


async def test_asyncpg_over_a_unix_socket_follows_the_loopback_rule() -> None:
    server = shared()
    assert server.socket_dir is not None, "the shared PostgreSQL has no Unix socket here"
    unix = {"host": str(server.socket_dir), "port": server.port}
    async with request_scope() as scope:
        conn = await asyncpg.connect(**unix, user="postgres", database="test")
        assert await conn.fetchval("SELECT 1") == 1
        assert "unix:" in scope.open_resources[0].describe()
    assert conn.is_closed()
    async with request_scope(EgressPolicy.serve()):
        with pytest.raises(EgressDeniedError, match="Unix sockets count as loopback"):
            await asyncpg.connect(**unix, user="postgres", database="test")


async def test_driver_connections_share_the_per_request_limit() -> None:
    async with request_scope(max_sockets=1, slot_timeout=0.2) as scope:
        first = await asyncpg.connect(**pg())
        with pytest.raises(SocketLimitError, match="the limit is 1"):
            await asyncpg.connect(**pg())
        await first.close()
        second = await asyncpg.connect(**pg())
        assert await second.fetchval("SELECT 2") == 2
    assert scope.stats.peak_open == 1


async def test_runtime_internal_connections_are_not_gated() -> None:
    async with request_scope(EgressPolicy.none(), max_sockets=1) as scope:
        with trusted_connections():
            conn = await asyncpg.connect(**pg())
        assert await conn.fetchval("SELECT 3") == 3
        assert scope.open_resources == ()
    assert not conn.is_closed()  # not the request's to close
    await conn.close()


async def test_redis_inside_a_scope(redis_plain: LocalRedis) -> None:
    name = f"tcpw-{uuid.uuid4().hex[:12]}"
    async with request_scope() as scope:
        client = aioredis.Redis(host="127.0.0.1", port=redis_plain.port, client_name=name)
        assert await client.ping()
        await client.set(f"{name}:k", "v", ex=10)
        assert await client.get(f"{name}:k") == b"v"
        assert len(scope.open_resources) == 1
    assert scope.stats.closed_at_end == 1
    observer = aioredis.Redis(host="127.0.0.1", port=redis_plain.port)
    try:
        async with asyncio.timeout(5):
            while any(c.get("name") == name for c in await observer.client_list()):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    finally:
        await observer.aclose()
    await client.aclose()


async def test_redis_to_a_denied_host_raises(redis_plain: LocalRedis) -> None:
    async with request_scope(NO_LOOPBACK):
        client = aioredis.Redis(host="localhost", port=redis_plain.port, retry=NO_RETRY)
        with pytest.raises(Exception, match="denied by the egress policy") as info:
            await client.ping()
        # redis wraps OSError in its own ConnectionError; ours is the cause.
        chain = info.value.__cause__ or info.value.__context__
        assert isinstance(chain, EgressDeniedError)
        await client.aclose()


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


@pytest.fixture
async def smtp_server(ca: TestCA) -> AsyncIterator[tuple[int, _Inbox]]:
    inbox = _Inbox()
    tls = ca.server_context(("127.0.0.1", "localhost"))
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTPServerProtocol(inbox, tls_context=tls, require_starttls=True),
        "127.0.0.1",
        0,
    )
    try:
        yield server.sockets[0].getsockname()[1], inbox
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture(scope="session")
def ca() -> TestCA:
    return TestCA()


def message() -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = "worker@example.test"
    mail["To"] = "ops@example.test"
    mail["Subject"] = "through the gate"
    mail.set_content("sent with STARTTLS from inside a request scope")
    return mail


async def smtp_connect(port: int, ca: TestCA) -> aiosmtplib.SMTP:
    """Connect to the local server and upgrade with STARTTLS (loop.create_connection, then
    loop.start_tls)."""
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=port, start_tls=True, tls_context=ca.client_context()
    )
    await client.connect()
    return client


async def test_aiosmtplib_starttls_inside_a_scope(
    smtp_server: tuple[int, _Inbox], ca: TestCA
) -> None:
    port, inbox = smtp_server
    async with request_scope() as scope:
        client = await smtp_connect(port, ca)
        assert client.is_connected
        # loop.start_tls swapped the protocol; the gate still tracks the connection.
        assert len(scope.open_resources) == 1
        await client.send_message(message())
        await client.quit()
        assert scope.open_resources == ()
    assert len(inbox.messages) == 1
    assert scope.stats.sockets_opened == 1
    assert scope.stats.bytes_in > 0


async def test_aiosmtplib_left_connected_is_closed_at_scope_end(
    smtp_server: tuple[int, _Inbox], ca: TestCA
) -> None:
    port, _ = smtp_server
    async with request_scope() as scope:
        client = await smtp_connect(port, ca)
    assert scope.stats.closed_at_end == 1
    await eventually(lambda: not client.is_connected, what="aiosmtplib saw the close")


async def test_aiosmtplib_to_a_denied_host(smtp_server: tuple[int, _Inbox]) -> None:
    port, _ = smtp_server
    async with request_scope(NO_LOOPBACK):
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        with pytest.raises(aiosmtplib.SMTPConnectError, match="denied by the egress policy"):
            await client.connect()


async def test_driver_connections_can_be_forbidden_in_a_context(
    redis_plain: LocalRedis,
) -> None:
    from tcpworkers.errors import ConnectNotAllowedError
    from tcpworkers.scope import forbid_connections

    with forbid_connections("not during import"):
        with pytest.raises(ConnectNotAllowedError, match="not during import"):
            await asyncpg.connect(**pg())
        client = aioredis.Redis(host="127.0.0.1", port=redis_plain.port, retry=NO_RETRY)
        with pytest.raises(Exception, match="not during import") as info:
            await client.ping()  # redis wraps OSError-free errors in its ConnectionError
        assert isinstance(info.value.__cause__ or info.value.__context__, ConnectNotAllowedError)
        await client.aclose()


async def test_connect_on_the_gated_loop_is_gated_once() -> None:
    """connect() decides and counts itself; the gated loop must not count it again."""
    from tcpworkers import connect
    from tcpworkers.testing import EchoServer

    async with EchoServer() as server, request_scope(slot_timeout=1) as scope:
        sockets = [connect(server.address) for _ in range(6)]  # exactly the limit
        for sock in sockets:
            await sock.writable.write(b"12345678")
            assert await sock.readable.readexactly(8) == b"12345678"
        assert len(scope.open_resources) == 6
        for sock in sockets:
            await sock.close()
    assert scope.stats.sockets_opened == 6
    assert scope.stats.bytes_in == 6 * 8
    assert scope.stats.bytes_out == 6 * 8
