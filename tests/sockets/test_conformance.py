"""The socket contract, checked over plain TCP, TLS and STARTTLS (see conftest.Peer)."""

from __future__ import annotations

import asyncio

import pytest

from tcpworkers import Socket, SocketInfo
from tcpworkers.errors import (
    ReadLimitError,
    SocketBusyError,
    SocketClosedError,
)

from ..waiting import started
from .conftest import Peer


async def echo(sock: Socket, data: bytes) -> bytes:
    await sock.writable.write(data)
    return await sock.readable.readexactly(len(data))


async def test_echo_round_trip_and_socket_info(peer: Peer) -> None:
    sock = await peer.open()
    info = await sock.opened
    assert isinstance(info, SocketInfo)
    assert info.remote_address == peer.server.address
    host, _, port = info.local_address.rpartition(":")
    assert host == "127.0.0.1"
    assert int(port) > 0
    assert info.alpn is None
    assert await echo(sock, b"hello") == b"hello"
    assert sock.secure_transport == ("off" if peer.kind == "plain" else "on")
    await sock.close()


async def test_opened_and_closed_can_be_awaited_many_times(peer: Peer) -> None:
    sock = await peer.open()
    first = await sock.opened
    assert await sock.opened is first
    await sock.close()
    assert await sock.closed is None
    assert await sock.closed is None


async def test_writes_before_opened_are_queued_and_sent_in_order(peer: Peer) -> None:
    sock = await peer.open()
    assert not sock.opened.done()
    for part in (b"one ", b"two ", b"three"):
        await sock.writable.write(part)  # returns at once: below the high water mark
    assert not sock.opened.done()
    assert await sock.readable.readexactly(13) == b"one two three"
    await sock.close()


async def test_read_before_opened_waits_for_the_connection(peer: Peer) -> None:
    sock = await peer.open()
    reader = asyncio.ensure_future(sock.readable.read())
    await sock.writable.write(b"x")
    assert await asyncio.wait_for(reader, 5) == b"x"
    await sock.close()


async def test_large_transfer_is_complete_and_in_order(peer: Peer) -> None:
    sock = await peer.open(high_water_mark=16 * 1024)
    payload = bytes(range(256)) * 4096  # 1 MiB

    async def send() -> None:
        for i in range(0, len(payload), 65536):
            await sock.writable.write(payload[i : i + 65536])

    sender = asyncio.ensure_future(send())
    received = await sock.readable.readexactly(len(payload))
    await sender
    assert received == payload
    await sock.close()


async def test_half_close_sends_eof_and_reading_goes_on(peer: Peer) -> None:
    sock = await peer.open()
    await sock.writable.write(b"last words")
    await sock.writable.close()
    if peer.half_closeable:
        # The server sees our FIN, echoes what it has, then closes: we read all of it.
        assert await sock.readable.readexactly(10) == b"last words"
        (conn,) = peer.server.connections
        await asyncio.wait_for(conn.eof_received.wait(), 5)
    assert await asyncio.wait_for(sock.readable.read(), 5) in (b"", b"last words")
    with pytest.raises(SocketClosedError, match=r"writable\.close\(\)"):
        await sock.writable.write(b"more")
    await asyncio.wait_for(sock.closed, 5)
    await sock.close()


async def test_after_eof_reads_return_empty_every_time(peer: Peer) -> None:
    sock = await peer.open()
    await sock.writable.write(b"abc")
    await sock.writable.close()
    data = b""
    while chunk := await asyncio.wait_for(sock.readable.read(), 5):
        data += chunk
    assert data in (b"abc", b"")  # TLS cannot half-close: closing may drop the echo
    assert await sock.readable.read() == b""
    assert await sock.readable.read() == b""
    await sock.close()


