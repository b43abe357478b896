"""The gate's per-connection shortcuts keep its semantics (issue 11's benchmark target).

What each shortcut skips is checked to still happen where it matters: the raw socket's identity
is noted only when a driver asks for the socket (and the MySQL re-connect finds it by inode), pass-
through methods reach the loop's own transport, permitted addresses are remembered only for
hosts that need no resolver (a denial is decided and counted every time), and a request at its
socket limit still waits for a slot. Runs on the gated stdlib loop and the gated uvloop.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from tcpworkers.drivers import _companions
from tcpworkers.drivers._counting import CountedTransport
from tcpworkers.egress import EgressPolicy
from tcpworkers.errors import EgressDeniedError
from tcpworkers.scope import current_scope, request_scope
from tcpworkers.sockets import _gate
from tcpworkers.sockets._dial import Dialer, Target, system_resolve, use_dialer
from tcpworkers.testing import EchoServer

NO_LOOPBACK = EgressPolicy.from_config({"preset": "dev", "deny": ["loopback"]})


async def test_the_socket_is_noted_only_when_the_driver_asks_for_it() -> None:
    async with EchoServer() as server, request_scope() as scope:
        _, writer = await asyncio.open_connection(server.host, server.port)
        assert scope.noted_sockets() == ()  # nobody asked
        raw = writer.transport.get_extra_info("socket")
        assert scope.noted_sockets() == ((scope.open_resources[0], raw),)
        # A duplicate of it, once its driver closed the transport, continues that connection.
        # (as the MySQL drivers do: duplicate, close, re-connect at once).
        dup = raw.dup()
        writer.close()
        try:
            assert _companions.same_socket_as(scope, dup) is not None
        finally:
            dup.close()
        await writer.wait_closed()


async def test_pass_through_methods_are_the_loop_transports_own() -> None:
    async with EchoServer() as server, request_scope():
        _, writer = await asyncio.open_connection(server.host, server.port)
        view = writer.transport
        assert isinstance(view, CountedTransport)
        assert not view.is_closing()
        assert view.is_closing == view.wrapped.is_closing  # bound to the loop's, no frame of ours
        writer.close()
        await writer.wait_closed()
        assert view.is_closing()


async def test_a_literal_is_decided_once_per_policy_and_a_denial_every_time() -> None:
    policy = EgressPolicy.from_config({"preset": "dev"})
    async with EchoServer() as server:
        for _ in range(2):
            async with request_scope(policy):
                _, writer = await asyncio.open_connection(server.host, server.port)
                writer.close()
                await writer.wait_closed()
        assert _gate.remembered_targets(policy, server.host, server.port) == [
            Target(socket.AF_INET, (server.host, server.port))
        ]
        for _ in range(2):
            async with request_scope(NO_LOOPBACK) as scope:
                with pytest.raises(EgressDeniedError):
                    await asyncio.open_connection(server.host, server.port)
            assert scope.stats.sockets_denied == 1
        assert _gate.remembered_targets(NO_LOOPBACK, server.host, server.port) is None


async def test_a_custom_resolver_is_asked_every_time() -> None:
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[Target]:
        asked.append(host)
        return await system_resolve(host, port)

    async with EchoServer() as server:
        with use_dialer(Dialer(resolve=resolve)):
            for _ in range(2):
                async with request_scope():
                    _, writer = await asyncio.open_connection(server.host, server.port)
                    writer.close()
                    await writer.wait_closed()
    assert asked == [server.host, server.host]


async def test_a_request_at_its_limit_still_waits_for_a_slot() -> None:
    async with EchoServer() as server, request_scope(max_sockets=1) as scope:
        _, first = await asyncio.open_connection(server.host, server.port)
        second = asyncio.ensure_future(asyncio.open_connection(server.host, server.port))
        for _ in range(100):  # a few loop passes: the second one resolves and queues
            await asyncio.sleep(0)
        assert not second.done()
        assert scope.waiting == 1
        first.close()
        await first.wait_closed()
        _, writer = await asyncio.wait_for(second, 5)
        assert scope.stats.peak_open == 1
        assert scope.stats.sockets_opened == 2
        writer.close()
        await writer.wait_closed()


async def test_a_connection_opened_from_a_protocol_callback_is_gated() -> None:
    # The transport runs its protocol's callbacks in the context it was made in: that must be
    # the request's, not the gate's own trusted step, or a connection a callback opens (or a
    # task it starts) would pass no policy and take no slot.
    target = socket.socket()
    target.bind(("127.0.0.1", 0))
    target.listen()
    port = target.getsockname()[1]
    policy = EgressPolicy.from_config({"preset": "dev", "deny_ports": [port]})
    seen: dict[str, object] = {}

    class Sneaky(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            seen["scope"] = current_scope()
            seen["task"] = asyncio.ensure_future(asyncio.open_connection("127.0.0.1", port))

    loop = asyncio.get_running_loop()
    try:
        async with EchoServer() as server, request_scope(policy) as scope:
            transport, _ = await loop.create_connection(Sneaky, server.host, server.port)
            assert seen["scope"] is scope
            with pytest.raises(EgressDeniedError):
                await seen["task"]  # type: ignore[misc]
            assert scope.stats.sockets_denied == 1
            transport.close()
    finally:
        target.close()


async def test_the_view_forwards_what_the_loop_transport_has() -> None:
    async with EchoServer() as server, request_scope() as scope:
        _, writer = await asyncio.open_connection(server.host, server.port)
        view = writer.transport
        loop_transport = view.wrapped
        values = [
            name
            for name in dir(type(loop_transport))
            if not name.startswith("__") and not callable(getattr(loop_transport, name))
        ]
        for name in values:  # read through, not copied
            assert getattr(view, name) == getattr(loop_transport, name)
        if hasattr(loop_transport, "__dict__"):  # the stdlib loop: a fallback for the rest
            assert view._sock is loop_transport._sock
            assert scope.noted_sockets() == ((scope.open_resources[0], loop_transport._sock),)
        else:  # uvloop: exactly the transport class's attributes, no slow fallback
            assert not hasattr(type(view), "__getattr__")
            with pytest.raises(AttributeError):
                _ = view.no_such_attribute
        writer.close()
        await writer.wait_closed()


async def test_sock_connect_takes_the_remembered_address_and_decides_a_denial_every_time() -> None:
    # aiohttp's way in: loop.sock_connect, then create_connection(sock=...).
    policy = EgressPolicy.from_config({"preset": "dev"})
    loop = asyncio.get_running_loop()
    async with EchoServer() as server:
        for _ in range(2):
            async with request_scope(policy) as scope:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                await loop.sock_connect(sock, (server.host, server.port))
                transport, _ = await loop.create_connection(asyncio.Protocol, sock=sock)
                assert scope.open_resources[0].describe() == (
                    f"connection to {server.host}:{server.port} (driver)"
                )
                transport.close()
        assert _gate.remembered_target(policy, server.host, server.port) == Target(
            socket.AF_INET, (server.host, server.port)
        )
        for _ in range(2):
            async with request_scope(NO_LOOPBACK) as scope:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.setblocking(False)
                    with pytest.raises(EgressDeniedError):
                        await loop.sock_connect(sock, (server.host, server.port))
            assert scope.stats.sockets_denied == 1


async def test_a_connection_is_described_by_the_address_it_was_asked_for() -> None:
    # The description is rendered when first read; it reads as it always did.
    async with EchoServer() as server, request_scope() as scope:
        _, writer = await asyncio.open_connection(server.host, server.port)
        (conn,) = scope.open_resources
        assert conn.describe() == f"connection to {server.host}:{server.port} (driver)"
        writer.close()
        await writer.wait_closed()
