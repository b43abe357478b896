"""The scope hears a driver connection end from the connection itself, also after the driver
swapped the gate's protocol proxy out (asyncpg's ``set_protocol`` after its SSLRequest): no
polling, and no grace period waited out at request end (issue 8, item 11).

Uses the session's shared PostgreSQL (tests/pgserver.py: trust auth, database "test").
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

import tcpworkers.scope._scope
from tcpworkers.scope import request_scope

from ..pgserver import pg

# Long enough that waiting it out cannot pass for hearing the close (the tests allow 10 s).
LONG: float = 60.0


async def test_a_driver_connection_left_open_ends_without_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A module-level pool's connection left open by a request: the clean-up closes it and hears
    # it close, instead of waiting the grace period out and aborting.
    monkeypatch.setattr(tcpworkers.scope._scope, "CLEANUP_GRACE", LONG)
    async with asyncio.timeout(10):
        async with request_scope() as scope:
            conn = await asyncpg.connect(**pg())
            assert await conn.fetchval("SELECT 1") == 1
    assert scope.stats.closed_at_end == 1
    assert conn.is_closed()


async def test_a_waiting_connection_gets_the_slot_a_driver_closed() -> None:
    async with request_scope(max_sockets=1, slot_timeout=LONG) as scope:
        first = await asyncpg.connect(**pg())  # asyncpg has swapped the gate's proxy out by now
        second = asyncio.create_task(asyncpg.connect(**pg()))
        while not scope.waiting:  # noqa: ASYNC110 (no event says "a connection waits")
            await asyncio.sleep(0)
        async with asyncio.timeout(10):
            await first.close()
            conn = await second
        assert await conn.fetchval("SELECT 2") == 2
        await conn.close()
        assert scope.open_resources == ()
    assert scope.stats.closed_at_end == 0
