"""HTTP clients, unchanged, through the gate: aiohttp's ``ClientSession`` and httpx with its
default transport (httpcore on anyio), plain and TLS, against a loopback keep-alive server that
records when each connection closes.

aiohttp connects with aiohappyeyeballs (a socket of its own, ``loop.sock_connect``) and hands
the connected socket to ``loop.create_connection(sock=...)``; httpx connects with
``loop.create_connection`` to an address anyio resolved and does TLS itself (``ssl.MemoryBIO``
over the plain transport). Either way the connection is checked, counted and closed at the end
of the request, also when the client object is never closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import httpx
import pytest

from tcpworkers.egress import EgressPolicy
from tcpworkers.errors import EgressDeniedError
from tcpworkers.scope import request_scope
from tcpworkers.testing import TestCA

NO_LOOPBACK = EgressPolicy.from_config({"preset": "dev", "deny": ["loopback"]})


@dataclass
class HttpServer:
    """A loopback HTTP/1.1 server that answers ``ok`` and keeps connections alive."""

    url: str
    requests: int = 0
    connections: list[asyncio.Event] = field(default_factory=list)

    async def all_closed(self) -> None:
        async with asyncio.timeout(5):
            for closed in self.connections:
                await closed.wait()


@contextlib.asynccontextmanager
async def http_server(tls: ssl.SSLContext | None = None) -> AsyncIterator[HttpServer]:
    state = HttpServer(url="")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        closed = asyncio.Event()
        state.connections.append(closed)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                state.requests += 1
                assert b"content-length" not in head.lower()  # GETs only
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass  # the client went away
        finally:
            closed.set()
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    state.url = f"{'https' if tls else 'http'}://localhost:{port}/"
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
async def test_aiohttp_session_left_open_is_closed_at_scope_end(ca: TestCA, tls: bool) -> None:
    async with http_server(ca.server_context() if tls else None) as server:
        client_tls = ca.client_context() if tls else True  # one context: one pooled connection
        async with request_scope() as scope:
            session = aiohttp.ClientSession()
            for _ in range(3):  # keep-alive: one connection, three requests
                async with session.get(server.url, ssl=client_tls) as response:
                    assert await response.text() == "ok"
            (resource,) = scope.open_resources
            assert "127.0.0.1:" in resource.describe()  # the peer aiohttp's own socket reached
        assert scope.stats.sockets_opened == 1
        assert scope.stats.closed_at_end == 1
        assert scope.stats.bytes_in > 0
        assert server.requests == 3
        await server.all_closed()  # the server saw the connection go
        await session.close()


async def test_aiohttp_closed_by_the_handler_frees_its_slot(ca: TestCA) -> None:
    async with http_server(ca.server_context()) as server:
        async with request_scope(max_sockets=1, slot_timeout=2) as scope:
            for _ in range(3):  # a new session each time: would wait for a slot if not freed
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(server.url, ssl=ca.client_context()) as response,
                ):
                    assert response.status == 200
            assert scope.open_resources == ()
        assert scope.stats.sockets_opened == 3
        assert scope.stats.closed_at_end == 0


async def test_aiohttp_to_a_denied_host() -> None:
    async with http_server() as server:
        async with request_scope(NO_LOOPBACK) as scope:
            async with aiohttp.ClientSession() as session:
                with pytest.raises(aiohttp.ClientConnectorError) as info:
                    await session.get(server.url)
            assert _caused_by(info.value, EgressDeniedError)
        assert scope.stats.sockets_denied >= 1
        # Refused before connecting (aiohttp's happy eyeballs uses loop.sock_connect, which
        # the gate checks), so the server never saw a connection.
        assert server.connections == []


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
async def test_httpx_default_transport_left_open_is_closed_at_scope_end(
    ca: TestCA, tls: bool
) -> None:
    async with http_server(ca.server_context() if tls else None) as server:
        async with request_scope() as scope:
            client = httpx.AsyncClient(verify=ca.client_context() if tls else True)
            for _ in range(3):
                response = await client.get(server.url)
                assert response.text == "ok"
            assert len(scope.open_resources) == 1
        assert scope.stats.sockets_opened == 1
        assert scope.stats.closed_at_end == 1
        assert scope.stats.bytes_in > 0
        await server.all_closed()
        with contextlib.suppress(Exception):  # its pooled connection was closed under it
            await client.aclose()


async def test_httpx_to_a_denied_host() -> None:
    async with http_server() as server:
        async with request_scope(NO_LOOPBACK) as scope, httpx.AsyncClient() as client:
            with pytest.raises(httpx.ConnectError) as info:
                await client.get(server.url)
            assert _caused_by(info.value, EgressDeniedError)
        assert scope.stats.sockets_denied >= 1
        assert server.requests == 0


def _caused_by(exc: BaseException | None, kind: type[BaseException]) -> bool:
    while exc is not None:
        if isinstance(exc, kind):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


async def test_aiohttp_and_httpx_inside_a_served_worker(ca: TestCA) -> None:
    """The same clients in a worker's fetch(), served over HTTP: each request's connections are
    its own, counted in its record, and closed when it ends (the sessions are left open)."""
    from tcpworkers import Response
    from tcpworkers.runtime import RuntimeSettings
    from tcpworkers.testing import serve_worker

    from ..runtime.worker_helpers import Recorder

    async with http_server(ca.server_context()) as server:
        client_tls = ca.client_context()
        sessions: list[aiohttp.ClientSession] = []
        clients: list[httpx.AsyncClient] = []

        async def fetch(request: object, env: object, ctx: object) -> Response:
            session = aiohttp.ClientSession()  # never closed by the handler
            async with session.get(server.url, ssl=client_tls) as first:
                one = await first.text()
            client = httpx.AsyncClient(verify=client_tls)  # never closed either
            two = (await client.get(server.url)).text
            sessions.append(session)
            clients.append(client)
            return Response(one + two)

        recorder = Recorder()
        async with serve_worker(fetch, RuntimeSettings(), observers=[recorder]) as worker:
            for _ in range(2):
                response = await worker.client.get("/")
                assert response.text == "okok"
            records = await recorder.wait_for(2)
        for record in records:
            assert record.stats.sockets_opened == 2
            assert record.stats.closed_at_end == 2
        await server.all_closed()  # all four connections ended with their requests
        assert len(server.connections) == 4
        for session in sessions:
            await session.close()
        for client in clients:
            with contextlib.suppress(Exception):  # its pooled connection was closed under it
                await client.aclose()
