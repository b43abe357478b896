"""The relay end to end: asyncpg and psycopg through serve_client to real PostgreSQL."""

from __future__ import annotations

import asyncpg
import psycopg
import pytest

from .conftest import Binding


async def test_asyncpg_simple_and_prepared(binding: Binding) -> None:
    conn = await asyncpg.connect(binding.dsn)
    try:
        assert await conn.fetchval("select 1") == 1
        assert await conn.fetchval("select $1::int + 1", 41) == 42
        assert await conn.fetchval("select $1::int + 1", 1) == 2
        rows = await conn.fetch("select g from generate_series(1, 3) g")
        assert [r["g"] for r in rows] == [1, 2, 3]
        async with conn.transaction():
            assert await conn.fetchval("select count(*) from pg_class where relname = 'x'") == 0
    finally:
        await conn.close()
    stats = binding.pool.stats()
    assert (stats.active, stats.parse_saved) == (0, 0)
    # A second client preparing the same text on the same (only idle) server: answered locally.
    conn = await asyncpg.connect(binding.dsn)
    try:
        assert await conn.fetchval("select $1::int + 1", 2) == 3
    finally:
        await conn.close()
    assert binding.pool.stats().parse_saved == 1


async def test_psycopg_async(binding: Binding) -> None:
    async with await psycopg.AsyncConnection.connect(binding.dsn) as conn, conn.cursor() as cur:
        await cur.execute("select %s::int * 2", (21,))
        assert await cur.fetchone() == (42,)
        for i in range(8):  # past prepare_threshold (5): psycopg names its statements
            await cur.execute("select %s::int + 0", (i,))
            assert await cur.fetchone() == (i,)


@pytest.mark.parametrize("password", ["wrong", ""])
async def test_wrong_password_is_refused(binding: Binding, password: str) -> None:
    dsn = binding.dsn.replace("binding-secret", password or "x")
    with pytest.raises(asyncpg.InvalidPasswordError, match="password authentication failed"):
        await asyncpg.connect(dsn)
