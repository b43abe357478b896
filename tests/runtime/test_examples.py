"""The example workers in ``examples/``, served over real HTTP on loopback with ``serve_worker``.

Each talks to a real service: the session's PostgreSQL (``pg_dsn``: user postgres, database
test) and Redis (``redis_plain``), or a server started here on an OS-chosen port (SMTP with
STARTTLS, WHOIS, Gopher, echo, blast), configured through the workers' ``[vars]``. The request
records show each example's connections went through the request scope and were closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiosmtpd.smtp import SMTP as SMTPServerProtocol

from tcpworkers.egress import EgressPolicy
from tcpworkers.runtime import RuntimeSettings, VarValue
from tcpworkers.runtime._config import load_config
from tcpworkers.scope._trust import trusted_connections
from tcpworkers.testing import EchoServer, LocalRedis, TestCA, serve_worker

from .worker_helpers import MIB, Blaster, Recorder

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NO_LOOPBACK = EgressPolicy.from_config({"preset": "dev", "deny": ["loopback"]})
# What examples/tcpworkers.toml and the workers default to (the machine's usual services).
EXAMPLES_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def example(name: str) -> str:
    return str(EXAMPLES / name)


def settings(*, policy: EgressPolicy | None = None, **values: VarValue) -> RuntimeSettings:
    if policy is None:
        return RuntimeSettings(vars=values)
    return RuntimeSettings(vars=values, policy=policy)


@contextlib.asynccontextmanager
async def line_server(
    answer: Callable[[bytes, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A loopback server that reads one line, lets ``answer`` write, then closes; yields its
    port and the lines it received."""
    lines: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            lines.append(line)
            await answer(line, writer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], lines
    finally:
        server.close()
        await server.wait_closed()


