"""redis.asyncio over TLS (``rediss://``) and a Unix socket through the gate, against a
redis-server the session starts with ``--tls-port`` and a trustme certificate
(``tcpworkers.testing.LocalRedis``).

redis-py opens TLS connections with ``asyncio.open_connection(ssl=...)``: the gate dials a
permitted address and the base loop runs the handshake on it.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tcpworkers.egress import EgressPolicy
from tcpworkers.errors import EgressDeniedError
from tcpworkers.scope import request_scope
from tcpworkers.scope._trust import trusted_connections
from tcpworkers.testing import LocalRedis, untrusted_ca

NO_RETRY = Retry(NoBackoff(), 0)
NO_LOOPBACK = EgressPolicy.from_config({"preset": "dev", "deny": ["loopback"]})


async def connected_names(server: LocalRedis) -> set[str]:
    """Client names the server has connections for (asked over its plaintext port, outside any
    request scope)."""
    observer = aioredis.Redis(host=server.host, port=server.port)
    try:
        with trusted_connections():
            return {c.get("name", "") for c in await observer.client_list()}
    finally:
        await observer.aclose()


async def wait_until_gone(server: LocalRedis, name: str) -> None:
    async with asyncio.timeout(5):
        # The server is another process: polling is the only way to watch it.
        while name in await connected_names(server):  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_rediss_verify_full_is_counted_and_closed(redis_server: LocalRedis) -> None:
    name = f"tcpw-{uuid.uuid4().hex[:12]}"
    async with request_scope() as scope:
        client = aioredis.from_url(
            redis_server.tls_url,  # rediss://localhost:PORT: the name is checked
            ssl_ca_certs=redis_server.ca_file,
            ssl_cert_reqs="required",
            client_name=name,
        )
        await client.set(f"{name}:k", "over tls", ex=10)
        assert await client.get(f"{name}:k") == b"over tls"
        (resource,) = scope.open_resources
        assert f"localhost:{redis_server.tls_port}" in resource.describe()
        assert name in await connected_names(redis_server)
    assert scope.stats.sockets_opened == 1
    assert scope.stats.closed_at_end == 1
    assert scope.stats.bytes_in > 0
    await wait_until_gone(redis_server, name)
    await client.aclose()


async def test_rediss_to_an_ip_literal_at_the_socket_limit(redis_server: LocalRedis) -> None:
    """By IP (checked against the certificate's IP SAN), with a limit of one connection."""
    async with request_scope(max_sockets=1) as scope:
        client = aioredis.Redis(
            host="127.0.0.1",
            port=redis_server.tls_port,
            ssl=True,
            ssl_ca_certs=redis_server.ca_file,
            ssl_check_hostname=True,
        )
        assert await client.ping()
        info = await client.info("server")
        assert info["tcp_port"] == redis_server.port
        await client.aclose()
        assert scope.open_resources == ()
    assert scope.stats.closed_at_end == 0


async def test_rediss_with_an_unknown_ca_fails_and_leaks_nothing(redis_server: LocalRedis) -> None:
    other = untrusted_ca()
    async with request_scope() as scope:
        client = aioredis.Redis(
            host="localhost",
            port=redis_server.tls_port,
            ssl=True,
            ssl_ca_data=other.ca_pem,
            retry=NO_RETRY,
        )
        with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
            await client.ping()
        assert scope.open_resources == ()
        await client.aclose()
    assert scope.stats.closed_at_end == 0


async def test_rediss_to_a_denied_host(redis_server: LocalRedis) -> None:
    async with request_scope(NO_LOOPBACK) as scope:
        client = aioredis.from_url(
            redis_server.tls_url, ssl_ca_certs=redis_server.ca_file, retry=NO_RETRY
        )
        with pytest.raises(Exception, match="denied by the egress policy") as info:
            await client.ping()
        assert isinstance(info.value.__cause__ or info.value.__context__, EgressDeniedError)
        await client.aclose()
    assert scope.stats.sockets_denied == 1


async def test_redis_over_a_unix_socket_follows_the_loopback_rule(redis_plain: LocalRedis) -> None:
    """A ``unix://`` URL is a destination like any other: loopback for the policy."""
    redis_server = redis_plain  # no TLS needed: the session's plain server
    url = f"unix://{redis_server.unix_socket}"
    async with request_scope() as scope:
        client = aioredis.from_url(url)
        assert await client.ping()
        (resource,) = scope.open_resources
        assert f"unix:{redis_server.unix_socket}" in resource.describe()
    assert scope.stats.closed_at_end == 1
    await client.aclose()
    async with request_scope(EgressPolicy.serve()) as scope:
        client = aioredis.from_url(url, retry=NO_RETRY)
        with pytest.raises(Exception, match="Unix sockets count as loopback") as info:
            await client.ping()
        assert isinstance(info.value.__cause__ or info.value.__context__, EgressDeniedError)
        await client.aclose()
    assert scope.stats.sockets_denied == 1
