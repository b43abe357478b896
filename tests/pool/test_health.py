"""Health: exhausted pool (53300), killed clients, killed and dead server connections, an
upstream that goes away and comes back, cancel."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from tcpworkers.pool._pool import PoolSettings
from tcpworkers.testing import Fault, FaultProxy

from ..pgserver import shared
from .conftest import Binding, direct_dsn, eventually, serve_binding


def server_pids(binding: Binding) -> set[int]:
    return {s.link.backend_pid for s in binding.pool._idle}


async def test_exhausted_pool_answers_53300_and_the_client_can_retry() -> None:
    settings = PoolSettings(min_size=1, max_size=1, acquire_timeout=0.2)
    async with serve_binding(settings, name="ORDERS") as binding:
        holder = await asyncpg.connect(binding.dsn)
        waiter = await asyncpg.connect(binding.dsn)
        try:
            tx = holder.transaction()
            await tx.start()
            with pytest.raises(asyncpg.PostgresError) as caught:
                await waiter.fetchval("select 1")
            error = caught.value
            assert error.sqlstate == "53300"
            message = str(error)
            assert "'ORDERS'" in message
            assert "all 1 server connections" in message
            assert "max_size" in message
            assert "acquire_timeout=0.2s" in message
            with pytest.raises(asyncpg.PostgresError, match="exhausted"):  # extended protocol too
                await waiter.fetchval("select $1::int", 5)
            await tx.commit()
            assert await waiter.fetchval("select $1::int", 7) == 7  # same client, later: fine
            stats = binding.pool.stats()
            assert stats.acquire_timeouts == 2
            assert sum(stats.acquire_wait_counts) == stats.acquires
        finally:
            await holder.close()
            await waiter.close()


async def test_100_concurrent_clients_on_max_size_5() -> None:
    settings = PoolSettings(min_size=1, max_size=5, acquire_timeout=20)
    async with serve_binding(settings) as binding:
        peak = 0

        async def request(i: int) -> int:
            nonlocal peak
            conn = await asyncpg.connect(binding.dsn)
            try:
                async with conn.transaction():
                    value = await conn.fetchval("select $1::int * 2", i)
                    await conn.execute("select pg_sleep(0.005)")
                    peak = max(peak, binding.pool.stats().active)
                return int(value)
            finally:
                await conn.close()

        results = await asyncio.gather(*(request(i) for i in range(100)))
        assert results == [2 * i for i in range(100)]
        stats = binding.pool.stats()
        assert stats.opened <= 5
        assert peak <= 5
        assert stats.acquires >= 100
        assert stats.closed == {}
        assert stats.parse_saved >= 90  # the same text, prepared once per server connection


async def test_client_killed_mid_transaction_rolls_back() -> None:
    async with serve_binding(PoolSettings(min_size=1, max_size=1, acquire_timeout=5)) as binding:
        conn = await asyncpg.connect(binding.dsn)
        await conn.execute("BEGIN")
        await conn.execute("SET LOCAL application_name = 'half-done'")
        await conn.execute("select pg_advisory_xact_lock(727002)")
        conn.terminate()  # the socket goes away, no Terminate message
        await eventually(lambda: binding.pool.stats().idle == 1)
        other = await asyncpg.connect(binding.dsn)
        try:
            assert await other.fetchval("select current_setting('application_name')") != "half-done"
            assert await other.fetchval("select pg_try_advisory_xact_lock(727002)") is True
        finally:
            await other.close()
        stats = binding.pool.stats()
        assert stats.resets == 1
        assert stats.opened == 1


async def test_client_killed_mid_query_cancels_and_discards() -> None:
    async with serve_binding(PoolSettings(min_size=1, max_size=1, acquire_timeout=5)) as binding:
        conn = await asyncpg.connect(binding.dsn)
        query = asyncio.ensure_future(conn.fetchval("select pg_sleep(30)"))
        await eventually(lambda: binding.pool.stats().active == 1)
        await asyncio.sleep(0.05)
        conn.terminate()
        with pytest.raises(asyncpg.exceptions.ConnectionDoesNotExistError):
            await query
        await eventually(lambda: binding.pool.stats().closed.get("client_gone_mid_request") == 1)
        started = time.monotonic()
        other = await asyncpg.connect(binding.dsn)
        try:
            assert await other.fetchval("select 1") == 1
        finally:
            await other.close()
        assert time.monotonic() - started < 5
        direct = await asyncpg.connect(direct_dsn())
        try:  # the cancelled backend is not still sleeping
            name = binding.upstream.application_name or ""
            await eventually(lambda: _no_sleepers(direct, name), within=5)
        finally:
            await direct.close()


async def _no_sleepers(direct: asyncpg.Connection, application_name: str) -> bool:
    count = await direct.fetchval(
        "select count(*) from pg_stat_activity where query = 'select pg_sleep(30)' "
        "and state = 'active' and application_name = $1",
        application_name,
    )
    return bool(count == 0)


async def test_terminated_idle_server_is_discarded_and_refilled() -> None:
    settings = PoolSettings(min_size=2, max_size=4, acquire_timeout=5)
    async with serve_binding(settings) as binding:
        before = server_pids(binding)
        assert len(before) == 2
        victim = min(before)
        direct = await asyncpg.connect(direct_dsn())
        try:
            assert await direct.fetchval("select pg_terminate_backend($1)", victim)
        finally:
            await direct.close()
        await eventually(lambda: binding.pool.stats().closed.get("died_idle") == 1)
        await eventually(lambda: len(server_pids(binding)) == 2)
        assert victim not in server_pids(binding)
        for _ in range(4):  # every client gets a live server connection
            conn = await asyncpg.connect(binding.dsn)
            try:
                assert await conn.fetchval("select pg_backend_pid()") != victim
            finally:
                await conn.close()


async def test_terminated_active_server_fails_its_client_clearly() -> None:
    settings = PoolSettings(min_size=1, max_size=2, acquire_timeout=5)
    async with serve_binding(settings) as binding:
        conn = await asyncpg.connect(binding.dsn)
        await conn.execute("BEGIN")
        pid = await conn.fetchval("select pg_backend_pid()")
        direct = await asyncpg.connect(direct_dsn())
        try:
            await direct.fetchval("select pg_terminate_backend($1)", pid)
        finally:
            await direct.close()
        # The server's FATAL (57P01) reaches the client at once, as it would without the pool;
        # the client's transaction is gone with the server connection.
        await eventually(conn.is_closed)
        with pytest.raises(asyncpg.InterfaceError, match="connection is closed"):
            await conn.fetchval("select 1")
        await eventually(lambda: binding.pool.stats().closed.get("broken") == 1)
        other = await asyncpg.connect(binding.dsn)
        try:
            assert await other.fetchval("select pg_backend_pid()") != pid
        finally:
            await other.close()


async def test_upstream_outage_fails_clearly_then_recovers() -> None:
    """PostgreSQL going away (every connection dropped, new ones refused) and coming back,
    simulated with the test kit's fault proxy in front of the real server."""
    async with FaultProxy(shared().host, shared().port) as proxy:
        settings = PoolSettings(min_size=2, max_size=3, acquire_timeout=2)
        async with serve_binding(settings, upstream_port=proxy.port) as binding:
            conn = await asyncpg.connect(binding.dsn)
            assert await conn.fetchval("select 1") == 1
            proxy.fault = Fault.refuse()
            for relay in proxy._abort_connections():
                await relay
            with pytest.raises(asyncpg.PostgresError) as caught:
                await conn.fetchval("select 1")
            assert caught.value.sqlstate in ("08006", "53300")
            assert "DB" in str(caught.value)
            proxy.fault = Fault.NONE
            await eventually(lambda: binding.pool.stats().idle == 2, within=10)
            assert await conn.fetchval("select 2") == 2  # the same client, without reconnecting
            await conn.close()


async def test_cancel_request_reaches_the_server(binding: Binding) -> None:
    conn = await asyncpg.connect(binding.dsn)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await conn.fetchval("select pg_sleep(20)", timeout=0.3)
        assert time.monotonic() - started < 5
        assert await conn.fetchval("select 3") == 3
    finally:
        await conn.close()
