"""Issue 8, the gate for drivers: no asyncio entry point around the policy, the default policy
outside scopes, a clear word about driver connections a request leaves open, true byte counts.

Runs on the gated stdlib loop and the gated uvloop; every peer is a loopback server, and every
denial comes from a policy that refuses loopback, so nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import socket
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

import tcpworkers.drivers
from tcpworkers.egress import EgressPolicy, default_policy, set_default_policy
from tcpworkers.errors import ConnectNotAllowedError, EgressDeniedError, ScopeClosedError
from tcpworkers.scope import request_scope
from tcpworkers.testing import EchoServer

from ..pgserver import pg, shared

NO_LOOPBACK = EgressPolicy.from_config({"preset": "dev", "deny": ["loopback"]})


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening loopback TCP socket nobody accepts from (the backlog shows connections)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


def accepted_any(listener: socket.socket) -> bool:
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


@pytest.fixture
def udp_receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


def received_any(sock: socket.socket) -> bool:
    try:
        sock.recv(65536)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def default_policy_set(policy: EgressPolicy) -> Iterator[None]:
    previous = default_policy()
    set_default_policy(policy)
    try:
        yield
    finally:
        set_default_policy(previous)


# -- item 5: the remaining asyncio entry points -------------------------------------------------


async def test_sock_connect_inside_a_scope_is_gated(listener: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    try:
        async with request_scope(NO_LOOPBACK) as scope:
            with pytest.raises(EgressDeniedError, match="loopback"):
                await loop.sock_connect(sock, listener.getsockname())
        assert scope.stats.sockets_denied == 1
    finally:
        sock.close()
    await asyncio.sleep(0.05)
    assert not accepted_any(listener)


async def test_udp_with_remote_addr_inside_a_scope_is_gated(udp_receiver: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    async with request_scope(NO_LOOPBACK):
        with pytest.raises(EgressDeniedError, match="loopback"):
            await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=udp_receiver.getsockname()
            )
    await asyncio.sleep(0.05)
    assert not received_any(udp_receiver)


async def test_udp_with_remote_addr_inside_a_scope_works_when_permitted(
    udp_receiver: socket.socket,
) -> None:
    loop = asyncio.get_running_loop()
    async with request_scope() as scope:
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=udp_receiver.getsockname()
        )
        transport.sendto(b"hello")
        await asyncio.sleep(0.05)
        assert received_any(udp_receiver)
        assert len(scope.open_resources) == 1
    assert transport.is_closing()


async def test_unconnected_udp_inside_a_scope_is_refused(udp_receiver: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    async with request_scope():
        with pytest.raises(ConnectNotAllowedError, match="remote_addr"):
            await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
            )
    assert not received_any(udp_receiver)


async def test_listening_inside_a_scope_is_refused() -> None:
    loop = asyncio.get_running_loop()
    async with request_scope():
        with pytest.raises(ConnectNotAllowedError, match="listen"):
            await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        with pytest.raises(ConnectNotAllowedError, match="listen"):
            await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)


async def test_connect_accepted_socket_inside_a_scope_is_refused(
    listener: socket.socket,
) -> None:
    loop = asyncio.get_running_loop()
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    try:
        accepted.setblocking(False)
        async with request_scope():
            with pytest.raises(ConnectNotAllowedError, match="accept"):
                await loop.connect_accepted_socket(asyncio.Protocol, accepted)
    finally:
        client.close()
        accepted.close()


async def test_create_connection_with_a_connected_socket_is_decided_on_its_peer(
    listener: socket.socket,
) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.create_connection(listener.getsockname())  # connected outside any asyncio
    sock.setblocking(False)
    try:
        async with request_scope(NO_LOOPBACK):
            with pytest.raises(EgressDeniedError, match="loopback"):
                await loop.create_connection(asyncio.Protocol, sock=sock)
    finally:
        sock.close()


async def test_create_connection_with_an_unconnected_socket_is_refused_clearly() -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    try:
        async with request_scope():
            with pytest.raises(ConnectNotAllowedError, match="connected socket"):
                await loop.create_connection(asyncio.Protocol, sock=sock)
    finally:
        sock.close()


# -- item 4: outside request scopes, the default policy; no public way around it ---------------


async def test_driver_in_a_fresh_context_gets_the_default_policy(listener: socket.socket) -> None:
    loop = asyncio.get_running_loop()

    async def escape() -> None:
        await asyncio.open_connection(*listener.getsockname())

    with default_policy_set(NO_LOOPBACK):
        async with request_scope(NO_LOOPBACK):
            task = loop.create_task(escape(), context=contextvars.Context())
            with pytest.raises(EgressDeniedError, match="loopback"):
                await task
    await asyncio.sleep(0.05)
    assert not accepted_any(listener)


async def test_sock_connect_outside_scopes_gets_the_default_policy(
    listener: socket.socket,
) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    try:
        with default_policy_set(NO_LOOPBACK), pytest.raises(EgressDeniedError):
            await loop.sock_connect(sock, listener.getsockname())
    finally:
        sock.close()


def test_ungated_is_not_part_of_the_public_drivers_module() -> None:
    assert "ungated" not in tcpworkers.drivers.__all__
    assert not hasattr(tcpworkers.drivers, "ungated")


# -- item 12: driver connections a request leaves open -----------------------------------------


async def test_driver_connection_left_open_is_named_in_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    async with EchoServer() as server:
        async with request_scope(label="GET /orders"):
            _, first = await asyncio.open_connection(server.host, server.port)
            _, second = await asyncio.open_connection(server.host, server.port)
        assert first.is_closing()
        assert second.is_closing()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, caplog.text
    text = warnings[0].getMessage()
    assert "GET /orders" in text
    assert text.count(f"127.0.0.1:{server.port}") == 2
    assert "belong" in text
    assert "env.DB" in text


async def test_sockets_left_open_by_connect_are_closed_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tcpworkers import connect

    caplog.set_level(logging.WARNING)
    async with EchoServer() as server, request_scope(label="GET /stream"):
        sock = connect(server.address)  # Response(sock.readable) leaves it to the scope
        await sock.opened
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_scope_closed_error_points_a_pool_refilling_later_to_the_pool_binding() -> None:
    started = asyncio.Event()
    go = asyncio.Event()

    async def module_level_pool_refill(port: int) -> None:
        started.set()
        await go.wait()
        await asyncio.open_connection("127.0.0.1", port)

    async with EchoServer() as server:
        async with request_scope(label="GET /users"):
            refill = asyncio.create_task(module_level_pool_refill(server.port))
            await started.wait()
        go.set()
        with pytest.raises(ScopeClosedError) as caught:
            await refill
    message = str(caught.value)
    assert "GET /users" in message
    assert "pool" in message
    assert "env.DB" in message


# -- item 13: bytes sent and received by drivers ------------------------------------------------


class CountingRelay:
    """A loopback TCP relay to ``target`` that counts the bytes each way (the ground truth)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.upstream_bytes = 0  # client -> target
        self.downstream_bytes = 0  # target -> client
        self.done = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.port = 0

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[CountingRelay]:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            self._server.close()
            await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            while data := await src.read(65536):
                if up:
                    self.upstream_bytes += len(data)
                else:
                    self.downstream_bytes += len(data)
                dst.write(data)
                await dst.drain()
            with contextlib.suppress(OSError):
                dst.close()

        with contextlib.suppress(OSError):
            await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))
        self.done.set()


