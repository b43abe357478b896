"""Issue 8, the runtime: a socket streamed into a response that fails (item 3), and the
process-wide policy outside request scopes under ``serve`` (item 4).

Real HTTP over loopback; the ``serve`` tests run ``tcpworkers`` as real processes. Every peer
is a loopback server, and every denial comes from a policy that refuses loopback.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import socketserver
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tcpworkers import Request, Response, connect
from tcpworkers.runtime import Env, ExecutionContext, RuntimeSettings
from tcpworkers.testing import serve_worker

from ..pgserver import PgServer
from .cli_harness import tcpworkers, worker

ESCAPE = worker("escape.py")


@pytest.fixture
def refused_port() -> Iterator[int]:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    try:
        yield holder.getsockname()[1]
    finally:
        holder.close()


class _PartialThenReset(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(b"partial body\n")
        self.request.recv(1)  # wait for the client's go-ahead
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.request.close()  # RST now (socketserver would send a FIN first)


@pytest.fixture(scope="module")
def reset_port() -> Iterator[int]:
    """Sends a line, then resets the connection once the client writes a byte."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _PartialThenReset)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


# -- item 3: Response(sock.readable) ------------------------------------------------------------


async def stream_socket(request: Request, env: Env, ctx: ExecutionContext) -> Response:
    sock = connect(("127.0.0.1", int(request.query["port"])))
    if "go" in request.query:
        await sock.writable.write(b"g")
    return Response(sock.readable, headers={"content-type": "text/plain"})


async def test_a_socket_that_never_opened_is_a_502_with_the_reason_in_dev(
    refused_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    async with serve_worker(stream_socket) as server:
        response = await server.client.get("/", params={"port": refused_port})
    assert response.status_code == 502
    assert "refused" in response.text
    assert f"127.0.0.1:{refused_port}" in response.text


async def test_a_socket_that_never_opened_is_a_plain_502_in_serve(refused_port: int) -> None:
    async with serve_worker(stream_socket, RuntimeSettings(mode="serve")) as server:
        response = await server.client.get("/", params={"port": refused_port})
    assert response.status_code == 502
    assert response.text == "Bad Gateway"


async def test_a_socket_failing_after_the_headers_ends_the_body_detectably_and_logs_once(
    reset_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with serve_worker(stream_socket) as server:
        params: dict[str, str | int] = {"port": reset_port, "go": "1"}
        async with server.client.stream("GET", "/", params=params) as response:
            assert response.status_code == 200
            assert response.headers["transfer-encoding"] == "chunked"
            received = bytearray()

            async def read_all() -> None:
                async for chunk in response.aiter_raw():
                    received.extend(chunk)

            with pytest.raises(httpx.RemoteProtocolError):
                await read_all()
        assert received == b"partial body\n"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, caplog.text
    message = errors[0].getMessage()
    assert message.startswith("GET /")
    assert "reset" in message
    assert "test_hardening.py:" in message  # where the worker built that Response


# -- item 4: the default policy outside request scopes -------------------------------------------

DENIED = "denied: EgressDeniedError"


def _get(url: str, how: str, port: int, probe: str = "connect") -> str:
    params: dict[str, str | int] = {"how": how, "port": port, "probe": probe}
    response = httpx.get(url, params=params, timeout=15, headers={"connection": "close"})
    assert response.status_code == 200, response.text
    return response.text


def test_escapes_connect_under_dev_without_egress_config(echo_port: int) -> None:
    # The control: in dev (loopback allowed) every escape route really connects, so the
    # denials below are the policy's doing.
    with tcpworkers("dev", ESCAPE, "--port", "0", "--no-reload") as server:
        for how in ("request", "fresh", "thread"):
            assert _get(server.url, how, echo_port) == "connected", how


def test_serve_applies_its_policy_outside_request_scopes_in_every_process(
    echo_port: int,
) -> None:
    with tcpworkers("serve", ESCAPE, "--port", "0", "--workers", "2") as server:
        for _ in range(4):  # connection: close each time, so both processes answer some
            for how in ("request", "fresh", "thread"):
                for probe in ("connect", "driver", "fetch"):
                    text = _get(server.url, how, echo_port, probe)
                    assert text.startswith(DENIED), (how, probe, text)


def test_dev_with_egress_config_applies_it_outside_request_scopes(
    echo_port: int, tmp_path: Path
) -> None:
    config = tmp_path / "tcpworkers.toml"
    config.write_text('[egress]\ndeny = ["loopback"]\n')
    with tcpworkers("dev", ESCAPE, "--port", "0", "--no-reload", "--config", str(config)) as server:
        for how in ("request", "fresh", "thread"):
            for probe in ("connect", "driver", "fetch"):
                text = _get(server.url, how, echo_port, probe)
                assert text.startswith(DENIED), (how, probe, text)


# -- item 13: the access log of an asyncpg request is true ---------------------------------------


async def asyncpg_worker(request: Request, env: Env, ctx: ExecutionContext) -> Response:
    import asyncpg

    conn = await asyncpg.connect(
        host="127.0.0.1", port=int(request.query["port"]), user="postgres", database="test"
    )
    try:
        value = await conn.fetchval("SELECT repeat('z', 3000)")
    finally:
        await conn.close()
    return Response(str(len(value)))


async def test_an_asyncpg_request_records_the_bytes_on_the_wire(pg_server: PgServer) -> None:
    from tests.drivers.test_gate_hardening import CountingRelay

    from .worker_helpers import Recorder

    recorder = Recorder()
    async with CountingRelay((pg_server.host, pg_server.port)).running() as relay:
        async with serve_worker(asyncpg_worker, observers=[recorder]) as server:
            response = await server.client.get("/", params={"port": relay.port})
            assert response.text == "3000"
            (record,) = await recorder.wait_for(1)
        await asyncio.wait_for(relay.done.wait(), 5)
    assert record.stats.sockets_opened == 1
    assert record.stats.bytes_out == relay.upstream_bytes > 0
    assert record.stats.bytes_in == relay.downstream_bytes > 3000
