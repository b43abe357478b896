"""Describe of a prepared statement answered by the pool: the server's earlier answer for that
statement on that server connection, only where PostgreSQL would answer the same."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tcpworkers.pool._pool import PoolSettings

from .conftest import Binding, direct_dsn, serve_binding


@pytest.fixture
async def one_server() -> AsyncIterator[Binding]:
    async with serve_binding(PoolSettings(min_size=1, max_size=1)) as binding:
        yield binding


async def _once(binding: Binding, sql: str, *args: object) -> list[asyncpg.Record]:
    """A new connection per call (the serverless pattern), one query, close."""
    conn = await asyncpg.connect(binding.dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def test_a_new_connection_costs_one_round_trip(one_server: Binding) -> None:
    assert [tuple(r) for r in await _once(one_server, "select $1::int + 1 as n", 41)] == [(42,)]
    stats = one_server.pool.stats()
    assert (stats.parse_saved, stats.describe_saved) == (0, 0)
    rows = await _once(one_server, "select $1::int + 1 as n", 1)
    assert [tuple(r) for r in rows] == [(2,)]
    assert list(rows[0].keys()) == ["n"]
    stats = one_server.pool.stats()
    # Parse and Describe answered here; only Bind/Execute/Sync went to the server.
    assert (stats.parse_saved, stats.describe_saved) == (1, 1)
    conn = await asyncpg.connect(one_server.dsn)
    try:
        stmt = await conn.prepare("select $1::int + 1 as n")
        assert [t.name for t in stmt.get_parameters()] == ["int4"]
        assert [(a.name, a.type.name) for a in stmt.get_attributes()] == [("n", "int4")]
    finally:
        await conn.close()
    assert one_server.pool.stats().describe_saved == 2


async def test_inside_a_transaction_the_server_describes(one_server: Binding) -> None:
    await _once(one_server, "select 1 as x")
    conn = await asyncpg.connect(one_server.dsn)
    try:
        async with conn.transaction():
            await conn.execute("set local search_path = pg_catalog")
            assert await conn.fetchval("select 1 as x") == 1
    finally:
        await conn.close()
    assert one_server.pool.stats().describe_saved == 0


async def test_a_schema_change_after_a_cached_answer(one_server: Binding) -> None:
    table = f"pool_describe_{secrets.token_hex(4)}"
    direct = await asyncpg.connect(direct_dsn())
    try:
        await direct.execute(f"create table {table}(a int); insert into {table} values (1)")
        assert [tuple(r) for r in await _once(one_server, f"select * from {table}")] == [(1,)]
        await direct.execute(f"alter table {table} add column b text default 'b'")
        # The statement prepared on the server no longer fits: PostgreSQL refuses it ("cached
        # plan must not change result type"), asyncpg prepares again, and the pool must then
        # prepare it again on the server instead of answering from what it had.
        for _ in range(2):
            rows = await _once(one_server, f"select * from {table}")
            assert [tuple(r) for r in rows] == [(1, "b")]
    finally:
        await direct.execute(f"drop table {table}")
        await direct.close()