async def test_close_is_idempotent_and_makes_io_raise_closed(peer: Peer) -> None:
    sock = await peer.open()
    await sock.opened
    await sock.close()
    await sock.close()
    await sock.closed
    with pytest.raises(SocketClosedError, match="closed socket"):
        await sock.readable.read()
    with pytest.raises(SocketClosedError, match="closed socket"):
        await sock.writable.write(b"x")
    (conn, *_) = peer.server.connections
    await asyncio.wait_for(conn.closed.wait(), 5)  # the peer saw the close


async def test_close_flushes_pending_writes(peer: Peer) -> None:
    sock = await peer.open()
    await sock.opened
    await sock.writable.write(b"z" * 100_000)
    await sock.close()
    (conn, *_) = peer.server.connections
    await asyncio.wait_for(conn.closed.wait(), 5)
    received = conn.bytes_received
    if peer.kind == "starttls":
        received -= len(b"STARTTLS\n")
    assert received == 100_000


async def test_pending_read_raises_closed_when_the_socket_is_closed(peer: Peer) -> None:
    sock = await peer.open()
    await sock.opened
    reader = await started(sock.readable.read())  # blocked: nothing was sent
    await sock.close()
    with pytest.raises(SocketClosedError):
        await reader


async def test_two_concurrent_reads_are_busy(peer: Peer) -> None:
    sock = await peer.open()
    await sock.opened
    first = await started(sock.readable.read())
    with pytest.raises(SocketBusyError, match="already reading"):
        await sock.readable.read()
    await sock.writable.write(b"!")
    assert await first == b"!"
    await sock.close()


async def test_async_with_opens_and_closes(peer: Peer) -> None:
    sock = await peer.open()
    async with sock as entered:
        assert entered is sock
        assert sock.opened.done()
        assert await echo(sock, b"ctx") == b"ctx"
    assert sock.closed.done()
    with pytest.raises(SocketClosedError):
        await sock.readable.read()


async def test_readuntil_readexactly_and_iteration(peer: Peer) -> None:
    sock = await peer.open()
    await sock.writable.write(b"line one\r\nline two\r\n12345")
    assert await sock.readable.readuntil(b"\r\n") == b"line one\r\n"
    assert await sock.readable.readuntil(b"\r\n") == b"line two\r\n"
    assert await sock.readable.readexactly(5) == b"12345"
    await sock.writable.write(b"tail")
    if peer.half_closeable:
        await sock.writable.close()
        chunks = [chunk async for chunk in sock.readable]
        assert b"".join(chunks) == b"tail"
    else:
        assert await sock.readable.readexactly(4) == b"tail"
    await sock.close()


async def test_readuntil_limit_keeps_the_data(peer: Peer) -> None:
    sock = await peer.open()
    await sock.writable.write(b"0123456789")
    await sock.readable.readexactly(1)
    await sock.writable.write(b"\n")
    with pytest.raises(ReadLimitError, match="still buffered"):
        await sock.readable.readuntil(b"\n", limit=5)
    assert await sock.readable.readuntil(b"\n", limit=100) == b"123456789\n"
    await sock.close()


async def test_write_takes_bytes_like_only_and_copies_mutable_buffers(peer: Peer) -> None:
    sock = await peer.open()
    with pytest.raises(TypeError, match=r"not str; encode it first"):
        await sock.writable.write("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bytes-like"):
        await sock.writable.write(42)  # type: ignore[arg-type]
    buffer = bytearray(b"before")
    await sock.writable.write(buffer)
    buffer[:] = b"AFTER!"
    await sock.writable.write(memoryview(b"|view"))
    assert await sock.readable.readexactly(11) == b"before|view"
    await sock.close()


async def test_invalid_read_sizes_are_rejected(peer: Peer) -> None:
    sock = await peer.open()
    with pytest.raises(ValueError, match="positive"):
        await sock.readable.read(0)
    with pytest.raises(TypeError, match="int"):
        await sock.readable.readexactly(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="non-empty bytes"):
        await sock.readable.readuntil(b"")
    await sock.close()