def free_port() -> int:
    """A loopback port nobody listens on (bound once by the OS, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# -- the config next to the examples ---------------------------------------------------------


def test_examples_config_is_valid_and_matches_the_workers_defaults() -> None:
    config = load_config("dev", example("bench_worker.py"))
    assert config.path == EXAMPLES / "tcpworkers.toml"
    assert config.runtime.vars["DATABASE_URL"] == EXAMPLES_DSN
    assert config.runtime.vars["ECHO_PORT"] == 9001
    assert config.runtime.vars["BLAST_PORT"] == 9002


# -- bench_worker.py -------------------------------------------------------------------------


async def test_bench_worker_routes() -> None:
    recorder = Recorder()
    async with (
        EchoServer() as echo,
        Blaster().running() as blaster,
        serve_worker(
            example("bench_worker.py"),
            settings(ECHO_PORT=echo.port, BLAST_PORT=blaster.port),
            observers=[recorder],
        ) as server,
    ):
        hello = await server.client.get("/hello")
        assert (hello.status_code, hello.text) == (200, "hello, world")
        small = await server.client.get("/echo", params={"size": 64})
        assert (small.status_code, small.text) == (200, "64")
        large = await server.client.get("/echo", params={"size": 3_000_000})
        assert large.text == "3000000"
        blast = await server.client.get("/blast", params={"mib": 3})
        assert blast.status_code == 200
        assert blast.headers["content-type"] == "application/octet-stream"
        assert len(blast.content) == 3 * MIB
        assert (await server.client.get("/echo")).status_code == 400
        assert (await server.client.get("/blast?mib=x")).status_code == 400
        assert (await server.client.get("/nope")).status_code == 404
        records = await recorder.wait_for(7)
    by_path = {(r.path, r.stats.sockets_opened, r.stats.closed_at_end) for r in records}
    assert ("/hello", 0, 0) in by_path
    assert ("/echo", 1, 0) in by_path  # the handler closed its echo socket itself
    blast_record = next(r for r in records if r.path == "/blast")
    assert blast_record.stats.bytes_in >= 3 * MIB
    # Both echo connections were closed, as the echo server saw it.
    assert len(echo.connections) == 2
    assert all(conn.closed.is_set() for conn in echo.connections)


# -- postgres_worker.py ----------------------------------------------------------------------


async def test_postgres_worker_queries_the_database(pg_dsn: str) -> None:
    recorder = Recorder()
    async with serve_worker(
        example("postgres_worker.py"), settings(DATABASE_URL=pg_dsn), observers=[recorder]
    ) as server:
        squares = await server.client.get("/squares", params={"n": 4})
        assert squares.status_code == 200
        assert squares.json() == [{"n": i, "square": i * i} for i in range(1, 5)]
        root = (await server.client.get("/")).json()
        assert root["version"].startswith("PostgreSQL")
        assert (await server.client.get("/squares?n=-1")).status_code == 400
        records = await recorder.wait_for(3)
    # Records arrive as requests end, not necessarily in order.
    served = [r for r in records if r.status == 200]
    assert len(served) == 2
    for record in served:
        assert record.stats.sockets_opened == 1
        assert record.stats.closed_at_end == 0  # closed in the handler's finally


async def test_postgres_worker_is_subject_to_the_egress_policy(pg_dsn: str) -> None:
    async with serve_worker(
        example("postgres_worker.py"), settings(policy=NO_LOOPBACK, DATABASE_URL=pg_dsn)
    ) as server:
        response = await server.client.get("/squares")
    assert response.status_code == 500
    assert "EgressDeniedError" in response.text


# -- redis_worker.py -------------------------------------------------------------------------


async def test_redis_worker_counts_visits(redis_plain: LocalRedis) -> None:
    redis_url = redis_plain.url
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    recorder = Recorder()
    try:
        async with serve_worker(
            example("redis_worker.py"),
            settings(REDIS_URL=redis_url, KEY_PREFIX=prefix),
            observers=[recorder],
        ) as server:
            first = await server.client.get("/page", params={"reset": "1"})
            assert first.json() == {"path": "/page", "visits": 1}
            second = await server.client.get("/page")
            assert second.json() == {"path": "/page", "visits": 2}
            records = await recorder.wait_for(2)
        assert all(r.stats.sockets_opened == 1 for r in records)
    finally:
        with trusted_connections():
            client = aioredis.from_url(redis_url)
            await client.delete(f"tcpworkers:example:visits:{prefix}/page")
            await client.aclose()


# -- smtp_starttls_worker.py -----------------------------------------------------------------


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK queued"


async def test_smtp_worker_sends_with_starttls(tmp_path: Path) -> None:
    ca = TestCA()
    inbox = _Inbox()
    tls = ca.server_context(("127.0.0.1", "localhost"))
    smtp = await asyncio.get_running_loop().create_server(
        lambda: SMTPServerProtocol(inbox, tls_context=tls, require_starttls=True),
        "127.0.0.1",
        0,
    )
    recorder = Recorder()
    try:
        values = settings(
            SMTP_PORT=smtp.sockets[0].getsockname()[1],
            SMTP_CA_FILE=str(ca.write_ca(tmp_path / "ca.pem")),
        )
        async with serve_worker(
            example("smtp_starttls_worker.py"), values, observers=[recorder]
        ) as server:
            mail = {"to": "ops@example.test", "subject": "hi", "text": "from a worker"}
            sent = await server.client.post("/send", json=mail)
            assert sent.status_code == 202, sent.text
            assert sent.json()["refused"] == []
            bad = await server.client.post("/send", content=b"not json")
            assert bad.status_code == 400
            records = await recorder.wait_for(2)
    finally:
        smtp.close()
        await smtp.wait_closed()
    (message,) = inbox.messages
    assert b"Subject: hi" in message
    assert b"from a worker" in message
    (record,) = [r for r in records if r.status == 202]
    assert record.stats.sockets_opened == 1  # the STARTTLS upgrade kept the slot


async def test_smtp_worker_reports_an_unreachable_server() -> None:
    async with serve_worker(
        example("smtp_starttls_worker.py"), settings(SMTP_PORT=free_port())
    ) as server:
        response = await server.client.post("/send", json={"to": "ops@example.test"})
    assert response.status_code == 502


# -- raw_tcp_worker.py -----------------------------------------------------------------------


async def test_raw_tcp_worker_speaks_whois() -> None:
    async def whois(line: bytes, writer: asyncio.StreamWriter) -> None:
        query = line.decode().strip()
        writer.write(f"% answer for {query}\ndomain: {query.upper()}\n".encode())
        await writer.drain()

    recorder = Recorder()
    async with (
        line_server(whois) as (port, lines),
        serve_worker(
            example("raw_tcp_worker.py"),
            settings(WHOIS_HOST="127.0.0.1", WHOIS_PORT=port),
            observers=[recorder],
        ) as server,
    ):
        response = await server.client.get("/whois", params={"q": "example.com"})
        assert response.status_code == 200
        assert response.text == "% answer for example.com\ndomain: EXAMPLE.COM\n"
        assert (await server.client.get("/whois")).status_code == 400
        records = await recorder.wait_for(2)
    (record,) = [r for r in records if r.status == 200]
    assert lines == [b"example.com\r\n"]
    assert record.stats.sockets_opened == 1
    assert record.stats.closed_at_end == 0


# -- streaming_proxy_worker.py ---------------------------------------------------------------


async def test_streaming_proxy_streams_the_socket_to_the_client() -> None:
    size = 8 * MIB

    async def gopher(line: bytes, writer: asyncio.StreamWriter) -> None:
        block = b"g" * 65536
        for _ in range(size // len(block)):
            writer.write(block)
            await writer.drain()

    recorder = Recorder()
    async with (
        line_server(gopher) as (port, lines),
        serve_worker(
            example("streaming_proxy_worker.py"),
            settings(GOPHER_HOST="127.0.0.1", GOPHER_PORT=port),
            observers=[recorder],
        ) as server,
    ):
        received = 0
        async with server.client.stream("GET", "/docs/about.txt") as response:
            assert response.headers["content-type"] == "text/plain"
            async for chunk in response.aiter_bytes():
                received += len(chunk)
        (record,) = await recorder.wait_for(1)
    assert received == size
    assert lines == [b"/docs/about.txt\r\n"]
    assert record.stats.bytes_in == size


async def test_streaming_proxy_reports_a_refused_connection() -> None:
    async with serve_worker(
        example("streaming_proxy_worker.py"),
        settings(GOPHER_HOST="127.0.0.1", GOPHER_PORT=free_port()),
    ) as server:
        response = await server.client.get("/")
    assert response.status_code == 502
    assert response.text.startswith("socket connection failed")


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*_worker.py")))
def test_every_example_loads(name: str) -> None:
    from tcpworkers.runtime import load_worker

    assert load_worker(example(name)).kind == "fetch"
