"""Faults a real peer cannot be asked to produce, injected by tcpworkers.testing.FaultProxy.

Each fault must give the documented error, promptly, and leave nothing open.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tcpworkers import Socket, TlsOptions, connect
from tcpworkers.errors import ConnectError, SocketBrokenError, TLSHandshakeError
from tcpworkers.testing import EchoServer, Fault, FaultProxy, TestCA


async def read_until_end(sock: Socket, into: bytearray) -> None:
    async with asyncio.timeout(5):
        while chunk := await sock.readable.read():
            into += chunk


async def write_forever(sock: Socket) -> None:
    while True:
        await sock.writable.write(b"w" * 65536)
        await asyncio.sleep(0)


async def open_and_read(sock: Socket) -> bytes:
    await sock.opened
    return await asyncio.wait_for(sock.readable.read(), 5)


@pytest.fixture
async def echo_server() -> AsyncIterator[EchoServer]:
    async with EchoServer() as server:
        yield server


async def test_reset_mid_stream_breaks_the_read(echo_server: EchoServer) -> None:
    async with FaultProxy(echo_server.host, echo_server.port, fault=Fault.reset_after(5)) as proxy:
        sock = connect(proxy.address)
        await sock.writable.write(b"0123456789")
        received = bytearray()
        with pytest.raises(SocketBrokenError, match="reset") as info:
            await read_until_end(sock, received)
        assert isinstance(info.value.__cause__, ConnectionResetError)
        assert isinstance(info.value, ConnectionError)
        assert received == b"01234"[: len(received)]
        await asyncio.wait_for(sock.closed, 5)  # a broken connection is a closed socket
        with pytest.raises(SocketBrokenError):
            await sock.writable.write(b"more")
        with pytest.raises(SocketBrokenError):
            await sock.readable.read()  # every time, not just once
        await sock.close()


async def test_reset_while_writing_breaks_the_writer(echo_server: EchoServer) -> None:
    async with FaultProxy(echo_server.host, echo_server.port, fault=Fault.reset_after(1)) as proxy:
        sock = connect(proxy.address)
        await sock.opened
        with pytest.raises(SocketBrokenError):
            await asyncio.wait_for(write_forever(sock), 5)
        await sock.close()


async def test_close_after_n_bytes_is_a_clean_end(echo_server: EchoServer) -> None:
    async with FaultProxy(echo_server.host, echo_server.port, fault=Fault.close_after(4)) as proxy:
        sock = connect(proxy.address)
        await sock.writable.write(b"abcdefgh")
        data = b""
        async with asyncio.timeout(5):
            async for chunk in sock.readable:
                data += chunk
        assert data == b"abcd"
        assert await sock.readable.read() == b""
        await asyncio.wait_for(sock.closed, 5)


async def test_a_stalled_peer_does_not_hang_a_bounded_read(echo_server: EchoServer) -> None:
    async with FaultProxy(echo_server.host, echo_server.port, fault=Fault.stall_after(3)) as proxy:
        sock = connect(proxy.address)
        await sock.writable.write(b"abcdef")
        assert await sock.readable.readexactly(3) == b"abc"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sock.readable.read(), 0.2)
        # The cancelled read left the socket usable: no busy flag, no lost data.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sock.readable.read(), 0.05)
        await asyncio.wait_for(sock.close(), 10)


async def test_a_stalled_tls_handshake_hits_connect_timeout(echo_server: EchoServer) -> None:
    async with FaultProxy(echo_server.host, echo_server.port, fault=Fault.stall()) as proxy:
        sock = connect(
            proxy.address, secure_transport="on", connect_timeout=0.3, tls=TlsOptions(verify=False)
        )
        with pytest.raises(ConnectError, match="connect_timeout"):
            await asyncio.wait_for(sock.opened, 5)


async def test_truncated_tls_record_fails_the_handshake(ca: TestCA) -> None:
    async with (
        EchoServer(ssl=ca.server_context()) as server,
        FaultProxy(server.host, server.port, fault=Fault.truncate_tls()) as proxy,
    ):
        sock = connect(
            proxy.address, secure_transport="on", tls=TlsOptions(ca=ca.ca_pem), connect_timeout=5
        )
        with pytest.raises(TLSHandshakeError, match="TLS handshake"):
            await sock.opened
        await sock.close()


async def test_refused_by_reset_at_accept(echo_server: EchoServer) -> None:
    async with FaultProxy(echo_server.host, echo_server.port, fault=Fault.refuse()) as proxy:
        sock = connect(proxy.address)
        # TCP connected, then the peer reset: either the open or the first read reports it.
        with pytest.raises((ConnectError, SocketBrokenError)):
            await open_and_read(sock)
        await sock.close()


async def test_transparent_proxy_passes_everything(echo_server: EchoServer) -> None:
    async with (
        FaultProxy(echo_server.host, echo_server.port) as proxy,
        connect(proxy.address) as sock,
    ):
        payload = b"p" * 300_000
        await sock.writable.write(payload)
        assert await sock.readable.readexactly(len(payload)) == payload
