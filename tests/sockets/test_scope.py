"""The gate for connect(): egress policy on resolved addresses, per-request limits, clean-up.

Network hygiene: every connection here goes to loopback. Decisions about private and public
addresses use an injected connector that records the address and refuses, so a wrong decision
can never send a packet anywhere.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator

import pytest

from tcpworkers import connect
from tcpworkers.egress import EgressPolicy
from tcpworkers.errors import (
    ConnectError,
    CrossRequestError,
    EgressDeniedError,
    ScopeClosedError,
    SocketLimitError,
)
from tcpworkers.scope import RequestScope, request_scope, use_scope
from tcpworkers.sockets import Dialer, Target, use_dialer
from tcpworkers.testing import EchoServer

from ..waiting import eventually


@pytest.fixture
async def echo_server() -> AsyncIterator[EchoServer]:
    async with EchoServer() as server:
        yield server


NO_LOOPBACK = EgressPolicy.from_config({"preset": "dev", "deny": ["loopback"]})


@pytest.mark.parametrize(
    "spelling",
    [
        "127.0.0.1",
        "127.1",
        "0x7f.1",
        "2130706433",
        "0177.0.0.1",
        "localhost",
        "[::1]",
        "[::ffff:127.0.0.1]",
    ],
)
async def test_every_loopback_spelling_is_denied_when_loopback_is(
    echo_server: EchoServer, spelling: str
) -> None:
    async with request_scope(NO_LOOPBACK) as scope:
        sock = connect(f"{spelling}:{echo_server.port}")
        with pytest.raises(EgressDeniedError, match="loopback") as info:
            await sock.opened
        assert isinstance(info.value, ConnectError)
        assert 'remove the deny entry "loopback"' in str(info.value)
    assert scope.stats.sockets_denied == 1
    assert echo_server.accepted == 0  # nothing reached the server


async def test_unspecified_address_is_denied_by_default(echo_server: EchoServer) -> None:
    # On Linux a connect to 0.0.0.0 reaches the local host: the default policy refuses it.
    sock = connect(f"0.0.0.0:{echo_server.port}")
    with pytest.raises(EgressDeniedError, match="unspecified"):
        await sock.opened
    assert echo_server.accepted == 0


async def test_outside_a_scope_the_default_policy_allows_loopback(
    echo_server: EchoServer,
) -> None:
    async with connect(echo_server.address) as sock:
        await sock.writable.write(b"ok")
        assert await sock.readable.readexactly(2) == b"ok"


async def test_dns_rebinding_cannot_slip_through() -> None:
    """The resolver answers public first, private next; the connector sees only checked IPs."""
    answers = iter(["93.184.216.34", "10.0.0.7"])
    dialled: list[str] = []

    async def rebinding(host: str, port: int) -> list[Target]:
        return [Target(socket.AF_INET, (next(answers), port))]

    async def record_and_refuse(target: Target) -> socket.socket:
        dialled.append(target.ip)  # never touches the network
        raise ConnectionRefusedError(111, "Connection refused")

    with use_dialer(Dialer(resolve=rebinding, connect=record_and_refuse)):
        async with request_scope(EgressPolicy.serve()):
            first = connect("rebind.test:443")
            with pytest.raises(ConnectError, match="connection refused"):
                await first.opened
            second = connect("rebind.test:443")
            with pytest.raises(EgressDeniedError, match=r"10\.0\.0\.7 is private"):
                await second.opened
    assert dialled == ["93.184.216.34"]


async def test_mixed_answers_connect_only_to_permitted_addresses() -> None:
    dialled: list[str] = []

    async def mixed(host: str, port: int) -> list[Target]:
        return [
            Target(socket.AF_INET, ("169.254.169.254", port)),
            Target(socket.AF_INET, ("10.1.2.3", port)),
            Target(socket.AF_INET6, ("fd00::1", port, 0, 0)),
        ]

    async def record_and_refuse(target: Target) -> socket.socket:
        dialled.append(target.ip)
        raise ConnectionRefusedError(111, "Connection refused")

    with use_dialer(Dialer(resolve=mixed, connect=record_and_refuse, happy_eyeballs_delay=0.01)):
        async with request_scope(EgressPolicy.dev()):
            sock = connect("metadata-and-lan.test:80")
            with pytest.raises(ConnectError):
                await sock.opened
    assert sorted(dialled) == ["10.1.2.3", "fd00::1"]  # never the metadata address


async def test_the_seventh_socket_waits_for_a_free_slot(echo_server: EchoServer) -> None:
    async with request_scope() as scope:
        first_six = [connect(echo_server.address) for _ in range(6)]
        for sock in first_six:
            await sock.opened
        seventh = connect(echo_server.address)
        await asyncio.sleep(0.1)
        assert not seventh.opened.done()  # waiting, not refused
        assert len(scope.open_resources) == 6
        await first_six[0].close()  # frees its slot at once
        await asyncio.wait_for(seventh.opened, 2)
        assert scope.stats.peak_open == 6
        assert scope.stats.sockets_opened == 7


async def test_waiting_too_long_for_a_slot_fails_listing_the_open_sockets(
    echo_server: EchoServer,
) -> None:
    async with request_scope(max_sockets=2, slot_timeout=0.2, label="GET /report") as scope:
        held = [connect(echo_server.address) for _ in range(2)]
        for sock in held:
            await sock.opened
        third = connect(echo_server.address)
        with pytest.raises(SocketLimitError) as info:
            await third.opened
        message = str(info.value)
        assert "GET /report already has 2 open connections (the limit is 2)" in message
        assert message.count(f"socket to {echo_server.address} (tcp, open)") == 2
        assert "await sock.close()" in message
        assert len(scope.open_resources) == 2


async def test_scope_end_closes_what_the_request_left_open(echo_server: EchoServer) -> None:
    async with request_scope() as scope:
        plain = connect(echo_server.address)
        await plain.opened
        await plain.writable.write(b"abandoned")
        await plain.readable.readexactly(9)
        pending = connect(echo_server.address)  # still connecting when the request ends
    assert scope.stats.closed_at_end == 2
    assert scope.open_resources == ()
    for conn in echo_server.connections:
        await asyncio.wait_for(conn.closed.wait(), 5)  # the peer saw the close
    await asyncio.wait_for(plain.closed, 1)
    assert pending.closed.done()
    assert scope.stats.bytes_in == 9
    assert scope.stats.bytes_out == 9
    assert scope.stats.connect_seconds > 0


async def test_connecting_after_the_scope_ended_fails(echo_server: EchoServer) -> None:
    async with request_scope() as scope:
        pass
    with use_scope(scope):
        sock = connect(echo_server.address)
    with pytest.raises(ScopeClosedError, match=r"ctx\.wait_until"):
        await sock.opened


async def test_a_socket_cannot_be_used_by_another_request(echo_server: EchoServer) -> None:
    async with request_scope(label="request A"):
        sock = connect(echo_server.address)
        await sock.opened
        async with request_scope(label="request B"):
            with pytest.raises(CrossRequestError, match="belongs to request A") as info:
                await sock.writable.write(b"x")
            assert "env.DB.connection_string" in str(info.value)
            with pytest.raises(CrossRequestError):
                await sock.readable.read()
        await sock.writable.write(b"fine")  # back in its own request
        assert await sock.readable.readexactly(4) == b"fine"


async def test_starttls_upgrade_keeps_one_slot(ca: object) -> None:
    from tcpworkers import TlsOptions
    from tcpworkers.testing import StartTlsServer, TestCA

    assert isinstance(ca, TestCA)
    async with StartTlsServer(ca.server_context()) as server, request_scope(max_sockets=1) as scope:
        sock = connect(server.address, secure_transport="starttls", tls=TlsOptions(ca=ca.ca_pem))
        assert await sock.readable.readuntil() == b"READY\n"
        await sock.writable.write(b"STARTTLS\n")
        assert await sock.readable.readuntil() == b"GO\n"
        tls = sock.start_tls()
        await tls.opened
        assert scope.open_resources == (tls,)
        await tls.close()
        assert scope.open_resources == ()


async def test_scope_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="max_sockets"):
        RequestScope(max_sockets=0)
    with pytest.raises(ValueError, match="slot_timeout"):
        RequestScope(slot_timeout=-1)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.slow  # 13,000 connections
async def test_ten_thousand_abandoning_scopes_leak_nothing(echo_server: EchoServer) -> None:
    async def handler(i: int) -> None:
        async with request_scope():
            sock = connect(echo_server.address)
            if i % 2:
                await sock.opened  # half of them open fully, half are mid-connect at the end
            if i % 3 == 0:
                connect(echo_server.address)  # a second one, never awaited

    await handler(-1)  # warm-up: lazily created loop resources exist before the baseline
    await eventually(lambda: all(c.closed.is_set() for c in echo_server.connections))
    fds, tasks = open_fds(), len(asyncio.all_tasks())
    # Batches of 50 stay under the test server's listen backlog (a full backlog drops SYNs,
    # and the kernel retries them only after a second).
    for start in range(0, 10_000, 50):
        await asyncio.gather(*(handler(i) for i in range(start, start + 50)))
    # Both ends of 13,000 connections close over the next loop passes; a leak never does.
    await eventually(
        lambda: len(asyncio.all_tasks()) <= tasks and open_fds() <= fds,
        within=10,
        what=f"back to {tasks} tasks and {fds} fds",
    )


async def test_connections_can_be_forbidden_in_a_context() -> None:
    from tcpworkers.errors import ConnectNotAllowedError
    from tcpworkers.scope import forbid_connections

    with (
        forbid_connections("not while the worker module is imported"),
        pytest.raises(ConnectNotAllowedError, match="worker module is imported"),
    ):
        connect("127.0.0.1:5432")
