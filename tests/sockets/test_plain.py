"""Plain-TCP-only rules: half-open streams, EOF handling and backpressure.

TLS cannot be half-closed in asyncio, so these are checked on plain TCP only; the TLS behaviour
at EOF is checked in test_tls.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tcpworkers import connect
from tcpworkers.errors import IncompleteReadError, SocketBusyError, SocketClosedError
from tcpworkers.sockets import _socket
from tcpworkers.testing import EchoServer, Fault, FaultProxy

from ..waiting import eventually, started


class FinFirstServer:
    """Sends a greeting and FIN at once, then records whatever the client still sends."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.client_done = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"bye")
        writer.write_eof()
        while data := await reader.read(65536):
            self.received += data
        self.client_done.set()
        writer.close()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def echo_server() -> AsyncIterator[EchoServer]:
    async with EchoServer() as server:
        yield server


async def test_without_half_open_eof_closes_the_write_side() -> None:
    fin_first = FinFirstServer()
    async with fin_first as address:
        sock = connect(address)
        assert await sock.readable.readexactly(3) == b"bye"
        assert await sock.readable.read() == b""
        await asyncio.wait_for(sock.closed, 5)  # our side closed too: closed resolves
        with pytest.raises(SocketClosedError, match="allow_half_open=True"):
            await sock.writable.write(b"late")
        await asyncio.wait_for(fin_first.client_done.wait(), 5)
        assert fin_first.received == b""
        await sock.close()


async def test_with_half_open_the_socket_stays_writable_after_eof() -> None:
    fin_first = FinFirstServer()
    async with fin_first as address:
        sock = connect(address, allow_half_open=True)
        assert await sock.readable.readexactly(3) == b"bye"
        assert await sock.readable.read() == b""
        await sock.writable.write(b"still here")
        assert not sock.closed.done()
        await sock.writable.close()  # both directions done: the connection is released
        await asyncio.wait_for(fin_first.client_done.wait(), 5)
        assert fin_first.received == b"still here"
        await asyncio.wait_for(sock.closed, 5)
        await sock.close()


async def test_reads_after_eof_return_buffered_data_then_empty(echo_server: EchoServer) -> None:
    sock = connect(echo_server.address)
    await sock.writable.write(b"abcdef")
    await sock.writable.close()
    await asyncio.wait_for(sock.closed, 5)  # everything arrived and the connection ended
    assert await sock.readable.read(4) == b"abcd"
    assert await sock.readable.read() == b"ef"
    assert await sock.readable.read() == b""
    assert await sock.readable.read() == b""


async def test_incomplete_reads_keep_the_partial_data(echo_server: EchoServer) -> None:
    sock = connect(echo_server.address)
    await sock.writable.write(b"abc")
    await sock.writable.close()
    with pytest.raises(IncompleteReadError) as info:
        await sock.readable.readexactly(10)
    assert (info.value.partial, info.value.expected) == (b"abc", 10)
    assert isinstance(info.value, EOFError)
    await sock.close()


async def test_readuntil_at_eof_is_incomplete(echo_server: EchoServer) -> None:
    sock = connect(echo_server.address)
    await sock.writable.write(b"no newline")
    await sock.writable.close()
    with pytest.raises(IncompleteReadError) as info:
        await sock.readable.readuntil(b"\n")
    assert info.value.partial == b"no newline"
    assert info.value.expected is None
    await sock.close()


async def test_a_peer_that_does_not_read_slows_the_writer(
    echo_server: EchoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_socket, "close_flush_timeout", 0.5)
    async with FaultProxy(echo_server.host, echo_server.port, fault=Fault.stall()) as proxy:
        sock = connect(proxy.address, high_water_mark=64 * 1024)
        await sock.opened
        chunk = b"x" * 65536
        sent = [0]

        async def write_forever() -> None:
            while True:
                await sock.writable.write(chunk)
                sent[0] += len(chunk)

        with pytest.raises(TimeoutError):
            await asyncio.wait_for(write_forever(), 1.0)
        # Kernel buffers take some megabytes; our own buffer stays near the high water mark.
        assert sent[0] < 64 * 1024 * 1024
        assert sock._transport is not None
        assert sock._transport.get_write_buffer_size() <= 64 * 1024 + len(chunk)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sock.writable.write(chunk), 0.1)
        blocked = await started(sock.writable.write(chunk))  # waits on backpressure
        with pytest.raises(SocketBusyError, match="already writing"):
            await sock.writable.write(b"second writer")
        blocked.cancel()
        loop = asyncio.get_running_loop()
        begun = loop.time()
        # The peer never reads: close() waits close_flush_timeout for the flush, then aborts.
        # The wait_for bound only turns a hang into a clear failure.
        await asyncio.wait_for(sock.close(), 10)
        assert loop.time() - begun >= _socket.close_flush_timeout - 1e-3  # timers never fire early
        assert await sock.closed is None


async def test_a_slow_reader_pauses_the_network_read(echo_server: EchoServer) -> None:
    sock = connect(echo_server.address, high_water_mark=1024)
    await sock.opened
    payload = b"y" * (1024 * 1024)
    writer = asyncio.ensure_future(sock.writable.write(payload))
    # We read nothing yet: the receive buffer stops growing near the high water mark, and the
    # echo server (which stops reading when we do not) stalls the writer in turn.
    await eventually(lambda: sock._protocol.reading_paused, what="reading paused")
    assert len(sock._protocol.buffer) < 1024 * 1024
    received = await sock.readable.readexactly(len(payload))
    await writer
    assert received == payload
    await sock.close()
