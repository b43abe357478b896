"""Random workloads (seeded, reproducible): several asyncpg clients whose transactions move
between two server connections, mixing prepared and simple queries, explicit statements,
errors, transactions and a pinning client; every answer is checked, and nothing is left behind.
"""

from __future__ import annotations

import asyncio
import random

import asyncpg
import pytest

from tcpworkers.pool._pool import PoolSettings

from .conftest import eventually, serve_binding

TEXTS = ["select $1::int + 0", "select $1::int + 1 as n", "select ($1::int) + 2"]


async def client_program(dsn: str, rng: random.Random, steps: int) -> int:
    conn = await asyncpg.connect(dsn)
    pinned = False
    done = 0
    try:
        explicit = await conn.prepare("select $1::int * 10")
        for _ in range(steps):
            op = rng.choice(["prepared", "simple", "txn", "error", "explicit", "pin", "rows"])
            i = rng.randrange(1000)
            if op == "prepared":
                k = rng.randrange(len(TEXTS))
                assert await conn.fetchval(TEXTS[k], i) == i + k
            elif op == "simple":
                assert await conn.execute(f"select {i}") == "SELECT 1"
            elif op == "txn":
                async with conn.transaction():
                    await conn.execute("SET LOCAL application_name = 'in-txn'")
                    assert await conn.fetchval(TEXTS[0], i) == i
                    assert await conn.fetchval("select current_setting('application_name')") == (
                        "in-txn"
                    )
            elif op == "error":
                with pytest.raises(asyncpg.DivisionByZeroError):
                    await conn.fetchval("select $1::int / (count(*) * 0)::int from pg_class", i)
            elif op == "explicit":
                assert await explicit.fetchval(i) == i * 10
            elif op == "pin":
                await conn.execute(f"SET application_name = 'pinned-{i}'")
                pinned = True
                assert await conn.fetchval("select current_setting('application_name')") == (
                    f"pinned-{i}"
                )
            elif op == "rows":
                rows = await conn.fetch("select g from generate_series(1, $1::int) g", i % 50 + 1)
                assert len(rows) == i % 50 + 1
            done += 1
            if rng.random() < 0.3:
                await asyncio.sleep(0)
        if not pinned:
            assert not (
                await conn.fetchval("select current_setting('application_name')")
            ).startswith("pinned-")
    finally:
        await conn.close()
    return done


@pytest.mark.parametrize("seed", range(4))
async def test_random_workload(seed: int) -> None:
    settings = PoolSettings(min_size=1, max_size=2, acquire_timeout=30)
    async with serve_binding(settings) as binding:
        rngs = [random.Random(seed * 100 + n) for n in range(5)]
        done = await asyncio.gather(*(client_program(binding.dsn, r, 25) for r in rngs))
        assert done == [25] * 5, f"seed {seed}"
        await eventually(
            lambda: (
                binding.pool.stats().idle
                == binding.pool.stats().opened - sum(binding.pool.stats().closed.values())
            )
        )
        stats = binding.pool.stats()
        assert (stats.active, stats.pinned, stats.resetting) == (0, 0, 0), stats
        assert stats.closed == {}, stats
        probe = await asyncpg.connect(binding.dsn)
        try:
            for _ in range(3):
                name = await probe.fetchval("select current_setting('application_name')")
                assert not name.startswith("pinned-"), f"seed {seed}: leaked {name}"
        finally:
            await probe.close()
