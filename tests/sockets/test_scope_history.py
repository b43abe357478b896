"""A request scope remembers the connections it owned (the dev error page's socket table)."""

from __future__ import annotations

from tcpworkers import connect
from tcpworkers.egress import EgressPolicy
from tcpworkers.scope import request_scope
from tcpworkers.scope._scope import HISTORY_SIZE
from tcpworkers.testing import EchoServer


async def test_history_keeps_closed_connections_in_order() -> None:
    async with EchoServer() as server, request_scope(EgressPolicy.dev()) as scope:
        first = connect(server.address)
        await first.opened
        await first.close()
        second = connect(server.address)
        await second.opened
        assert scope.open_resources == (second,)
        assert scope.history == (first, second)
        assert "closed" in scope.history[0].describe()
        await second.close()


async def test_history_is_bounded() -> None:
    async with EchoServer() as server, request_scope(EgressPolicy.dev()) as scope:
        for _ in range(HISTORY_SIZE + 3):
            sock = connect(server.address)
            await sock.opened
            await sock.close()
        assert len(scope.history) == HISTORY_SIZE
        assert scope.stats.sockets_opened == HISTORY_SIZE + 3