async def test_stream_driver_bytes_are_counted_both_ways() -> None:
    async with EchoServer() as server, request_scope() as scope:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"x" * 1000)
        assert await reader.readexactly(1000) == b"x" * 1000
        writer.close()
        await writer.wait_closed()
    assert scope.stats.bytes_out == 1000
    assert scope.stats.bytes_in == 1000


async def test_asyncpg_bytes_are_counted_exactly_both_ways() -> None:
    async with CountingRelay((shared().host, shared().port)).running() as relay:
        async with request_scope() as scope:
            conn = await asyncpg.connect(**{**pg(), "port": relay.port})
            assert await conn.fetchval("SELECT repeat('y', 5000)") == "y" * 5000
            await conn.close()
        await asyncio.wait_for(relay.done.wait(), 5)
    assert scope.stats.bytes_out == relay.upstream_bytes > 0
    assert scope.stats.bytes_in == relay.downstream_bytes > 5000


async def test_asyncpg_left_open_is_counted_when_the_scope_closes_it() -> None:
    async with CountingRelay((shared().host, shared().port)).running() as relay:
        async with request_scope() as scope:
            conn = await asyncpg.connect(**{**pg(), "port": relay.port})
            assert await conn.fetchval("SELECT 1") == 1
        await asyncio.wait_for(relay.done.wait(), 5)
    assert scope.stats.bytes_out == relay.upstream_bytes > 0
    assert scope.stats.bytes_in == relay.downstream_bytes > 0
