"""The gate and the runtime's own unix sockets (a binding's listener): reachable whatever the
egress policy, yet counted against the request's socket limit and closed at its end."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator

import pytest

from tcpworkers.egress import EgressPolicy
from tcpworkers.egress._local import register_local_endpoint, unregister_local_endpoint
from tcpworkers.errors import EgressDeniedError, SocketLimitError
from tcpworkers.scope import request_scope

SERVE = EgressPolicy.from_config({"preset": "serve"})  # no loopback, so no unix sockets


class _Listener:
    def __init__(self) -> None:
        self.eofs = 0
        self.path = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        self.eofs += 1
        writer.close()


@pytest.fixture
async def listener() -> AsyncIterator[_Listener]:
    state = _Listener()
    with tempfile.TemporaryDirectory() as directory:
        state.path = os.path.join(directory, ".s.PGSQL.5432")
        server = await asyncio.start_unix_server(state.handle, state.path)
        try:
            yield state
        finally:
            unregister_local_endpoint(state.path)
            server.close()
            await server.wait_closed()


async def test_unregistered_socket_follows_the_policy(listener: _Listener) -> None:
    async with request_scope(SERVE, label="t"):
        with pytest.raises(EgressDeniedError, match="Unix sockets count as loopback"):
            await asyncio.open_unix_connection(listener.path)


async def test_registered_socket_allowed_counted_and_closed(listener: _Listener) -> None:
    register_local_endpoint(listener.path)
    async with request_scope(SERVE, max_sockets=1, slot_timeout=0.2, label="t") as scope:
        _reader, writer = await asyncio.open_unix_connection(listener.path)
        assert scope.stats.sockets_opened == 1
        with pytest.raises(SocketLimitError):  # the one slot is taken by the binding conn
            await asyncio.open_unix_connection(listener.path)
        assert not writer.is_closing()
    # The request ended: its binding connection was closed, the listener saw EOF.
    for _ in range(100):
        if listener.eofs:
            break
        await asyncio.sleep(0.01)
    assert listener.eofs == 1
    assert writer.is_closing()


async def test_unregister_restores_the_policy(listener: _Listener) -> None:
    register_local_endpoint(listener.path)
    unregister_local_endpoint(listener.path)
    async with request_scope(SERVE, label="t"):
        with pytest.raises(EgressDeniedError):
            await asyncio.open_unix_connection(listener.path)
