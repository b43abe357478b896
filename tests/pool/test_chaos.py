"""Chaos: clients run random work while server connections are terminated and clients are
killed at random; afterwards nothing is leaked and a new client works. Seeded."""

from __future__ import annotations

import asyncio
import random

import asyncpg
import pytest

from tcpworkers.pool._pool import PoolSettings

from .conftest import direct_dsn, eventually, serve_binding

pytestmark = pytest.mark.slow

# InternalClientError: asyncpg, when another task terminates a connection mid-operation.
ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    asyncio.TimeoutError,
)


@pytest.mark.parametrize("seed", [1, 2])
async def test_terminations_and_killed_clients_leak_nothing(seed: int) -> None:
    rng = random.Random(seed)
    settings = PoolSettings(min_size=2, max_size=3, acquire_timeout=5)
    async with serve_binding(settings) as binding:
        stop = asyncio.Event()
        live: list[asyncpg.Connection] = []
        completed = 0

        async def client(n: int) -> None:
            nonlocal completed
            local = random.Random(seed * 1000 + n)
            while not stop.is_set():
                try:
                    conn = await asyncpg.connect(binding.dsn)
                except ERRORS:
                    await asyncio.sleep(0.01)
                    continue
                live.append(conn)
                try:
                    for _ in range(local.randrange(1, 6)):
                        if local.random() < 0.5:
                            async with conn.transaction():
                                await conn.fetchval("select $1::int", n)
                                await conn.execute("select pg_sleep(0.002)")
                        else:
                            rows = await conn.fetch("select generate_series(1, $1::int)", 20)
                            assert len(rows) == 20
                        completed += 1
                except ERRORS:
                    pass
                finally:
                    live.remove(conn)
                    conn.terminate()

        async def chaos() -> None:
            direct = await asyncpg.connect(direct_dsn())
            try:
                while not stop.is_set():
                    await asyncio.sleep(rng.uniform(0.02, 0.1))
                    if rng.random() < 0.5:
                        await direct.execute(
                            "select pg_terminate_backend(pid) from pg_stat_activity "
                            "where application_name = $1 order by random() limit 1",
                            binding.upstream.application_name,
                        )
                    elif live:
                        rng.choice(live).terminate()
            finally:
                await direct.close()

        tasks = [asyncio.ensure_future(client(n)) for n in range(12)]
        tasks.append(asyncio.ensure_future(chaos()))
        await asyncio.sleep(3)
        stop.set()
        await asyncio.gather(*tasks)
        assert completed > 50

        def settled() -> bool:
            s = binding.pool.stats()
            return (s.active, s.pinned, s.resetting, s.waiting) == (0, 0, 0, 0) and s.idle >= 2

        await eventually(settled, within=15)
        conn = await asyncpg.connect(binding.dsn)
        try:
            for _ in range(4):
                assert await conn.fetchval("select 1") == 1
        finally:
            await conn.close()
        stats = binding.pool.stats()
        assert stats.clients == 0
        assert sum(stats.closed.values()) >= 1
