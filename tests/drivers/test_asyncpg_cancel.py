"""asyncpg query cancellation inside a request: the CancelRequest goes over a second connection
(PostgreSQL's protocol), which the gate allows, counts, and never makes wait for a slot, so a
request at its socket limit can still cancel its own query.

Against the session's shared PostgreSQL (tests/pgserver.py: trust, database ``test``).
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from tcpworkers.scope import request_scope

from ..pgserver import pg, shared


async def test_cancel_at_the_socket_limit_does_not_wait_for_a_slot() -> None:
    async with request_scope(max_sockets=1, slot_timeout=5) as scope:
        conn = await asyncpg.connect(**pg())
        started = time.perf_counter()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(conn.fetchval("SELECT pg_sleep(30)"), 0.2)
        # The cancelled query is over and the connection is usable again.
        assert await conn.fetchval("SELECT 42") == 42
        elapsed = time.perf_counter() - started
        assert elapsed < 2, f"the cancel waited {elapsed:.1f}s (for a slot?)"
        assert len(scope.open_resources) == 1
        await conn.close()
    assert scope.stats.sockets_opened == 2  # the query's connection and the CancelRequest's
    assert scope.stats.slot_wait_seconds < 1
    cancel = [r.describe() for r in scope.history if "query cancellation" in r.describe()]
    assert cancel == [f"connection to 127.0.0.1:{shared().port} (driver) (query cancellation)"]
    assert scope.stats.closed_at_end == 0


async def test_cancel_by_timeout_argument() -> None:
    async with request_scope(max_sockets=1, slot_timeout=5) as scope:
        conn = await asyncpg.connect(**pg())
        with pytest.raises(TimeoutError):
            await conn.fetchval("SELECT pg_sleep(30)", timeout=0.2)
        assert await conn.fetchval("SELECT 1") == 1
    assert scope.stats.sockets_opened == 2
    assert scope.stats.closed_at_end == 1
