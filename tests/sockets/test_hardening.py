"""Issue 8, socket contract: nothing a caller handed over is lost silently, a reset is reported
as a reset, localhost names never reach a resolver, and only bytes that left count as sent.

Everything runs on real loopback sockets; resets are real RSTs (SO_LINGER 0); denials use a
policy that refuses loopback, so nothing ever leaves the machine.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from tcpworkers import connect
from tcpworkers.egress import EgressPolicy
from tcpworkers.errors import (
    ConnectError,
    ConnectTimeoutError,
    EgressDeniedError,
    SocketBrokenError,
)
from tcpworkers.scope import request_scope
from tcpworkers.sockets import Dialer, Target, use_dialer
from tcpworkers.testing import EchoServer

NO_LOOPBACK = EgressPolicy.from_config({"preset": "dev", "deny": ["loopback"]})


@pytest.fixture
def refused_address() -> Iterator[tuple[str, int]]:
    """A loopback port that refuses connections: bound, never listening."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    try:
        yield holder.getsockname()
    finally:
        holder.close()


@pytest.fixture
def blackhole() -> Iterator[tuple[str, int]]:
    """A loopback address whose connection attempts hang (a listener with a full backlog)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    filler = socket.socket()
    filler.connect(address)
    try:
        yield address
    finally:
        filler.close()
        listener.close()


def _dropped_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]


# -- item 1: close() of a connecting socket with queued writes ---------------------------------


async def test_close_while_connecting_flushes_queued_writes() -> None:
    async with EchoServer() as server:
        sock = connect(server.address)
        await sock.writable.write(b"queued before open")
        await sock.close()  # still connecting here: must wait, flush, then close
        await sock.closed
        (conn,) = await server.wait_for_connections(1)
        await asyncio.wait_for(conn.closed.wait(), 5)
        assert conn.bytes_received == len(b"queued before open")


async def test_close_while_connecting_reports_queued_bytes_lost_when_connect_fails(
    refused_address: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    sock = connect(refused_address)
    await sock.writable.write(b"x" * 10)
    await sock.close()  # never raises for a failed connection
    with pytest.raises(ConnectError, match="refused"):
        await sock.closed
    lines = _dropped_lines(caplog)
    assert len(lines) == 1, caplog.text
    assert "10 bytes" in lines[0]
    assert f"127.0.0.1:{refused_address[1]}" in lines[0]


async def test_close_while_connecting_waits_at_most_the_connect_timeout(
    blackhole: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    sock = connect(blackhole, connect_timeout=0.3)
    await sock.writable.write(b"abc")
    started = time.monotonic()
    await sock.close()
    elapsed = time.monotonic() - started
    assert 0.2 < elapsed < 2.0
    with pytest.raises(ConnectTimeoutError):
        await sock.closed
    assert any("3 bytes" in line for line in _dropped_lines(caplog)), caplog.text


async def test_close_while_connecting_with_nothing_queued_aborts_at_once(
    blackhole: tuple[str, int],
) -> None:
    sock = connect(blackhole, connect_timeout=30)
    await asyncio.sleep(0)  # the attempt is under way
    started = time.monotonic()
    await sock.close()
    assert time.monotonic() - started < 0.5
    await sock.closed  # resolves (no ConnectError): close() aborted the attempt


# -- item 2: a reset while write() waits on backpressure ---------------------------------------


async def test_reset_during_a_blocked_write_raises_socket_broken_error_with_cause() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        sock = connect(listener.getsockname(), high_water_mark=16 * 1024)
        peer, _ = await loop.sock_accept(listener)  # never reads: the client's writes back up
        await sock.opened
        written = 0

        async def writer() -> None:
            nonlocal written
            chunk = b"w" * 65536
            while True:
                await sock.writable.write(chunk)
                written += len(chunk)

        task = asyncio.create_task(writer())
        # Wait until write() stays blocked (the kernel buffers on both ends are full).
        last = -1
        while written != last:
            last = written
            await asyncio.sleep(0.2)
        assert not task.done()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()  # RST
        with pytest.raises(SocketBrokenError) as caught:
            await asyncio.wait_for(task, 5)
        assert isinstance(caught.value.__cause__, OSError)
        await sock.close()
    finally:
        listener.close()


# -- item 6: localhost names are loopback without a resolver -----------------------------------


@pytest.mark.parametrize("name", ["localhost.", "LOCALHOST.", "db.localhost", "Cache.LocalHost."])
async def test_localhost_names_connect_to_loopback_without_asking_the_resolver(name: str) -> None:
    asked: list[str] = []

    async def resolver(host: str, port: int) -> list[Target]:
        asked.append(host)
        return []  # a resolver that knows nothing: the name must not depend on it

    async with EchoServer() as server:
        with use_dialer(Dialer(resolve=resolver)):
            sock = connect((name, server.port))
        async with sock:
            info = await sock.opened
            assert info.remote_address == f"127.0.0.1:{server.port}"
            await sock.writable.write(b"ping")
            assert await sock.readable.readexactly(4) == b"ping"
    assert asked == []


async def test_localhost_names_follow_the_loopback_rules_of_the_policy() -> None:
    asked: list[str] = []

    async def resolver(host: str, port: int) -> list[Target]:
        asked.append(host)
        return [Target(socket.AF_INET, ("203.0.113.7", port))]

    with use_dialer(Dialer(resolve=resolver)):
        async with request_scope(NO_LOOPBACK):
            sock = connect("api.localhost.:443")
            with pytest.raises(EgressDeniedError, match="loopback"):
                await sock.opened
    assert asked == []


# -- item 13: only bytes that left count as sent -----------------------------------------------


async def test_denied_connection_counts_no_bytes_sent() -> None:
    async with request_scope(NO_LOOPBACK) as scope:
        sock = connect("127.0.0.1:9")
        await sock.writable.write(b"x" * 18)
        with pytest.raises(EgressDeniedError):
            await sock.opened
        await sock.close()
    assert scope.stats.sockets_denied == 1
    assert scope.stats.bytes_out == 0


async def test_refused_connection_counts_no_bytes_sent(refused_address: tuple[str, int]) -> None:
    async with request_scope() as scope:
        sock = connect(refused_address)
        await sock.writable.write(b"x" * 18)
        with pytest.raises(ConnectError):
            await sock.opened
        await sock.close()
    assert scope.stats.bytes_out == 0


async def test_sent_bytes_are_counted_once_they_are_handed_to_the_connection() -> None:
    async with EchoServer() as server, request_scope() as scope:
        sock = connect(server.address)
        await sock.writable.write(b"before")
        await sock.opened
        await sock.writable.write(b"after")
        assert await sock.readable.readexactly(11) == b"beforeafter"
        await sock.close()
    assert scope.stats.bytes_out == 11
    assert scope.stats.bytes_in == 11
